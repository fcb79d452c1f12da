"""Time-varying simulated values are pushed only to monitors that exist
(beampod.sim._quiet): an idle IOC nobody monitors does no publishing, a monitor still
gets fresh values, and a read is computed when it is made."""

from __future__ import annotations

import asyncio
import time

import pytest
from caproto import ChannelDouble, ChannelType
from caproto._utils import ChannelFilter
from caproto.server.common import SubscriptionSpec

from beampod.sim import build_pvdb, read_sync
from beampod.sim._mini_beamline import ring_current
from beampod.sim._quiet import has_subscribers
from tests.sim._iocfix import RunningIocs

HOST = "127.0.0.1"


def test_has_subscribers_follows_subscribe_and_unsubscribe() -> None:
    async def go() -> list[bool]:
        data = ChannelDouble(value=1.0)
        queue: asyncio.Queue[object] = asyncio.Queue()
        spec = SubscriptionSpec(
            db_entry=data,
            data_type_name=ChannelType.DOUBLE.name,
            mask=1,
            channel_filter=ChannelFilter(None, None, None, None),
        )
        seen = [has_subscribers(data)]
        await data.subscribe(queue, spec, None)
        seen.append(has_subscribers(data))
        await data.unsubscribe(queue, spec)
        seen.append(has_subscribers(data))
        return seen

    assert asyncio.run(go()) == [False, True, False]


def test_an_unmonitored_ring_current_is_not_republished() -> None:
    """What the scan of ``current`` runs does nothing while no client monitors it."""
    current = build_pvdb("mini_beamline", "q:")["q:current"]
    group = current.group  # type: ignore[attr-defined]

    async def go() -> tuple[bool, object, object]:
        before = current.timestamp  # type: ignore[attr-defined]
        published = await group.publish_current(current)
        return published, before, current.timestamp  # type: ignore[attr-defined]

    published, before, after = asyncio.run(go())
    assert not published and before == after


@pytest.mark.pod
def test_a_read_of_the_ring_current_is_computed_when_read(demo_iocs: RunningIocs) -> None:
    """Nobody monitors ``current`` here, so nothing refreshes it in the IOC: successive
    reads still follow the oscillation (500 +- 25, 4 s period)."""
    port = demo_iocs.port("mini:")
    values: set[float] = set()
    deadline = time.monotonic() + 30
    while len(values) < 3:
        assert time.monotonic() < deadline, f"the ring current does not change: {values}"
        value = float(read_sync(HOST, port, "mini:current")[0])
        assert 475 <= value <= 525
        values.add(round(value, 6))
    assert ring_current(0) == 500.0


@pytest.mark.pod
def test_a_monitor_of_the_ring_current_gets_updates(
    demo_iocs: RunningIocs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real CA client's monitor (caproto's asyncio client) keeps receiving new values."""
    from caproto.asyncio.client import Context

    port = demo_iocs.port("mini:")
    monkeypatch.setenv("EPICS_CA_ADDR_LIST", f"{HOST}:{port}")
    monkeypatch.setenv("EPICS_CA_AUTO_ADDR_LIST", "NO")

    async def go() -> set[float]:
        ctx = Context()
        try:
            (pv,) = await ctx.get_pvs("mini:current", timeout=10)
            await pv.wait_for_connection(timeout=10)
            sub = pv.subscribe()
            values: set[float] = set()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            async for response in sub:
                values.add(float(response.data[0]))
                if len(values) >= 3:
                    break
                assert loop.time() < deadline, f"monitor updates stopped: {values}"
            await sub.clear()
            return values
        finally:
            await ctx.disconnect()

    assert len(asyncio.run(go())) >= 3
