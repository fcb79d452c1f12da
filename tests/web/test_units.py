"""The console's pure parts: peer uid of a real loopback socket, the plan form, the live
feed's messages and fan-out, run tables, the state-file reader, sessions and keys."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from beampod.auth import peer_uid
from beampod.config import PodHome
from beampod.errors import PlanError
from beampod.web import Keys, Sessions
from beampod.web._forms import form_expression, item_from_expression, item_text, plan_form
from beampod.web._live import Link, LiveFeed, to_messages
from beampod.web._podstate import format_duration, log_tail, read_pod_state
from beampod.web._runs import default_axes, table_csv

SCAN = {
    "description": "Scan over one multi-motor trajectory.",
    "parameters": [
        {"name": "detectors", "kind": {"name": "POSITIONAL_OR_KEYWORD"}},
        {"name": "args", "kind": {"name": "VAR_POSITIONAL"}},
        {"name": "num", "kind": {"name": "KEYWORD_ONLY"}, "default": "None"},
        {"name": "md", "kind": {"name": "KEYWORD_ONLY"}, "default": "None"},
    ],
}
COUNT = {
    "parameters": [
        {"name": "detectors", "kind": {"name": "POSITIONAL_OR_KEYWORD"}},
        {"name": "num", "kind": {"name": "POSITIONAL_OR_KEYWORD"}, "default": "1"},
        {"name": "delay", "kind": {"name": "POSITIONAL_OR_KEYWORD"}, "default": "None"},
        {"name": "kwargs", "kind": {"name": "VAR_KEYWORD"}},
    ]
}
DEVICES = ["pinhole", "motor_ph"]


# -- peer uid ----------------------------------------------------------------------------


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_peer_uid_of_a_real_loopback_connection(family: int, host: str) -> None:
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} on this machine")
        server.listen()
        with socket.socket(family) as client:
            client.connect(server.getsockname()[:2])
            conn, addr = server.accept()
            with conn:
                # As the server sees it: the client's address and its own.
                assert peer_uid(addr[:2], conn.getsockname()[:2]) == os.getuid()
                # A connection that does not exist has no owner.
                assert peer_uid((host, 1), conn.getsockname()[:2]) is None


def test_peer_uid_rejects_garbage() -> None:
    assert peer_uid(("testclient", 50000), ("testserver", 80)) is None


# -- plan form ---------------------------------------------------------------------------


def test_form_from_signature_hides_var_keyword_and_marks_required() -> None:
    form = plan_form("count", COUNT)
    assert [f.name for f in form.fields] == ["detectors", "num", "delay"]
    assert [f.required for f in form.fields] == [True, False, False]


def test_form_expression_positional_varargs_and_keywords() -> None:
    form = plan_form("scan", SCAN)
    values = {"detectors": "[pinhole]", "args": "motor_ph, -1, 1", "num": "5", "md": ""}
    expr = form_expression(form, values)
    assert expr == "scan([pinhole], motor_ph, -1, 1, num=5)"
    item = item_from_expression(expr, ["scan"], DEVICES)
    assert item == {
        "item_type": "plan",
        "name": "scan",
        "args": [["pinhole"], "motor_ph", -1, 1],
        "kwargs": {"num": 5},
    }
    assert json.loads(json.dumps(item)) == item
    assert item_text(item, DEVICES) == expr


def test_form_expression_keyword_after_a_skipped_positional() -> None:
    form = plan_form("count", COUNT)
    assert form_expression(form, {"detectors": "[pinhole]", "delay": "0.1"}) == (
        "count([pinhole], delay=0.1)"
    )


@pytest.mark.parametrize(
    "values,message",
    [
        ({"args": "motor_ph, 1, 2"}, "scan: 'detectors' is required"),
        ({"detectors": "[pinhole", "args": "x"}, "scan: 'detectors': invalid plan expression"),
        ({"detectors": "[pinhole]", "num": "__import__('os')"}, "scan: 'num':"),
    ],
)
def test_form_errors_name_the_field(values: dict[str, str], message: str) -> None:
    with pytest.raises(PlanError) as info:
        form_expression(plan_form("scan", SCAN), values)
    assert str(info.value).startswith(message)


def test_unknown_device_is_refused_by_the_parser() -> None:
    with pytest.raises(PlanError, match="unknown device 'motor_hp'"):
        item_from_expression("scan([pinhole], motor_hp, -1, 1, num=5)", ["scan"], DEVICES)


# -- live feed ---------------------------------------------------------------------------


def _run_docs(n: int) -> list[tuple[str, dict[str, Any]]]:
    start: dict[str, Any] = {
        "uid": "run-1",
        "scan_id": 7,
        "plan_name": "scan",
        "motors": ["motor_ph"],
        "time": 1,
    }
    desc: dict[str, Any] = {
        "uid": "desc-1",
        "run_start": "run-1",
        "name": "primary",
        "data_keys": {"pinhole": {"shape": []}, "motor_ph": {"shape": []}, "img": {"shape": [4]}},
        "hints": {"pinhole": {"fields": ["pinhole"]}},
    }
    docs: list[tuple[str, dict[str, Any]]] = [("start", start), ("descriptor", desc)]
    docs += [
        (
            "event",
            {
                "descriptor": "desc-1",
                "seq_num": i,
                "time": 10.0 + i,
                "data": {"pinhole": float(i * i), "motor_ph": float(i), "img": [1, 2, 3, 4]},
            },
        )
        for i in range(1, n + 1)
    ]
    docs.append(("stop", {"run_start": "run-1", "exit_status": "success", "num_events": {}}))
    return docs


def test_messages_keep_scalars_only_and_expand_event_pages() -> None:
    feed = LiveFeed(lambda link: _never())
    for name, doc in _run_docs(2):
        feed.feed(name, doc)
    msgs = feed.snapshot()
    assert [m["type"] for m in msgs] == ["start", "descriptor", "event", "event", "stop"]
    assert msgs[1]["keys"] == ["pinhole", "motor_ph"] and msgs[1]["hints"] == ["pinhole"]
    assert msgs[3]["data"] == {"pinhole": 4.0, "motor_ph": 2.0}
    assert msgs[3]["stream"] == "primary"
    page = {
        "descriptor": "desc-1",
        "seq_num": [3, 4],
        "time": [1.0, 2.0],
        "data": {"pinhole": [9.0, float("nan")]},
    }
    out = to_messages("event_page", page, feed.run)
    assert [m["seq_num"] for m in out] == [3, 4]
    assert out[1]["data"] == {}  # NaN is not a point


async def _never() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    await asyncio.Event().wait()
    yield ("never", {})  # pragma: no cover


def test_feed_fans_out_and_drops_a_subscriber_that_does_not_read() -> None:
    async def main() -> None:
        docs = _run_docs(3)

        async def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            for d in docs:
                yield d
            await asyncio.Event().wait()

        feed = LiveFeed(source)
        fast, slow = feed.subscribe(), feed.subscribe()
        task = asyncio.create_task(feed.run_forever())
        got = [await asyncio.wait_for(fast.get(), 5) for _ in range(7)]
        # The link came up with the first document: a status message before it.
        assert [m["type"] for m in got if m] == [
            "status",
            "start",
            "descriptor",
            *["event"] * 3,
            "stop",
        ]
        assert feed.connected and feed.subscribers == 2
        task.cancel()
        # A queue that filled up is dropped and told to end (None at its end).
        from beampod.web import _live

        tiny = LiveFeed(source)
        q = tiny.subscribe()
        for _ in range(_live.QUEUE_SIZE + 1):
            tiny._publish({"type": "event"})
        assert tiny.subscribers == 0
        items = [q.get_nowait() for _ in range(q.qsize())]
        assert items[-1] is None
        assert slow.qsize() == 7

    asyncio.run(main())


# -- runs, state file, sessions ----------------------------------------------------------


def test_default_axes_prefer_motor_and_hinted_detector() -> None:
    cols = ["seq_num", "time", "motor_ph_user_setpoint", "motor_ph", "pinhole"]
    start = {"motors": ["motor_ph"], "detectors": ["pinhole"]}
    assert default_axes(start, cols) == ("motor_ph", "pinhole")
    assert default_axes({}, ["seq_num", "time", "det"]) == ("seq_num", "det")


def test_table_csv() -> None:
    assert table_csv({"a": [1, 2], "b": [None, 0.5]}) == "a,b\r\n1,\r\n2,0.5\r\n"


def test_state_file_reader(tmp_path: Path) -> None:
    home = PodHome(tmp_path)
    assert read_pod_state(home).phase == "unknown"
    home.run_dir.mkdir()
    state = {
        "supervisor_pid": 1,
        "phase": "running",
        "services": {
            "web": {"name": "web", "state": "ready", "ready_at": 100.0, "restarts": 2},
            "queue": {"name": "queue", "state": "failed", "ready_at": 90.0},
        },
    }
    home.state_file.write_text(json.dumps(state))
    view = read_pod_state(home, now=3825.0)
    web, queue = view.services
    assert (web.name, web.restarts, web.uptime) == ("web", 2, "1h02m")
    assert queue.uptime == "—"
    assert format_duration(61) == "1m01s"


def test_log_tail_only_for_known_services(tmp_path: Path) -> None:
    home = PodHome(tmp_path)
    home.logs_dir.mkdir()
    home.log_file("web").write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(home, "web", {"web"}, 3) == ["line 97", "line 98", "line 99"]
    with pytest.raises(KeyError):
        log_tail(home, "../secrets", {"web"})


def test_keys_and_sessions() -> None:
    keys = Keys(control="c" * 64, observer="o" * 64)
    assert keys.role_of("c" * 64) == "control"
    assert keys.role_of(" " + "o" * 64) == "observer"
    assert keys.role_of("c" * 63) is None and keys.role_of("") is None
    now = [0.0]
    sessions = Sessions(max_age_s=10, clock=lambda: now[0])
    sid, session = sessions.create("observer")
    sid2, _ = sessions.create("control")
    assert sid != sid2 and len(sid) >= 40 and session.csrf
    assert sessions.get(sid) is session
    now[0] = 11
    assert sessions.get(sid) is None
    sessions.drop(sid2)
    assert sessions.get(sid2) is None


def test_read_only_signals_get_no_move_box() -> None:
    from ophyd.signal import Signal, SignalRO

    from beampod.web._devices import display_value, is_read_only, readable_signals

    assert is_read_only(SignalRO(name="ring_current"))
    assert not is_read_only(Signal(name="setpoint"))
    sig = Signal(name="s", value=3)
    assert readable_signals(sig) == [("s", sig)]
    import numpy as np

    assert display_value(np.float64(2.5)) == 2.5
    assert display_value(np.zeros((3, 4))) == "array(3, 4)"


def test_feed_reconnects_after_the_bus_fails_and_says_why_meanwhile() -> None:
    async def main() -> None:
        attempts: list[int] = []
        errors: list[str] = []

        async def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            attempts.append(1)
            if len(attempts) < 3:
                errors.append(feed.error)
                raise ConnectionRefusedError("nats is down")
            for d in _run_docs(2):
                yield d
            await asyncio.Event().wait()

        feed = LiveFeed(source)
        task = asyncio.create_task(feed.run_forever(retry_s=0.01, max_retry_s=0.02))
        for _ in range(500):
            if feed.run is not None and len(feed.snapshot()) == 5:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        assert len(attempts) == 3
        assert errors[1] == "ConnectionRefusedError: nats is down"
        assert feed.connected and feed.error == ""
        assert [m["type"] for m in feed.snapshot()][-1] == "stop"

    asyncio.run(main())
