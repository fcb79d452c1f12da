"""scan_id that keeps counting across sessions and processes of one instrument.

bluesky's default scan_id lives in ``RE.md`` of one process, so every new session
starts at 1 again and a session and the queue worker hand out the same numbers. A
counter file under ``flock`` gives every RunEngine of the pod the next number.
(bluesky's PersistentDict is not safe for two processes at once.)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ScanIdCounter:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def __call__(self, md: Mapping[str, Any]) -> int:
        """bluesky's ``scan_id_source`` signature: return the next scan_id."""
        # The owner's alone, like the rest of the pod home, whatever the session's umask.
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode().strip()
            current = int(raw) if raw.isdigit() else 0
            nxt = max(current, int(md.get("scan_id") or 0)) + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(nxt).encode())
            os.fsync(fd)
            return nxt
        finally:
            os.close(fd)  # also releases the lock
