"""Suite-wide fixtures: one real pod per test session, and a leak check.

The pod runs from a temporary home with free ports, so tests never touch a user's pod
and two test runs on one machine do not collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from beampod.config._pod import DEFAULT_FREE_PORTS, FREE_PORTS_ENV


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker makes its pods' ports from a slice of its own of the free-port
    range (its subprocesses inherit it): two workers starting pods at the same moment
    once picked the same IOC port, both before either had bound it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2 or FREE_PORTS_ENV in os.environ:
        return
    low, high = DEFAULT_FREE_PORTS
    width = (high - low) // count
    start = low + int(worker[2:]) * width
    os.environ[FREE_PORTS_ENV] = f"{start}-{start + width}"


def beampod_cli(
    home: Path, *args: str, timeout: float = 240, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real ``beampod`` command line, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"beampod {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def beampod_in_process(
    home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The ``beampod`` command's entry (``main(argv)``: argument parsing, the command,
    its exit code and output) in this process, for commands that only read or ask the
    supervisor (``status``, ``service stop|start|restart``): what ``beampod_cli``
    proves without a Python process per call (~0.4 s of CPU each, a poll loop's
    confirmations add up). Commands that start processes or change this process's
    state (``up``, ``init``: umask; ``run``) go through ``beampod_cli``."""
    import contextlib
    import io

    from beampod.cli._app import main

    argv = ["--home", str(home), *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    proc = subprocess.CompletedProcess(["beampod", *argv], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(
            f"beampod {' '.join(args)} exited {code}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def processes_using(path: Path) -> list[psutil.Process]:
    """Live processes of a pod: its home is in their command line or BEAMPOD_HOME."""
    found = []
    needle = str(path)
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if needle in cmd or proc.environ().get("BEAMPOD_HOME") == needle:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="session")
def pod_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodHome]:
    """An initialised (not started) pod home with free ports."""
    home = PodHome(tmp_path_factory.mktemp("pod"))
    init_pod(home, free_ports=True)
    # Tests forge documents that come before ones they need (tests/datapath): they are
    # held back this long before they are dead-lettered (30 s by default).
    text = home.config_file.read_text()
    home.config_file.write_text(text.replace("hold_early_s: 30 ", "hold_early_s: 3  "))
    yield home


@pytest.fixture(scope="session")
def pod(pod_home: PodHome) -> Iterator[LoadedPod]:
    """A running demo pod, started with ``beampod up -d`` and stopped with ``down``.

    Its teardown is also the test of ``down`` on the demo pod: it says so, leaves no
    process behind, and ``status`` then says that no pod is running."""
    beampod_cli(pod_home.root, "up", "-d")
    try:
        yield load_pod(pod_home)
    finally:
        down = beampod_cli(pod_home.root, "down", check=False)
        left = processes_using(pod_home.root)
        for p in left:
            p.kill()
        assert not left, f"processes left behind by the pod: {[p.info for p in left]}"
        assert down.returncode == 0 and "pod stopped" in down.stdout, down
        after = beampod_cli(pod_home.root, "status", check=False)
        assert after.returncode != 0 and "no pod is running" in after.stderr, after


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first, so that the two workers finish together (tests/_order.py)."""
    from tests._order import slowest_first

    items[:] = slowest_first(items, config.rootpath)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the fork server of the session processes, if a test started it
    (``tests/_zygote.py``)."""
    from tests._zygote import stop_fork_server

    stop_fork_server()


@pytest.hookimpl(optionalhook=True)  # only with pytest-xdist (not with -p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the files that share a package-scoped server as one
    unit (``tests/_order.py``: ``SHARED_FIXTURE_GROUPS``); other modes: xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests._order import make_scheduler

    return make_scheduler(config, log)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (``item.rep_call``), so a fixture's
    teardown can tell whether the test body passed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def call_passed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.passed
