"""beampod.queue."""
