"""The Live page's feed: the instrument's documents from the bus (an ephemeral ordered
JetStream consumer, :func:`beampod.bus.tail`), turned into small JSON messages and
fanned out to every browser over server-sent events. Tiled is never polled.

A browser that connects mid-run first gets the current run so far (``snapshot``), then
the messages as they come. A browser too slow to keep up is dropped (its queue is
full); EventSource reconnects by itself and gets a fresh snapshot.

The feed knows the state of its bus link (``connecting`` until the first subscription
exists, ``connected``, ``reconnecting`` after a loss) from the source, which reports it
through :class:`Link`; every change is sent to the browsers as a ``status`` message, and
the stream repeats it as a heartbeat, so a page can tell "receiving" from "cut off".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger("beampod.web.live")

Doc = Mapping[str, Any]
MAX_POINTS = 20_000
QUEUE_SIZE = 5_000


@dataclass
class RunSoFar:
    start: dict[str, Any]
    descriptors: dict[str, str] = field(default_factory=dict)  # descriptor uid -> stream
    messages: list[dict[str, Any]] = field(default_factory=list)


def _scalar(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        with contextlib.suppress(TypeError, ValueError):
            return _scalar(value.item())
    return None


def to_messages(name: str, doc: Doc, run: RunSoFar | None) -> list[dict[str, Any]]:
    """Browser messages for one document (pure; ``run`` gives descriptor -> stream)."""
    if name == "start":
        return [
            {
                "type": "start",
                "uid": doc.get("uid"),
                "scan_id": doc.get("scan_id"),
                "plan_name": doc.get("plan_name"),
                "motors": list(doc.get("motors") or []),
                "detectors": list(doc.get("detectors") or []),
                "time": doc.get("time"),
            }
        ]
    if name == "descriptor":
        keys = [k for k, v in (doc.get("data_keys") or {}).items() if not (v or {}).get("shape")]
        hints = [f for h in (doc.get("hints") or {}).values() for f in (h or {}).get("fields", [])]
        return [
            {
                "type": "descriptor",
                "uid": doc.get("uid"),
                "stream": doc.get("name", "primary"),
                "keys": keys,
                "hints": hints,
            }
        ]
    if name == "event":
        return [_event(doc, run)]
    if name == "event_page":
        n = len(doc.get("seq_num") or [])
        data = doc.get("data") or {}
        out = []
        for i in range(n):
            out.append(
                _event(
                    {
                        "descriptor": doc.get("descriptor"),
                        "seq_num": doc["seq_num"][i],
                        "time": doc["time"][i],
                        "data": {k: v[i] for k, v in data.items()},
                    },
                    run,
                )
            )
        return out
    if name == "stop":
        return [
            {
                "type": "stop",
                "uid": doc.get("run_start"),
                "exit_status": doc.get("exit_status"),
                "num_events": dict(doc.get("num_events") or {}),
            }
        ]
    return []


def _event(doc: Doc, run: RunSoFar | None) -> dict[str, Any]:
    stream = (run.descriptors.get(str(doc.get("descriptor")), "?") if run else "?") or "?"
    data = {k: s for k, v in (doc.get("data") or {}).items() if (s := _scalar(v)) is not None}
    return {
        "type": "event",
        "stream": stream,
        "seq_num": doc.get("seq_num"),
        "time": doc.get("time"),
        "data": data,
    }


LinkState = Literal["connecting", "connected", "reconnecting"]


class Link(Protocol):
    """What a documents source tells the feed about its bus link."""

    def up(self) -> None: ...

    def down(self, reason: str) -> None: ...


Source = Callable[[Link], AsyncIterator[tuple[str, dict[str, Any]]]]


class LiveFeed:
    """One bus consumer per console process, any number of browsers."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.run: RunSoFar | None = None
        self.state: LinkState = "connecting"
        self.error = ""
        self.run_open = False

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    # -- the link ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``status`` message: the bus link, and the run the page shows (if any)."""
        run = self.run.start.get("uid") if self.run is not None else None
        return {
            "type": "status",
            "bus": self.state,
            "error": self.error,
            "run": run,
            "running": self.run_open,
        }

    def up(self) -> None:
        self._set("connected", "")

    def down(self, reason: str) -> None:
        self._set("reconnecting", reason)

    def _set(self, state: LinkState, error: str) -> None:
        if (state, error) != (self.state, self.error):
            self.state, self.error = state, error
            self._publish(self.status())

    # -- the documents side ------------------------------------------------------------

    def feed(self, name: str, doc: Doc) -> None:
        if name == "start":
            self.run = RunSoFar(start=dict(doc))
            self.run_open = True
        elif name == "stop":
            self.run_open = False
        messages = to_messages(name, doc, self.run)
        run = self.run
        if run is not None:
            if name == "descriptor":
                run.descriptors[str(doc.get("uid"))] = str(doc.get("name", "primary"))
            if len(run.messages) < MAX_POINTS:
                run.messages.extend(messages)
        for m in messages:
            self._publish(m)

    def _publish(self, message: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                self._subscribers.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)  # tells the stream to end; the browser reconnects

    async def run_forever(self, retry_s: float = 1.0, max_retry_s: float = 30.0) -> None:
        """Follow the bus until cancelled, reconnecting after an outage (backing off
        from ``retry_s`` to ``max_retry_s`` while the bus stays away)."""
        delay = retry_s
        while True:
            try:
                async for name, doc in self._source(self):
                    self.up()  # a document is proof of a working link
                    delay = retry_s
                    self.feed(name, doc)
                self.down("the bus subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the link: retry
                self.down(f"{type(exc).__name__}: {exc}")
                log.warning("live feed: bus link lost (%s); retrying in %.0f s", self.error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_s)

    # -- the browser side --------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.run.messages) if self.run is not None else []

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def bus_source(pod: Any, instrument: str | None = None) -> Source:
    """Documents of ``instrument`` (default: the pod's default instrument), from now on,
    read as that instrument's reader; the link is up once the consumer exists, down
    while nats-py reconnects."""
    from beampod.bus import NatsConnection, tail

    instrument = instrument or pod.config.instrument_name

    def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        conn = NatsConnection.from_pod(pod, instrument, role="reader", name="beampod-web")

        def on_link(up: bool) -> None:
            if up:
                link.up()
            else:
                link.down("lost the connection to the bus; reconnecting")

        return tail(conn, instrument, on_ready=link.up, on_link=on_link)

    return source
