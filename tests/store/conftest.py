"""Real Tiled servers for the store tests, started as the pod would start them.

Readiness is polled against a deadline (no fixed sleeps); teardown terminates the
process and asserts it is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from tests._pods import free_port

START_DEADLINE_S = 90.0
EXTRA_INSTRUMENT = "empty"


@dataclass
class Server:
    pod: LoadedPod
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.pod.config.tiled.port}"

    def key(self, which: str) -> str:
        secret = getattr(self.pod.secrets, f"tiled_{which}_key")
        return str(secret.get_secret_value())


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def wait_until(
    check: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    deadline_s: float = START_DEADLINE_S,
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited ({proc.returncode})\n{_log_tail(log)}")
        if check():
            return
        # Polling interval, not a readiness assumption: the loop is bounded by deadline.
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {deadline_s}s\n{_log_tail(log)}")


def _tiled_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def make_pod(root: Path, *, postgres_port: int | None = None) -> LoadedPod:
    home = PodHome(root)
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    # A second instrument that never gets runs: "one container per instrument" and
    # the empty-catalog error.
    # Appended after "demo", which stays the pod's default (first) instrument.
    marker = "\n# Document bus"
    assert marker in text
    text = text.replace(marker, f"  {EXTRA_INSTRUMENT}:\n    package: beampod.demo\n{marker}", 1)
    if postgres_port is not None:
        text = text.replace(
            "store:\n  backend: sqlite", f"store:\n  backend: postgres\n  port: {postgres_port}"
        )
    home.config_file.write_text(text)
    init_pod(home)  # adds secrets for the extra instrument
    return load_pod(home)


def start_process(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("TILED_SINGLE_USER_API_KEY", None)
    with log.open("ab") as fh:
        return subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.poll() is not None, "server process is still running"


def start_tiled(pod: LoadedPod) -> Server:
    log = pod.home.logs_dir / "tiled.log"
    proc = start_process(
        [sys.executable, "-m", "beampod.store.server", "--home", str(pod.home.root)], log
    )
    server = Server(pod, proc, log)
    try:
        wait_until(lambda: _tiled_ready(server.url), "tiled", proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return server


@pytest.fixture(scope="package")
def tiled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pod = make_pod(tmp_path_factory.mktemp("pod-sqlite"))
    server = start_tiled(pod)
    yield server
    stop_process(server.proc)


@pytest.fixture(scope="package")
def pg_server() -> Iterator[Server]:
    import shutil
    import tempfile

    # Not under pytest's tmp root: under root, postgres runs as an unprivileged user
    # that must traverse the parents of its data directory, and every pytest session
    # (also a concurrent one) resets /tmp/pytest-of-<user> to 0700.
    base = Path(tempfile.mkdtemp(prefix="beampod-pg-"))
    try:
        yield from _pg_server(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _pg_server(base: Path) -> Iterator[Server]:
    from beampod.services._svc_tiled import postgres_spec

    pod = make_pod(base / "pod", postgres_port=free_port())
    spec = postgres_spec(pod)
    assert spec.prepare is not None
    spec.prepare()
    spec.prepare()  # idempotent: second initdb is a no-op
    pg_log = pod.home.logs_dir / "postgres.log"
    pg = start_process(list(spec.argv), pg_log)
    try:
        wait_until(lambda: asyncio.run(spec.probe.ready()), "postgres", pg, pg_log)
        server = start_tiled(pod)
    except BaseException:
        stop_process(pg, signal.SIGINT)
        raise
    yield server
    stop_process(server.proc)
    stop_process(pg, signal.SIGINT)


# -- documents -----------------------------------------------------------------------

Docs = list[tuple[str, dict[str, Any]]]


def generate_run(
    plan: str = "scan", num: int = 7, md: dict[str, Any] | None = None, scan_id: int = 1
) -> Docs:
    """Documents of one real RunEngine run over ophyd.sim's det and motor."""
    from bluesky import RunEngine
    from bluesky.plans import count, scan
    from ophyd.sim import det, motor

    docs: Docs = []
    RE = RunEngine({"scan_id": scan_id - 1}, call_returns_result=False)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    if plan == "scan":
        RE(scan([det], motor, -1, 1, num, md=md or {}))
    else:
        RE(count([det, motor], num=num, md=md or {}))
    return docs


@pytest.fixture
def make_run() -> Callable[..., Docs]:
    return generate_run
