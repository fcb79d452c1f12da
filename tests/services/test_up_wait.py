"""`beampod up -d` sees a new state file as soon as the supervisor writes it
(services/_upwait.py ``wait_for_new_state``), instead of at its next 0.1 s turn."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from beampod.services._upwait import _file_signature, wait_for_new_state


class _Running:
    pid = 0

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        raise AssertionError("not waited on")


class _Exited(_Running):
    def poll(self) -> int | None:
        return 1


def _replace(path: Path, text: str) -> None:
    """As the supervisor writes its state: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.parametrize("first", [False, True], ids=["replaced", "first"])
def test_a_new_state_file_ends_the_wait(tmp_path: Path, first: bool) -> None:
    """The supervisor replaced the state file, or wrote its first one."""
    state = tmp_path / "state.json"
    if not first:
        _replace(state, '{"phase": "starting"}')
    seen = _file_signature(state)
    assert (seen is None) == first
    writer = threading.Thread(target=_replace, args=(state, '{"phase": "running"}'))
    writer.start()
    try:
        # Far longer than the test takes: False here would mean the change was missed.
        assert wait_for_new_state(state, seen, _Running(), timeout=60.0)
    finally:
        writer.join()


def test_no_change_waits_out_the_timeout_and_an_exited_supervisor_ends_it(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    _replace(state, "{}")
    seen = _file_signature(state)
    assert not wait_for_new_state(state, seen, _Running(), timeout=0.05)
    assert not wait_for_new_state(state, seen, _Exited(), timeout=60.0)
