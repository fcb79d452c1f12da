"""Session processes forked from one process that has imported bluesky and ophyd already.

A session process of the tests (``tests/datapath/_emitter.py``) spends ~1.6 CPU-s
importing bluesky, ophyd (its area-detector classes) and beampod before it emits a
document. ``start_forked`` starts it as a child of multiprocessing's fork server instead,
whose process imported those modules once (``PRELOAD``): each child is a real, separate
process (its own pid, killed with SIGKILL, its exit status reported), with the stdout,
stderr, working directory, environment and ``sys.argv`` it would have had from
``subprocess.Popen``; at its end it runs what a normal interpreter exit runs (waiting for
its threads, then ``atexit``: the durable publisher's close). What it does not have is
its own command line (``ps`` shows the fork server's) nor a fresh interpreter: tests of
a command's process (its imports, its warnings) keep ``subprocess``.

The fork server is started (by the first child of a test process) with the environment
the test process had without ``BEAMPOD_HOME``, and stopped at the end of the session
(``stop_fork_server``, from ``tests/conftest.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from multiprocessing import reduction
from typing import IO, Any
from unittest import mock

# What the fork server imports once: what the emitter and make_run_engine import.
PRELOAD = [
    "bluesky.plan_stubs",
    "bluesky.preprocessors",
    "bluesky.run_engine",
    "ophyd.sim",
    "ophyd_async",  # the RunEngine imports it for its metadata
    "beampod.bus",
    "beampod.bus._publisher",  # beampod.bus imports its parts on first use
    "beampod.bus._transports",
    "beampod.bus._kafka",
    "beampod.bus._zmq",
    "bluesky.callbacks.zmq",
    "beampod.config",
    "beampod.session",
    "tests.datapath._emitter",
]


class _Fd:
    """A file descriptor handed to the child (sent to the fork server with the request)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return (_inherited, (reduction.DupFd(self.fd),))


def _inherited(dup: Any) -> int:
    return int(dup.detach())


def _child(module: str, argv: list[str], cwd: str, env: dict[str, str], out: int, err: int) -> None:
    """In the forked child: the process ``python <argv>`` would be, then its exit."""
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {out, err} - {1, 2}:
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv)
    _real_control_layer()
    try:  # SystemExit and an uncaught exception: multiprocessing reports them as Python
        code = importlib.import_module(module).main()
    finally:
        threading._shutdown()  # type: ignore[attr-defined]  # non-daemon threads first
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    raise SystemExit(code)


def _real_control_layer() -> None:
    """ophyd as a fresh process has it: the control layer its environment names, and
    ``ophyd.sim``'s devices made with it (the fork server imported ophyd with the dummy
    layer: pyepics' Channel Access threads do not survive a fork, and its exit handler
    then waits on them forever)."""
    ophyd = sys.modules.get("ophyd")
    if ophyd is None:
        return
    ophyd.set_cl()
    if "ophyd.sim" in sys.modules:
        importlib.reload(sys.modules["ophyd.sim"])


class ForkedProcess:
    """What the tests use of ``subprocess.Popen`` for a forked child."""

    def __init__(self, process: Any, argv: list[str], stdout: IO[str]) -> None:
        self._process = process
        self.args = argv
        self.pid: int = process.pid
        self.stdout = stdout

    @property
    def returncode(self) -> int | None:
        code = self._process.exitcode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def _server_environ() -> Iterator[None]:
    """The environment the fork server starts in: not a pod's process (no
    BEAMPOD_HOME), and ophyd without Channel Access threads (see _real_control_layer)."""
    env = {k: v for k, v in os.environ.items() if k != "BEAMPOD_HOME"}
    with mock.patch.dict(os.environ, env | {"OPHYD_CONTROL_LAYER": "dummy"}, clear=True):
        yield


def start_forked(
    module: str, argv: list[str], *, cwd: str, env: Mapping[str, str], stderr: IO[Any]
) -> ForkedProcess:
    """``subprocess.Popen([python, *argv], cwd=, env=, stdout=PIPE, stderr=, text=True,
    stdin=DEVNULL)`` for a script whose ``main()`` is ``module.main``, forked from the
    fork server."""
    ctx = multiprocessing.get_context("forkserver")
    with _server_environ():
        ctx.set_forkserver_preload(PRELOAD)
        multiprocessing.forkserver.ensure_running()
    r, w = os.pipe()
    try:
        process = ctx.Process(
            target=_child,
            args=(module, argv, cwd, dict(env), _Fd(w), _Fd(stderr.fileno())),
            daemon=True,
        )
        process.start()
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return ForkedProcess(process, argv, open(r, encoding="utf-8"))


def stop_fork_server() -> None:
    """Stop this process's fork server, if it started one."""
    server: Any = multiprocessing.forkserver._forkserver
    server._stop()
