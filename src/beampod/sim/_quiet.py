"""Simulated values that change with time are pushed to monitors only while a client
holds one: with none, a scan's publishing is work nobody receives (docs/facility.md,
"Simulated IOCs: one process per host, and their idle cost"; ADR 23)."""

from __future__ import annotations

from typing import Any


def has_subscribers(instance: Any) -> bool:
    """Whether any client holds a monitor (of any data type) on the PV ``instance``.

    caproto keeps a PV's subscriptions as ``{queue: {sync: {data type: {spec}}}}``
    (``ChannelData._queues``) and empties the innermost set on unsubscribe and on a
    client's disconnect; it has no public accessor for it.
    """
    queues = getattr(instance, "_queues", None)
    if queues is None:
        return True  # not the caproto we know: publish, as caproto's examples do
    return any(
        specs
        for by_sync in queues.values()
        for by_type in by_sync.values()
        for specs in by_type.values()
    )
