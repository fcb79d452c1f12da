"""beampod.instrument."""
