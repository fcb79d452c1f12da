"""Entry point: ``python -m beampod.store.postgres --home DIR`` (embedded PostgreSQL)."""

from __future__ import annotations

import sys

from beampod.store._postgres import main

if __name__ == "__main__":
    sys.exit(main())
