"""Keep the pod's logs bounded over a week of beamtime, losing no line.

Every service writes its log through a file descriptor the supervisor opened with
O_APPEND (so does the detached supervisor itself): a write always lands at the end of
the file, whatever its size. That is what lets a log be shortened under a running
writer. A log over ``max_bytes`` rotates:

1. the older copies shift: ``name.log.1`` → ``name.log.2`` … up to ``keep``;
2. the log's first ``cut`` bytes (a multiple of the file system's block size, short of
   the end) are copied to ``name.log.1``;
3. those bytes are removed from the front of the live log in place
   (``fallocate(FALLOC_FL_COLLAPSE_RANGE)``, ext4 and XFS); the bytes written meanwhile
   stay, after them.

Read in order, ``name.log.1`` then ``name.log`` are exactly the bytes the service
wrote, no line lost or doubled; the cut may fall inside a line, which then ends at the
top of the live log. Where the file system cannot collapse a range (tmpfs, NFS, btrfs)
the log is copied and then truncated the moment the copy has caught up with it, as
logrotate's ``copytruncate`` does: a line written in the instant between the last read
and the truncation is lost there.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from beampod._servicelog import rotated

if TYPE_CHECKING:
    from beampod.config import LogSettings

FALLOC_FL_COLLAPSE_RANGE = 0x08
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class LogLimits:
    max_bytes: int  # a log larger than this rotates
    keep: int  # how many rotated copies stay (name.log.1 … name.log.<keep>)

    @classmethod
    def of(cls, settings: LogSettings) -> LogLimits:
        return cls(settings.max_mb << 20, settings.keep)


def rotate_if_large(path: Path, limits: LogLimits) -> bool:
    """Rotate ``path`` if it holds more than ``limits.max_bytes``; whether it did."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= limits.max_bytes:
        return False
    rotate(path, limits.keep)
    return True


def rotate(path: Path, keep: int) -> None:
    """Move what ``path`` holds now to ``path.1`` (shifting older copies up to
    ``keep``), leaving the live log to whoever appends to it."""
    for n in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(rotated(path, n), rotated(path, n + 1))
    first = rotated(path, 1)
    tmp = first.with_name(first.name + ".tmp")
    try:
        with path.open("r+b") as live:
            fd = live.fileno()
            size = os.fstat(fd).st_size
            block = os.fstatvfs(fd).f_bsize
            # The range must be whole blocks and end before the end of the file.
            cut = (size - 1) // block * block if size > 0 else 0
            collapsed = False
            if cut > 0 and _collapse_range() is not None:
                _copy(fd, tmp, cut)
                collapsed = _collapse(fd, cut)
            if not collapsed:  # not on this file system: copy it all, then truncate
                _copy(fd, tmp, None)
    except OSError:
        # A full disk, say: the live log is as it was; no half copy takes space.
        tmp.unlink(missing_ok=True)
        raise
    # Renamed last: a new .1 tells a follower (LogFollower) the live log has lost
    # as many bytes from its front as .1 holds.
    os.replace(tmp, first)


def _copy(fd: int, dest: Path, length: int | None) -> None:
    """The first ``length`` bytes of ``fd`` into ``dest`` (the owner's alone); with
    ``length`` None all of it, truncating ``fd`` the moment the copy has caught up."""
    with open(dest, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
        offset = 0
        while length is None or offset < length:
            want = _COPY_CHUNK if length is None else min(_COPY_CHUNK, length - offset)
            chunk = os.pread(fd, want, offset)
            if chunk:
                out.write(chunk)
                offset += len(chunk)
            elif length is not None:
                break  # shorter than asked: cannot happen to an append-only log
            elif os.fstat(fd).st_size == offset:
                os.ftruncate(fd, 0)
                break


class LogFollower:
    """What is appended to a log from now on, across its rotations (``beampod logs
    -f``): call :meth:`read` repeatedly."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pos = path.stat().st_size
        self._rotated = _identity(rotated(path, 1))

    def read(self) -> bytes:
        out = b""
        older = rotated(self._path, 1)
        now = _identity(older)
        if now != self._rotated:
            self._rotated = now
            if now is not None:
                # .1 holds the live log's first bytes as they were before rotation.
                length = now[1]
                if self._pos < length:
                    out = _read_range(older, self._pos, length)
                self._pos = max(0, self._pos - length)
        chunk = _read_range(self._path, self._pos, None)
        self._pos += len(chunk)
        return out + chunk


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            return fh.read() if end is None else fh.read(max(0, end - start))
    except FileNotFoundError:
        return b""


@functools.cache
def _collapse_range() -> Callable[..., int] | None:
    """libc's ``fallocate``, where there is one (Linux). ctypes loads on the first
    rotation, not with the supervisor."""
    import ctypes

    if os.uname().sysname != "Linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # this process's symbols: libc's among them
    fn = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


def _collapse(fd: int, length: int) -> bool:
    """Remove the first ``length`` bytes of ``fd`` in place; False where the file
    system cannot."""
    fn = _collapse_range()
    if fn is None:
        return False
    if fn(fd, FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(err, os.strerror(err))


async def keep_logs_bounded(
    logs_dir: Path,
    limits: LogLimits,
    starting: Callable[[], Iterable[str]],
    report: Callable[[str], None],
    *,
    lock: asyncio.Lock | None = None,
    interval_s: float = 30.0,
) -> None:
    """Every ``interval_s``, rotate each ``*.log`` of ``logs_dir`` over its limit, but
    not the log of a service ``starting`` now (its readiness is read from the offset
    its start took). ``lock``, held around each log's rotation, is the one a start
    holds while it takes its log's offset: no offset is taken mid-rotation. Runs until
    cancelled."""
    lock = lock or asyncio.Lock()
    while True:
        await asyncio.sleep(interval_s)
        for path in sorted(logs_dir.glob("*.log")):
            async with lock:
                if path.stem in set(starting()):
                    continue
                try:
                    if await asyncio.to_thread(rotate_if_large, path, limits):
                        report(f"log {path.name} rotated (over {limits.max_bytes >> 20} MB)")
                except OSError as exc:
                    # A full disk, say: the log keeps growing; the next round tries again.
                    report(f"could not rotate log {path.name}: {exc}")
