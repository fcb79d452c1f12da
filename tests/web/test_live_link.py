"""The Live page says truthfully whether it receives from the bus: the feed's link state
(from the source), the status messages and heartbeat of the stream, and the words of the
indicator. (The indicator in a real browser: tests/web/test_browser_link.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from beampod.web._live import Link, LiveFeed
from beampod.web._streams import link_text, live_events


def _run(n: int = 1) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": "run-1", "scan_id": 1, "plan_name": "count", "motors": []}),
        ("descriptor", {"uid": "d", "run_start": "run-1", "name": "primary", "data_keys": {}}),
    ]
    docs += [
        ("event", {"descriptor": "d", "seq_num": i, "time": 0.0, "data": {}}) for i in range(n)
    ]
    return docs


def test_connecting_then_connected_with_no_run_yet() -> None:
    async def main() -> None:
        subscribed = asyncio.Event()

        async def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            link.up()  # the consumer exists; no document has come yet
            subscribed.set()
            await asyncio.Event().wait()
            yield ("never", {})  # pragma: no cover

        feed = LiveFeed(source)
        assert feed.status()["bus"] == "connecting" and not feed.connected
        assert link_text(feed.status()) == ("reconnecting", "connecting to the bus…")
        q = feed.subscribe()
        task = asyncio.create_task(feed.run_forever())
        await asyncio.wait_for(subscribed.wait(), 5)
        # Connected before any document: the page must not claim otherwise.
        assert feed.connected
        assert q.get_nowait() == {
            "type": "status",
            "bus": "connected",
            "error": "",
            "run": None,
            "running": False,
        }
        assert link_text(feed.status()) == ("waiting", "connected to the bus · no run yet")
        task.cancel()

    asyncio.run(main())


def test_a_lost_link_is_reported_and_recovers() -> None:
    async def main() -> None:
        links: list[Link] = []

        async def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            links.append(link)
            link.up()
            for d in _run():
                yield d
            await asyncio.Event().wait()

        feed = LiveFeed(source)
        task = asyncio.create_task(feed.run_forever())
        for _ in range(500):
            if feed.run is not None and feed.run_open:
                break
            await asyncio.sleep(0.01)
        assert link_text(feed.status()) == ("connected", "connected to the bus · receiving the run")
        q = feed.subscribe()
        links[0].down("lost the connection to the bus; reconnecting")  # as nats-py reports it
        status = q.get_nowait()
        assert status is not None and (status["bus"], status["run"]) == ("reconnecting", "run-1")
        state, words = link_text(status)
        assert state == "reconnecting" and "reconnecting to the bus (lost the connection" in words
        links[0].down("lost the connection to the bus; reconnecting")  # no change: no message
        assert q.empty()
        links[0].up()
        assert q.get_nowait() == {**status, "bus": "connected", "error": ""}
        task.cancel()

    asyncio.run(main())


def test_a_source_that_fails_or_ends_is_not_connected() -> None:
    async def main() -> None:
        async def ends(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            link.up()
            return
            yield  # pragma: no cover

        feed = LiveFeed(ends)
        task = asyncio.create_task(feed.run_forever(retry_s=10))
        for _ in range(500):
            if feed.error:
                break
            await asyncio.sleep(0.01)
        assert (feed.state, feed.error) == ("reconnecting", "the bus subscription ended")
        task.cancel()

    asyncio.run(main())


def test_stream_says_hello_with_the_link_then_repeats_the_status_as_heartbeat() -> None:
    async def main() -> None:
        feed = LiveFeed(lambda link: _never())
        feed.up()
        for name, doc in _run(2):
            feed.feed(name, doc)
        q = feed.subscribe()
        events = live_events(feed, q, feed.snapshot(), heartbeat_s=0.05)
        hello = await anext(events)
        assert hello["type"] == "hello" and hello["heartbeat_s"] == 0.05
        assert (hello["bus"], hello["run"], hello["running"]) == ("connected", "run-1", True)
        kinds = [(await anext(events))["type"] for _ in range(5)]
        assert kinds == ["start", "descriptor", "event", "event", "caught-up"]
        # Nothing happens on the bus: the stream still speaks, with the link's state.
        beat = await asyncio.wait_for(anext(events), 2)
        assert beat == feed.status()
        feed.down("lost the connection to the bus; reconnecting")
        change = await asyncio.wait_for(anext(events), 2)
        assert change["type"] == "status" and change["bus"] == "reconnecting"
        # A subscriber that fell behind is ended (its browser reconnects).
        q.put_nowait(None)
        assert [m async for m in events] == []

    asyncio.run(main())


def test_indicator_words_for_every_state() -> None:
    base = {"type": "status", "bus": "connected", "error": "", "run": "r", "running": False}
    assert link_text(base, browser_connected=False) == (
        "reconnecting",
        "reconnecting to the console…",
    )
    assert link_text(base) == ("connected", "connected to the bus · waiting for the next run")


async def _never() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    await asyncio.Event().wait()
    yield ("never", {})  # pragma: no cover
