"""``python -m beampod`` is the ``beampod`` command."""

from beampod.cli import main

main()
