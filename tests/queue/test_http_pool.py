"""The queue HTTP pool's own parts (ADR 0034): bluesky-httpserver's module-level
resources looked up per member, members served side by side in one process, and what
the pool's process refuses. The pool running in a facility, with the real clients:
tests/facility/test_facility_queues.py."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from beampod.config import queue_servers
from beampod.errors import BeampodError, UsageError
from beampod.queue import QueueFiles, write_http_config
from beampod.queue._http_main import instruments_of, shared_settings
from beampod.queue._http_pool import ResourcesByInstrument
from tests._fresh import fresh_json
from tests._pods import free_ports
from tests.datapath._helpers import wait_for
from tests.web._homes import three_queue_instruments

pytestmark = pytest.mark.timeout(120)


class _Resources:
    def __init__(self) -> None:
        self.RM: object = None

    def set_RM(self, rm: object) -> None:
        self.RM = rm


def test_each_member_sees_its_own_resources_in_tasks_and_threads() -> None:
    stand_in = ResourcesByInstrument(_Resources)
    a, b = stand_in.new_member(), stand_in.new_member()

    async def as_member(own: object, rm: str) -> tuple[object, object, object]:
        with stand_in.member(own):
            stand_in.set_RM(rm)  # what the app's startup does
            await asyncio.sleep(0)
            in_task = await asyncio.create_task(asyncio.sleep(0, stand_in.RM))
            in_thread = await asyncio.to_thread(lambda: stand_in.RM)
            return stand_in.RM, in_task, in_thread

    async def both() -> list[tuple[object, object, object]]:
        return list(await asyncio.gather(as_member(a, "rm-a"), as_member(b, "rm-b")))

    assert asyncio.run(both()) == [("rm-a",) * 3, ("rm-b",) * 3]
    assert (a.RM, b.RM) == ("rm-a", "rm-b")
    with pytest.raises(RuntimeError, match=r"SERVER_RESOURCES\.RM used outside"):
        _ = stand_in.RM


def test_the_stand_in_is_what_upstreams_app_and_routes_bind() -> None:
    got = fresh_json(
        """
        import json
        from beampod.queue._http_pool import install_resources_by_instrument
        stand_in = install_resources_by_instrument()
        from bluesky_httpserver import app
        from bluesky_httpserver.routers import core_api
        try:
            install_resources_by_instrument()
            again = None
        except Exception as exc:
            again = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"app": app.SR is stand_in, "routes": core_api.SR is stand_in,
                          "again": again}))
        """
    )
    assert got["app"] and got["routes"]
    assert got["again"].startswith("BeampodError: bluesky_httpserver.app, ")


_SERVE = textwrap.dedent(
    """
    import sys
    from beampod.queue._http_pool import ResourcesByInstrument, MemberApp, member_server
    from beampod.queue._http_pool import serve_members
    import asyncio

    stand_in = ResourcesByInstrument(dict)

    def app(name):
        async def reply(scope, receive, send):
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            own = stand_in.get("name") or name  # this member's own resources object
            stand_in.setdefault("name", name)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": own.encode()})
        return MemberApp(reply, stand_in)

    ports = [int(p) for p in sys.argv[1:]]
    servers = [member_server(app(f"m{i}"), "127.0.0.1", p) for i, p in enumerate(ports)]
    sys.exit(asyncio.run(serve_members(servers)))
    """
)


def _answers(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except httpx.TransportError:
        return None


def test_members_serve_side_by_side_and_stop_together_on_sigterm(tmp_path: Path) -> None:
    ports = free_ports(2)
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, *map(str, ports)])
    try:
        wait_for(lambda: all(_answers(p) for p in ports), 30, "both members to answer")
        assert [_answers(p) for p in ports] == ["m0", "m1"]
        assert [_answers(p) for p in ports] == ["m0", "m1"]  # each its own, kept
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert [_answers(p) for p in ports] == [None, None]


def test_a_member_that_cannot_start_ends_the_whole_pool() -> None:
    import socket

    ports = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[1]))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-c", _SERVE, *map(str, ports)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert "address already in use" in proc.stderr.lower()
    assert _answers(ports[0]) is None  # the other member does not stay up alone


def test_the_pool_takes_only_instrument_arguments() -> None:
    assert instruments_of([]) == []
    assert instruments_of(["--instrument", "bl01", "--instrument", "bl02"]) == ["bl01", "bl02"]
    for bad in (["--instrument"], ["bl01"], ["--instrument", "bl01", "--port", "1"]):
        with pytest.raises(UsageError, match="--instrument NAME"):
            instruments_of(bad)


def test_members_whose_authentication_settings_differ_are_refused(tmp_path: Path) -> None:
    pod = three_queue_instruments(tmp_path / "f", 2)
    servers = [queue_servers(pod)[i] for i in ("bl01", "bl02")]
    for server in servers:
        write_http_config(pod, server)
    shared_settings(pod, servers)  # as beampod writes them: one section for all
    path = QueueFiles.of(pod.home, servers[1]).http_config
    data = yaml.safe_load(path.read_text())
    data["authentication"]["allow_anonymous_access"] = False
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BeampodError, match="differ in their 'authentication' section"):
        shared_settings(pod, servers)
