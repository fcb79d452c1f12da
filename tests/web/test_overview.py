"""The Overview of a facility config: services grouped by instrument, then central ones."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from beampod.web import build_app, build_console
from beampod.web._podstate import ServiceRow, group_services, instrument_of
from tests.web._homes import pod_home, two_instruments

SERVICES = [
    "nats",
    "redis",
    "tiled",
    "writer-bl01",
    "writer-bl02",
    "ioc-bl01-bl01",
    "ioc-bl02-bl02",
    "queue",
    "queue-http",
    "agent",
    "web",
]


def _row(name: str) -> ServiceRow:
    return ServiceRow(name, "ready", 1, "", "", 0, 1.0, "")


def test_services_are_grouped_by_instrument_then_central() -> None:
    groups = group_services([_row(n) for n in SERVICES], ["bl01", "bl02"])
    named = [(g, [r.name for r in rows]) for g, rows in groups]
    assert named == [
        ("bl01", ["writer-bl01", "ioc-bl01-bl01"]),
        ("bl02", ["writer-bl02", "ioc-bl02-bl02"]),
        ("central", ["nats", "redis", "tiled", "queue", "queue-http", "agent", "web"]),
    ]
    # One instrument: one group, nothing to tell apart.
    assert group_services([_row("writer")], ["demo"]) == [("", [_row("writer")])]


def test_an_instrument_is_a_whole_part_of_the_name() -> None:
    names = ["bl1", "bl10", "a-b"]
    assert instrument_of("writer-bl10", names) == "bl10"
    assert instrument_of("ioc-bl1-x", names) == "bl1"
    assert instrument_of("writer-a-b", names) == "a-b"
    assert instrument_of("queue-http", names) is None
    assert instrument_of("bl1", names) is None  # a service named like an instrument: central


def test_overview_page_of_two_instruments(tmp_path: Path) -> None:
    pod = pod_home(tmp_path / "pod", instruments=two_instruments())
    now = time.time()
    state: dict[str, Any] = {
        "phase": "up",
        "services": {n: {"state": "ready", "pid": 10, "ready_at": now} for n in SERVICES},
    }
    pod.home.state_file.write_text(json.dumps(state))

    async def never(link: Any) -> Any:
        import asyncio

        await asyncio.Event().wait()
        yield ("never", {})  # pragma: no cover

    console = build_console(
        pod, devices=False, live_source=never, peer_uid=lambda c, s: 1000, owner_uid=1000
    )
    with TestClient(build_app(console), client=("127.0.0.1", 40000)) as client:
        html = client.get("/?partial=1").text
    bodies = re.findall(r'<tbody data-group="([^"]+)">(.*?)</tbody>', html, re.S)
    assert [g for g, _ in bodies] == ["bl01", "bl02", "central"]
    rows = {g: re.findall(r'data-service="([^"]+)"', body) for g, body in bodies}
    assert rows["bl02"] == ["writer-bl02", "ioc-bl02-bl02"]
    assert "writer-bl01" not in rows["central"] and "web" in rows["central"]
    assert "instrument bl01" in html and "central services" in html
