"""Entry point: ``python -m beampod.store.server --home DIR``."""

from __future__ import annotations

import sys

from beampod._lazy import without_pydantic_plugins

if __name__ == "__main__":
    without_pydantic_plugins()
    from beampod.store._server import main

    sys.exit(main())
