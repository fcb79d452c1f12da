"""The facility bench's request log (``bench/_reqlog.py``): a writer's process logs
each request its httpx client makes, with Tiled's own time; other processes nothing."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests._bench import bench_module


@pytest.fixture
def reqlog() -> Iterator[ModuleType]:
    with bench_module("_reqlog") as module:
        yield module


class _Tiled(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if "metadata" in self.path else 404)
        self.send_header("Server-Timing", "acl;dur=0.1, app;dur=12.5")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tiled)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(5)


def _client(url: str, *argv: str) -> None:
    code = (
        "import httpx, time\n"
        f"c = httpx.Client(base_url={url!r})\n"
        "for p in ('/api/v1/metadata/bl01/run1', '/api/v1/metadata/bl01/run1', '/api/v1/x'):\n"
        "    c.get(p)\n"
        "time.sleep(0.7)\n"  # the hook's writer thread runs every 0.5 s
    )
    subprocess.run([sys.executable, "-c", code, *argv], check=True, timeout=60, env=os.environ)


def test_a_writer_logs_its_requests_and_other_processes_do_not(
    reqlog: ModuleType, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    # Recorded, so that what enable() sets is undone after the test.
    monkeypatch.setenv("BEAMPOD_BENCH_REQUEST_LOG", "")
    directory = tmp_path / "requests"
    began = time.time()
    reqlog.enable(directory)
    _client(server, "beampod.supervisor")
    assert list(directory.glob("*.tsv")) == []
    _client(server, "-m", "beampod.writer", "--instrument", "bl01")
    s = reqlog.summary(directory, began, time.time(), runs=2)
    assert s["requests"] == 3 and s["per_run"] == 1.5
    got = s["kinds"]["GET metadata/2"]
    assert got["n"] == 2 and got["per_run"] == 1.0
    assert got["tiled_p50_ms"] == 12.5 and got["wall_p50_ms"] > 0
    assert s["kinds"]["GET x/0"]["n"] == 1
    assert reqlog.summary(directory, time.time(), time.time() + 1, runs=2)["requests"] == 0
    text = "\n".join(reqlog.lines("steady", s))
    assert "3, 1.5 per run" in text and "GET metadata/2" in text


def test_a_writer_forked_from_the_fork_server_logs_and_the_server_does_not(
    reqlog: ModuleType, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod's Python services are forked from ``beampod._forkserver`` (ADR 39) and run
    no sitecustomize of their own: the hook loaded in the fork server tells each child
    by the command it was given (``sys.orig_argv``), not by its ``sys.argv``, whose
    first word is by then the module's file (until 2026-12-07 it read ``sys.argv`` and
    no forked writer logged anything)."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("BEAMPOD_BENCH_REQUEST_LOG", "")
    directory = tmp_path / "requests"
    began = time.time()
    reqlog.enable(directory)
    code = (
        "import os, sys, time, httpx\n"
        f"c = httpx.Client(base_url={server!r})\n"
        "c.get('/api/v1/metadata/server')\n"  # the fork server's own: not a writer
        "pid = os.fork()\n"
        "if pid == 0:\n"
        # What the fork server leaves a writer (beampod._forkserver.become, then
        # beampod._preload's runpy): the command it became, and the module's file as
        # sys.argv[0]. (Spelt in two parts: the server's own command line must not
        # name a writer.)
        "    sys.orig_argv = [sys.executable, '-m', 'beampod._preload', 'beampod.' + 'writer',"
        " '--instrument', 'bl01']\n"
        "    sys.argv = ['/src/beampod/writer/__main__.py', '--instrument', 'bl01']\n"
        "    for _ in range(2):\n"
        "        httpx.Client(base_url=" + repr(server) + ").get('/api/v1/metadata/bl01/r')\n"
        "    time.sleep(0.7)\n"  # the hook's writer thread runs every 0.5 s
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "c.get('/api/v1/metadata/server')\n"
        "time.sleep(0.7)\n"
        "print(pid)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "beampod._forkserver"],
        check=True,
        timeout=60,
        env=os.environ,
        capture_output=True,
        text=True,
    )
    child = done.stdout.strip()
    assert [p.name for p in directory.glob("*.tsv")] == [f"{child}.tsv"]
    s = reqlog.summary(directory, began, time.time(), runs=1)
    assert s["requests"] == 2 and s["kinds"]["GET metadata/2"]["n"] == 2
