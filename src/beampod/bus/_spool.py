"""A local append-only spool for documents the bus could not take yet.

Layout: ``<spool_dir>/<instrument>/<slot>/`` holds ``spool.log`` (records), ``acked``
(byte offset up to which records were acknowledged by the bus) and ``lock`` (flock held
by the one publisher using the slot, so two processes never interleave records).

Record: ``b"BPS1" | u32 length | u32 crc32(body) | body`` with body = msgpack
``[msg_id, data]``. A crash can leave a torn last record (short or bad crc); it is
detected on open, reported, and cut off, so appends continue on a clean boundary.
Records before a torn tail are intact: every append batch ends with an fsync.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from beampod.errors import BusError

log = logging.getLogger(__name__)

MAGIC = b"BPS1"
_HEADER = struct.Struct("<4sII")
LOG_NAME = "spool.log"
ACKED_NAME = "acked"
OPEN_RUNS_NAME = "open-runs"


class SpoolError(BusError):
    """The spool on disk cannot be used (permissions, disk full, locked...)."""

    exit_code = 2  # the user must fix the directory (or its file system) first


@dataclass(frozen=True)
class SpoolRecord:
    msg_id: str
    data: bytes
    offset: int  # where the record starts
    end: int  # where the next record starts


def encode_record(msg_id: str, data: bytes) -> bytes:
    body = msgpack.packb([msg_id, data], use_bin_type=True)
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One slot's spool. Not thread-safe: owned by the publisher's I/O thread."""

    def __init__(self, directory: Path, lock_fd: int) -> None:
        self.directory = directory
        self._lock_fd = lock_fd
        self._log_path = directory / LOG_NAME
        self._acked_path = directory / ACKED_NAME
        self._fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.torn_bytes = 0
        self._acked = min(self._read_acked(), os.fstat(self._fd).st_size)
        self._end, self._pending = self._scan_and_repair()

    # -- opening ----------------------------------------------------------------------

    def _read_acked(self) -> int:
        try:
            text = self._acked_path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return max(0, int(text))
        except ValueError:
            # A corrupt acked file is unexpected (it is written atomically); re-sending
            # from 0 is safe because the bus drops duplicate message ids.
            log.warning(
                "spool %s: unreadable acked offset %r, re-sending from start", self.directory, text
            )
            return 0

    def _scan_and_repair(self) -> tuple[int, int]:
        """Validate records after the acked offset; cut a torn tail."""
        size = os.fstat(self._fd).st_size
        offset, count = self._acked, 0
        while offset < size:
            rec = self._read_at(offset, size)
            if rec is None:
                break
            offset, count = rec.end, count + 1
        if offset < size:
            self.torn_bytes = size - offset
            log.warning(
                "spool %s: ignoring a torn record at the end (%d bytes, from a crash "
                "during a write); earlier records are intact",
                self.directory,
                self.torn_bytes,
            )
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        return offset, count

    def _read_at(self, offset: int, size: int) -> SpoolRecord | None:
        head = os.pread(self._fd, _HEADER.size, offset)
        if len(head) < _HEADER.size:
            return None
        magic, length, crc = _HEADER.unpack(head)
        end = offset + _HEADER.size + length
        if magic != MAGIC or end > size:
            return None
        body = os.pread(self._fd, length, offset + _HEADER.size)
        if len(body) < length or zlib.crc32(body) != crc:
            return None
        try:
            msg_id, data = msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException):
            return None
        return SpoolRecord(msg_id, data, offset, end)

    # -- use ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records appended and not yet acknowledged by the bus."""
        return self._pending

    @property
    def acked_offset(self) -> int:
        return self._acked

    @property
    def end_offset(self) -> int:
        return self._end

    def append(self, records: Iterable[tuple[str, bytes]]) -> int:
        """Append records and fsync once (group commit). Returns how many were written."""
        blob = b"".join(encode_record(mid, data) for mid, data in records)
        if not blob:
            return 0
        n = 0
        pos = 0
        while pos < len(blob):  # os.write may write less than asked
            try:
                pos += os.write(self._fd, blob[pos:])
            except OSError as exc:
                raise SpoolError(f"cannot write spool {self._log_path}: {exc}") from None
        os.fsync(self._fd)
        # Count records from the blob instead of trusting the caller's iterable twice.
        off = 0
        while off < len(blob):
            _, length, _ = _HEADER.unpack_from(blob, off)
            off += _HEADER.size + length
            n += 1
        self._end += len(blob)
        self._pending += n
        return n

    def read(self, offset: int, max_records: int) -> list[SpoolRecord]:
        """Up to ``max_records`` intact records starting at ``offset``."""
        out: list[SpoolRecord] = []
        while offset < self._end and len(out) < max_records:
            rec = self._read_at(offset, self._end)
            if rec is None:
                raise SpoolError(f"spool {self._log_path} is corrupt at offset {offset}")
            out.append(rec)
            offset = rec.end
        return out

    def commit(self, offset: int, records: int) -> None:
        """Mark everything before ``offset`` (``records`` records) as acknowledged.
        When everything is acknowledged the log is emptied so the spool does not grow."""
        if offset <= self._acked:
            return
        self._pending -= records
        if offset >= self._end:
            # Truncate before resetting the acked file: a crash in between leaves an
            # acked offset past the end, which opening clamps to the (empty) size.
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._end = 0
            self._pending = 0
            offset = 0
        self._write_acked(offset)
        self._acked = offset

    def _write_acked(self, offset: int) -> None:
        tmp = self._acked_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, str(offset).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._acked_path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1


