"""A service's log: how a long-running service writes it, and its last lines read back.

A service logs INFO lines to stdout (its log file), each with time, level and logger.
httpx and httpcore stay at WARNING: at INFO they write a line per HTTP request, and a
writer's requests to Tiled alone would grow its log by hundreds of megabytes in a week
of beamtime while saying nothing a failure would not."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_service_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def rotated(path: Path, n: int) -> Path:
    """The ``n``-th rotated copy of the log ``path`` (``.1`` the newest)."""
    return path.with_name(f"{path.name}.{n}")


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the log ``path``; from its rotated copy
    (``path.1``) too when the live log, just rotated, holds fewer."""
    window = max(64 * 1024, 256 * lines)
    data = _last_bytes(path, window)
    if data is None:
        return ""
    if len(data) < window and data.count(b"\n") < lines:
        data = (_last_bytes(rotated(path, 1), window) or b"") + data
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _last_bytes(path: Path, n: int) -> bytes | None:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - n))
            return fh.read()
    except OSError:
        return None
