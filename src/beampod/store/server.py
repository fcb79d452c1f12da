"""Entry point: ``python -m beampod.store.server --home DIR``."""

from __future__ import annotations

import sys

from beampod.store._server import main

if __name__ == "__main__":
    sys.exit(main())
