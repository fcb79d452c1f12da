"""beampod's uvicorn servers tick once a second and still serve and stop at once."""

from __future__ import annotations

import asyncio
import email.utils
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from beampod import _uvicorn
from tests._pods import free_port


async def hello(scope: dict, receive: object, send: object) -> None:
    assert scope["type"] in ("http", "lifespan")
    if scope["type"] == "lifespan":
        while True:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


def wait_started(server: object, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not getattr(server, "started", False):
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)


def test_a_quiet_server_serves_between_ticks_and_stops_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With an hour between ticks the loop ends only if setting should_exit wakes it, and
    # a request is answered only if serving does not wait for a tick.
    monkeypatch.setattr(_uvicorn, "TICK_S", 3600.0)
    port = free_port()
    server = _uvicorn.quiet_server(hello, host="127.0.0.1", port=port, log_level="warning")
    ticks: list[int] = []
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()))
    thread.start()
    try:
        wait_started(server)
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert answer.status_code == 200 and answer.text == "hello"
        date = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
        assert abs(date - time.time()) < 120
        assert ticks == [0], "served without a tick"
    finally:
        server.should_exit = True
        thread.join(60)
    assert not thread.is_alive(), "should_exit did not wake the server's loop"
    assert ticks == [0, 10]  # one more tick, the one that saw should_exit


def test_a_quiet_server_process_stops_at_once_on_sigterm() -> None:
    port = free_port()
    code = f"""
        from beampod import _uvicorn
        from tests.test_uvicorn import hello
        _uvicorn.TICK_S = 3600.0
        _uvicorn.run(hello, host="127.0.0.1", port={port}, log_level="info")
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail(f"the server did not start (exit {proc.wait(30)})")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text == "hello"
        proc.send_signal(signal.SIGTERM)
        # An hour before its next tick: only the wake-up stops it within 30 s. uvicorn
        # re-raises the signal it captured once it has shut down, as uvicorn.run does.
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_a_quiet_server_that_cannot_bind_exits_with_uvicorns_status() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = f"""
            from beampod import _uvicorn
            from tests.test_uvicorn import hello
            _uvicorn.run(hello, host="127.0.0.1", port={port}, log_level="critical")
        """
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=120
        )
    assert proc.returncode == _uvicorn.STARTUP_FAILURE == 3
