"""Preloading imports at low priority: the modules end up imported, the calling thread
keeps its priority, and an import error reaches the caller."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from beampod._preload import preload


def test_preload_imports_and_leaves_the_callers_priority_alone() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    sys.modules.pop("colorsys", None)
    preload(["colorsys"])
    assert "colorsys" in sys.modules
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_preload_raises_the_import_error_in_the_caller() -> None:
    with pytest.raises(ModuleNotFoundError, match="beampod_no_such_module"):
        preload(["beampod_no_such_module"])


def test_an_early_service_argv_goes_through_the_preloader() -> None:
    from beampod._preload import early_argv

    argv = (sys.executable, "-m", "beampod.web")
    assert early_argv(argv) == (sys.executable, "-m", "beampod._preload", "beampod.web")
    # Another interpreter (an environment cycle's) or no ``-m``: unchanged.
    assert early_argv(("/other/python", "-m", "beampod.web")) == (
        "/other/python",
        "-m",
        "beampod.web",
    )
    assert early_argv(("/bin/nats-server", "-c", "x")) == ("/bin/nats-server", "-c", "x")


def test_run_early_imports_at_low_priority_then_runs_main_at_the_callers(
    tmp_path: Path,
) -> None:
    """``python -m beampod._preload MODULE ARGS``: the module's top level (what it
    imports) runs in the low-priority thread, its ``__main__`` block in the main
    thread at the caller's priority, with the arguments, once; a package runs its
    ``__main__``; the exit code is the module's."""
    import subprocess
    import textwrap

    record = textwrap.dedent(
        """
        import os, sys, threading
        def where(label):
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            print(label, __name__, threading.current_thread().name, nice, flush=True)
        where("top")
        if __name__ == "__main__":
            where("main " + " ".join(sys.argv[1:]))
            sys.exit(3)
        """
    )
    (tmp_path / "early_mod.py").write_text(record)
    (tmp_path / "early_pkg").mkdir()
    (tmp_path / "early_pkg" / "__init__.py").write_text("")
    (tmp_path / "early_pkg" / "__main__.py").write_text(record)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for module in ("early_mod", "early_pkg"):
        proc = subprocess.run(
            [sys.executable, "-m", "beampod._preload", module, "a", "b"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 3, proc.stderr
        lines = [line.split() for line in proc.stdout.splitlines()]
        top, *rest = lines
        assert top[2] == "beampod-preload" and int(top[3]) == min(base + 10, 19), lines
        # Run as __main__ (its top level once more, importing nothing new), at the
        # caller's priority, with its arguments.
        assert rest[0][:3] == ["top", "__main__", "MainThread"] and int(rest[0][3]) == base
        assert rest[1] == ["main", "a", "b", "__main__", "MainThread", str(base)], lines
        assert "RuntimeWarning" not in proc.stderr, proc.stderr


# Waits (bounded) for the nice its caller expects once ``main`` runs, given in
# BEAMPOD_PROBE_EXPECT; in someone else's session that is the caller's own at once.
_AUTOGROUP_PROBE = """
import os, time
from beampod._autogroup import autogroup_nice
print("top", autogroup_nice(), flush=True)
if __name__ == "__main__":
    print("main", autogroup_nice(), flush=True)
    expect = os.environ["BEAMPOD_PROBE_EXPECT"]
    deadline = time.monotonic() + 30
    while str(autogroup_nice()) != expect and time.monotonic() < deadline:
        time.sleep(0.01)  # polling, bounded by the deadline
    print("later", autogroup_nice(), flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups")
@pytest.mark.parametrize("own_session", [True, False])
def test_a_session_leader_imports_with_its_session_at_low_priority(
    tmp_path: Path, own_session: bool
) -> None:
    """Where CPU time is shared out per session (autogroups), a thread's nice value
    counts only inside its session: a service alone in its session (as the supervisor
    starts each) lowers the session's priority while it imports, and its ``main`` gets
    it back; a process in someone else's session (a shell's) leaves it alone."""
    import subprocess

    from beampod._autogroup import autogroup_nice
    from beampod._preload import SESSION_NICE

    (tmp_path / "group_probe.py").write_text(_AUTOGROUP_PROBE)
    ours = autogroup_nice()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "BEAMPOD_PROBE_EXPECT": "0" if own_session else str(ours),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "beampod._preload", "group_probe"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        start_new_session=own_session,
    )
    assert proc.returncode == 0, proc.stderr
    # The first line is printed by the import, the last by ``main`` once it waited.
    lines = [line.split() for line in proc.stdout.splitlines()]
    first, last = lines[0], lines[-1]
    if own_session:
        assert (first, last) == (["top", str(SESSION_NICE)], ["later", "0"]), lines
    else:
        # A session in the kernel's default group (a CI runner's, never ``setsid``)
        # shows no autogroup: None, in ours and in the probe's alike.
        assert {nice for _, nice in lines} == {str(ours)}, lines
    assert autogroup_nice() == ours
