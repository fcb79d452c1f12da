"""The spool on its own: no sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beampod.bus import SpoolError, open_spool
from beampod.bus._spool import LOG_NAME, OpenRuns, encode_record


def _recs(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"id{i}", os.urandom(50) + str(i).encode()) for i in range(start, start + n)]


def test_append_and_read_back_in_order(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    recs = _recs(10)
    assert spool.append(recs[:4]) == 4
    assert spool.append(recs[4:]) == 6
    got = spool.read(spool.acked_offset, 100)
    assert [(r.msg_id, r.data) for r in got] == recs
    assert spool.pending == 10
    # Reading is paged and resumes at a record boundary.
    first = spool.read(0, 3)
    assert [r.msg_id for r in spool.read(first[-1].end, 2)] == ["id3", "id4"]
    spool.close()


def test_reopen_keeps_unacked_records(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    recs = _recs(5)
    spool.append(recs)
    got = spool.read(0, 2)
    spool.commit(got[-1].end, 2)
    spool.close()
    again = open_spool(tmp_path)
    assert again.pending == 3
    assert [r.msg_id for r in again.read(again.acked_offset, 10)] == ["id2", "id3", "id4"]
    again.close()


@pytest.mark.parametrize("cut", [1, 5, 11, 20])
def test_torn_tail_is_detected_and_cut(tmp_path: Path, cut: int) -> None:
    spool = open_spool(tmp_path)
    spool.append(_recs(3))
    directory = spool.directory
    spool.close()
    log = directory / LOG_NAME
    good_size = log.stat().st_size
    partial = encode_record("torn", b"x" * 100)[:cut]  # a write interrupted by a crash
    with log.open("ab") as fh:
        fh.write(partial)
    again = open_spool(tmp_path)
    assert again.directory == directory
    assert again.torn_bytes == cut and again.pending == 3
    assert log.stat().st_size == good_size
    again.append([("next", b"after the crash")])
    assert [r.msg_id for r in again.read(0, 10)] == ["id0", "id1", "id2", "next"]
    again.close()


def test_corrupt_crc_in_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(_recs(2))
    log = spool.directory / LOG_NAME
    spool.close()
    data = bytearray(log.read_bytes())
    data[-1] ^= 0xFF
    log.write_bytes(bytes(data))
    again = open_spool(tmp_path)
    assert again.pending == 1 and again.torn_bytes > 0
    again.close()


def test_full_ack_empties_the_log(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(_recs(4))
    recs = spool.read(0, 10)
    spool.commit(recs[-1].end, 4)
    assert spool.pending == 0 and spool.end_offset == 0 and spool.acked_offset == 0
    assert (spool.directory / LOG_NAME).stat().st_size == 0
    spool.append(_recs(1, start=9))
    assert [r.msg_id for r in spool.read(0, 10)] == ["id9"]
    spool.close()


def test_acked_offset_past_end_is_clamped(tmp_path: Path) -> None:
    # A crash between truncating the log and resetting the acked file.
    spool = open_spool(tmp_path)
    directory = spool.directory
    spool.close()
    (directory / "acked").write_text("12345")
    again = open_spool(tmp_path)
    assert again.acked_offset == 0 and again.pending == 0
    again.close()


def test_two_publishers_get_separate_slots_and_leftovers_are_drained(tmp_path: Path) -> None:
    a = open_spool(tmp_path)
    b = open_spool(tmp_path)
    assert a.directory != b.directory
    b.append(_recs(2))
    b.close()
    a.close()
    # A new process prefers the slot that has leftovers.
    c = open_spool(tmp_path)
    assert c.directory == b.directory and c.pending == 2
    c.close()


def test_unusable_directory_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError):
        open_spool(blocker / "spool")


def test_a_slot_with_runs_left_open_is_adopted_first(tmp_path: Path) -> None:
    """A dead publisher's open runs (no spooled records) still make its slot the one
    the next publisher takes, so that publisher can close them."""
    base = tmp_path / "demo"
    first, second = open_spool(base), open_spool(base)
    assert (first.directory.name, second.directory.name) == ("0", "1")
    OpenRuns(second.directory).opened("run-left-open")
    first.close()
    second.close()
    adopted = open_spool(base)
    try:
        assert adopted.directory.name == "1" and adopted.pending == 0
        runs = OpenRuns(adopted.directory)
        assert list(runs.runs) == ["run-left-open"]
        assert runs.runs["run-left-open"]["pid"] == os.getpid()
        assert (adopted.directory / "open-runs").stat().st_mode & 0o777 == 0o600
        runs.closed("run-left-open")
        assert OpenRuns(adopted.directory).runs == {}
    finally:
        adopted.close()
