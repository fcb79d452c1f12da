"""beampod.adaptive."""
