"""Log rotation under a running writer: every line kept exactly once, in order, across
the rotated copies and the live log; followers and tails see through a rotation."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from tests.datapath._helpers import wait_for

from beampod.services import (
    AllProbes,
    CallableProbe,
    LogFollower,
    LogLimits,
    LogLineProbe,
    _logrotate,
    rotate_if_large,
    tail,
)
from beampod.services._logrotate import keep_logs_bounded, rotate, rotated
from beampod.services._watchdog import check_health


def _line(i: int) -> bytes:
    return f"line {i:08d} {'x' * 40}\n".encode()


def _numbers(data: bytes) -> list[int]:
    return [int(line.split()[1]) for line in data.decode().splitlines()]


def _all_copies(path: Path, keep: int) -> bytes:
    """The rotated copies, oldest first, then the live log."""
    parts = [rotated(path, n) for n in range(keep, 0, -1)]
    return b"".join(p.read_bytes() for p in parts if p.exists()) + path.read_bytes()


class AppendingService:
    """A service writing numbered lines through an O_APPEND descriptor, as the
    supervisor's children write their logs, until stopped."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            os.write(self._fd, _line(self.written))
            self.written += 1

    def __enter__(self) -> AppendingService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        os.close(self._fd)


@pytest.fixture
def collapses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """What each rotation's in-place collapse returned."""
    results: list[bool] = []
    real = _logrotate._collapse

    def spy(fd: int, length: int) -> bool:
        results.append(real(fd, length))
        return results[-1]

    monkeypatch.setattr(_logrotate, "_collapse", spy)
    yield results


def test_rotation_under_a_writer_keeps_every_line_once(
    tmp_path: Path, collapses: list[bool]
) -> None:
    log = tmp_path / "writer.log"
    limits = LogLimits(max_bytes=64 * 1024, keep=50)
    rotations = 0
    with AppendingService(log) as service:
        while rotations < 5:
            wait_for(lambda: log.stat().st_size > limits.max_bytes, 10.0, "the log to grow")
            rotations += rotate_if_large(log, limits)
    assert collapses and all(collapses), "this file system collapses ranges in place"
    numbers = _numbers(_all_copies(log, limits.keep))
    assert numbers == list(range(service.written))
    assert rotated(log, 5).exists() and not rotated(log, 6).exists()
    assert oct(rotated(log, 1).stat().st_mode & 0o777) == "0o600"


