"""beampod.store."""
