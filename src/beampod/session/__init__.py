"""beampod.session."""