def test_without_collapse_the_log_is_copied_then_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tmpfs, NFS: copy and truncate. Lines stay in order, none twice; the writer's next
    line lands at the start of the emptied log."""
    monkeypatch.setattr(_logrotate, "_collapse_range", lambda: None)
    log = tmp_path / "web.log"
    with AppendingService(log) as service:
        wait_for(lambda: log.stat().st_size > 256 * 1024, 10.0, "the log to grow")
        rotate(log, keep=2)
        wait_for(lambda: log.stat().st_size > 0, 10.0, "a line after the rotation")
    # In order, none twice, through to the last; lost, if any: what was written between
    # the copy's last read and the truncation (here a thread of this process, which
    # may run for a whole GIL switch interval in that instant).
    numbers = _numbers(_all_copies(log, 2))
    assert numbers == sorted(set(numbers))
    assert numbers[0] == 0 and numbers[-1] == service.written - 1
    assert _numbers(log.read_bytes())[0] > _numbers(rotated(log, 1).read_bytes())[-1]


def test_older_copies_shift_and_the_oldest_goes(tmp_path: Path) -> None:
    log = tmp_path / "tiled.log"
    for generation in range(4):
        log.write_bytes(f"generation {generation}\n".encode() * 2000)
        rotate(log, keep=2)
    assert rotated(log, 1).read_text().startswith("generation 3")
    assert rotated(log, 2).read_text().startswith("generation 2")
    assert not rotated(log, 3).exists()


def test_a_small_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "redis.log"
    log.write_bytes(_line(1))
    assert not rotate_if_large(log, LogLimits(max_bytes=1024, keep=2))
    assert not rotate_if_large(tmp_path / "absent.log", LogLimits(max_bytes=1024, keep=2))
    assert not rotated(log, 1).exists() and log.read_bytes() == _line(1)


@pytest.mark.parametrize("lagging", [False, True], ids=["at-the-end", "behind-the-cut"])
def test_a_follower_reads_each_line_once_across_a_rotation(tmp_path: Path, lagging: bool) -> None:
    """``beampod logs -f``: a follower at the end of the log, or one that fell behind
    past the cut (its unread bytes are in .1 now), reads every later line once."""
    log = tmp_path / "queue.log"
    log.write_bytes(b"".join(_line(i) for i in range(100)))
    follower = LogFollower(log)
    got = b""
    with log.open("ab") as out:
        out.write(b"".join(_line(i) for i in range(100, 5000)))
        out.flush()
        if not lagging:
            got += follower.read()
        rotate(log, keep=2)
        out.write(b"".join(_line(i) for i in range(5000, 5100)))
        out.flush()
    got += follower.read()
    assert _numbers(got) == list(range(100, 5100))


def test_tail_reaches_into_the_rotated_copy(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_bytes(b"".join(_line(i) for i in range(3000)))
    rotate(log, keep=2)
    with log.open("ab") as out:
        out.write(_line(3000))
    assert _numbers(tail(log, 5).encode()) == [2996, 2997, 2998, 2999, 3000]


def test_the_supervisor_task_skips_starting_services_and_reports(tmp_path: Path) -> None:
    running, starting = tmp_path / "writer.log", tmp_path / "tiled.log"
    for path in (running, starting):
        path.write_bytes(b"".join(_line(i) for i in range(500)))
    said: list[str] = []

    async def scenario() -> None:
        task = asyncio.create_task(
            keep_logs_bounded(
                tmp_path, LogLimits(8 * 1024, 2), lambda: ["tiled"], said.append, interval_s=0.01
            )
        )
        try:
            await asyncio.wait_for(_until(lambda: bool(said)), 10.0)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert said[0].startswith("log writer.log rotated")
    assert rotated(running, 1).exists() and not rotated(starting, 1).exists()


def test_a_log_line_probe_reads_a_rotated_log_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "ioc.log"
    log.write_bytes(b"x" * 10_000)
    probe = LogLineProbe(log, r"^READY", offset=10_000)
    log.write_bytes(b"READY prefix=x\n")  # rotated meanwhile: now shorter than the offset
    assert asyncio.run(probe.ready())


def test_health_checks_do_not_reread_logs(tmp_path: Path) -> None:
    """A service said its ready line once; its health is the other probes' (an
    agent's log is not read again on every check)."""
    unreadable = LogLineProbe(tmp_path / "absent.log", r"^READY")
    answers = CallableProbe(lambda: _answer(True), "answers")
    fails = CallableProbe(lambda: _answer(False), "fails")
    assert asyncio.run(check_health(AllProbes((unreadable, answers)))).failing is None
    assert asyncio.run(check_health(AllProbes((unreadable, fails)))).failing == "fails"


async def _answer(value: bool) -> bool:
    return value


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_a_rotation_that_fails_leaves_the_log_and_no_half_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the copy fails; the live log keeps every line, and no partial
    ``.1.tmp`` takes what space is left."""
    log = tmp_path / "nats.log"
    content = b"".join(_line(i) for i in range(3000))
    log.write_bytes(content)

    def full_disk(fd: int, dest: Path, length: int | None) -> None:
        dest.write_bytes(content[:4096])  # what fitted
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_logrotate, "_copy", full_disk)
    with pytest.raises(OSError, match="No space left"):
        rotate(log, keep=2)
    assert log.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nats.log"]


class _CountingLock(asyncio.Lock):
    """The supervisor's log lock, counting who asked for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def acquire(self) -> Literal[True]:
        self.asked += 1
        return await super().acquire()


def test_a_rotation_waits_for_a_start_taking_its_offset(tmp_path: Path) -> None:
    """A start holds the log lock while it takes its log's offset: the rotation waits
    for it, and then finds the service starting and leaves its log alone."""
    log = tmp_path / "writer.log"
    log.write_bytes(b"".join(_line(i) for i in range(500)))
    starting: set[str] = set()
    said: list[str] = []

    async def scenario() -> None:
        lock = _CountingLock()
        await lock.acquire()  # a start, taking the writer log's offset
        task = asyncio.create_task(
            keep_logs_bounded(
                tmp_path,
                LogLimits(8 * 1024, 2),
                lambda: starting,
                said.append,
                lock=lock,
                interval_s=0.01,
            )
        )
        try:
            await asyncio.wait_for(_until(lambda: lock.asked >= 2), 10.0)
            assert not rotated(log, 1).exists(), "rotated under a start taking its offset"
            starting.add("writer")  # the start is under way when it lets go
            lock.release()
            await asyncio.wait_for(_until(lambda: lock.asked >= 4), 10.0)
            assert not rotated(log, 1).exists(), "rotated while its service was starting"
            starting.clear()  # ready
            await asyncio.wait_for(_until(lambda: bool(said)), 10.0)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert len(said) == 1 and said[0].startswith("log writer.log rotated")
    assert rotated(log, 1).exists()