def _slot_has_data(slot: Path) -> bool:
    """Leftovers of an earlier process: unacknowledged records, or runs it opened and
    never closed (see :class:`OpenRuns`)."""
    for name in (LOG_NAME, OPEN_RUNS_NAME):
        try:
            if (slot / name).stat().st_size > (0 if name == LOG_NAME else 2):
                return True
        except FileNotFoundError:
            pass
    return False


class OpenRuns:
    """``<slot>/open-runs``: the runs whose start this slot's publisher took and whose
    stop it has not, as JSON ``{run uid: {"pid": ..., "time": ...}}``.

    The slot's flock tells whether its owner is alive; a publisher that takes over a
    slot therefore knows that the runs still listed here belong to a process that died
    (SIGKILL, a crash) before its RunEngine emitted their stop documents. Written with
    tmp + rename (no fsync: it only has to survive the process, not the machine).
    """

    def __init__(self, slot: Path) -> None:
        self._path = slot / OPEN_RUNS_NAME
        self.runs: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._path.read_text() or "{}")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("spool: unreadable %s (%s); ignoring it", self._path, exc)
            return {}
        return {str(k): dict(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def opened(self, run: str) -> None:
        self.runs[run] = {"pid": os.getpid(), "time": time.time()}
        self._write()

    def closed(self, run: str) -> None:
        if self.runs.pop(run, None) is not None:
            self._write()

    def _write(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(self.runs).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("spool: cannot record open runs in %s: %s", self._path, exc)


def open_spool(base: Path) -> Spool:
    """Open the first free slot under ``base`` (slots with leftover data first, so a new
    process drains what a previous one left behind)."""
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SpoolError(f"cannot create spool directory {base}: {exc}") from None
    try:
        return _open_free_slot(base)
    except SpoolError:
        raise
    except OSError as exc:
        raise SpoolError(
            f"cannot use the spool directory {base}: {exc.strerror or exc} "
            f"(it must be writable by this user)"
        ) from None


def _open_free_slot(base: Path) -> Spool:
    slots = sorted(
        (p for p in base.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: (not _slot_has_data(p), int(p.name)),
    )
    used = {int(p.name) for p in slots}
    candidates = [*slots, base / str(max(used, default=-1) + 1)]
    for slot in candidates:
        slot.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            _fsync_dir(base)
            return Spool(slot, fd)
        except OSError:
            os.close(fd)
            raise
    raise SpoolError(f"no free spool slot under {base}")
