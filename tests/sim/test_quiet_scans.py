"""Time-varying simulated values are pushed only to monitors that exist
(beampod.sim._quiet): an idle IOC nobody monitors does no publishing, a monitor still
gets fresh values, and a read is computed when it is made (those two over Channel
Access: tests/sim/test_iocs.py, with its running IOCs)."""

from __future__ import annotations

import asyncio

from caproto import ChannelDouble, ChannelType
from caproto._utils import ChannelFilter
from caproto.server.common import SubscriptionSpec

from beampod.sim import build_pvdb
from beampod.sim._quiet import has_subscribers


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
