"""Reading an instrument's documents from JetStream: a durable pull consumer (the
writer service) and an ephemeral tail (``beampod tail``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beampod.bus._codec import DecodeError, decode, opens_a_stream
from beampod.bus._natsconn import NatsConnection
from beampod.bus._natserrors import bus_errors, is_transient
from beampod.bus._pull import BatchPuller
from beampod.bus._pulled import AckMetadata, ack_replies, quick_msg_id
from beampod.config import dead_letter_subject, documents_subject, stream_name
from beampod.errors import BusError, BusUnavailableError, DeliveryGapError

log = logging.getLogger("beampod.bus.consumer")

MSG_ID = "Nats-Msg-Id"
# A replayed dead letter gets a fresh Nats-Msg-Id (else the stream would drop it as a
# duplicate) and keeps its original id here, so the writer still de-duplicates on it.
ORIGINAL_MSG_ID = "Beampod-Original-Msg-Id"
REASON = "Beampod-Reason"
ORIGINAL_SEQ = "Beampod-Original-Seq"
# A dead letter that holds no document but says which stream sequences were discarded
# (by the stream's limits) before the writer stored them: "<first>-<last>".
LOST_SEQS = "Beampod-Lost-Seqs"
# JetStream's error code for "stream not found" (JSStreamNotFoundErr).
STREAM_NOT_FOUND = 10059


def _msg_id(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    return headers.get(ORIGINAL_MSG_ID) or headers.get(MSG_ID)


@dataclass(slots=True)
class _Delivered:
    raw: Any = field(repr=False)  # nats.aio.msg.Msg

    @property
    def data(self) -> bytes:
        return bytes(self.raw.data)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.raw.headers or {})

    @property
    def msg_id(self) -> str | None:
        block = getattr(self.raw, "raw_headers", None)
        if block:
            quick = quick_msg_id(block)
            if quick is not None:
                return quick
        return _msg_id(self.raw.headers)

    @property
    def seq(self) -> int:
        return int(self.raw.metadata.sequence.stream)

    @property
    def num_delivered(self) -> int:
        return int(self.raw.metadata.num_delivered)

    async def ack(self) -> None:
        async with bus_errors("ack"):
            await self.raw.ack()

    async def nak(self, delay: float | None = None) -> None:
        async with bus_errors("nak"):
            await self.raw.nak(delay=delay)

    async def in_progress(self) -> None:
        async with bus_errors("in progress"):
            await self.raw.in_progress()

    async def term(self) -> None:
        async with bus_errors("term"):
            await self.raw.term()


@dataclass(slots=True)
class Message(_Delivered):
    """A decoded document. ``ack()`` once it is stored; ``nak(delay)`` to retry later."""

    name: str = ""
    doc: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BadMessage(_Delivered):
    """Bytes that are not a msgpack (name, doc) pair: dead-letter them, then ``term()``."""

    error: str = ""


class DocumentConsumer:
    """Durable pull consumer on ``<instrument>.bluesky.runengine.documents``.

    ``async with DocumentConsumer(conn, "demo", durable="writer") as c:
    batch = await c.fetch(500, timeout=0.05)``. Delivery is at-least-once, in stream
    order for the first delivery; redeliveries (after nak or ack_wait) come later.

    ``resume_at_ack_floor=True`` is for a consumer with exactly one reader process (the
    writer): when it starts and the durable still has messages that a previous,
    dead reader had fetched but not acknowledged, the durable is re-created to start
    right after its ack floor. Everything unacknowledged is then delivered again *now
    and in stream order*, instead of after ``ack_wait`` and behind newer messages (a
    stop document overtaking its run's last events). Messages past the floor that were
    already acknowledged come again too; the reader must be idempotent.

    Messages the stream discarded (its ``max_bytes``/``max_age`` limits, discard old)
    before this durable delivered them leave a gap in the stream sequences it delivers;
    ``take_discarded()`` returns those ranges, seen as each fetch returns.

    A gap of messages the stream still holds is a delivery lost on the way: in a
    cluster, the consumer's leader can count a batch as delivered and then die (or
    lose its route) before the batch reached this reader. JetStream would redeliver
    it only after ``ack_wait``, behind everything newer. ``fetch`` returns what came
    before the gap and then raises :class:`DeliveryGapError`; re-open the consumer
    (with ``resume_at_ack_floor``) to get the gap again, now and in order.
    """

    def __init__(
        self,
        connection: NatsConnection,
        instrument: str,
        durable: str,
        *,
        ack_wait: float = 30.0,
        max_ack_pending: int = 20_000,
        from_start: bool = True,
        resume_at_ack_floor: bool = False,
        wake_on_new_stream: bool = False,
    ) -> None:
        self.connection, self.instrument, self.durable = connection, instrument, durable
        # A live fetch returns as soon as a run's start or a stream's descriptor came
        # (the writer: a new stream's chain of requests to Tiled starts at once).
        self.wake_on_new_stream = wake_on_new_stream
        self.ack_wait, self.max_ack_pending, self.from_start = ack_wait, max_ack_pending, from_start
        self.resume_at_ack_floor = resume_at_ack_floor
        self.resumed_from: int | None = None  # stream seq, when the durable was re-created
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._upto = 0  # highest stream seq delivered (at open: the durable's own)
        self._discarded: list[tuple[int, int]] = []
        self._gap: str | None = None  # a lost delivery: what fetch raises from now on
        self._owed_seen: tuple[int, int] | None = None  # check_nothing_owed's last view

    async def start(self) -> DocumentConsumer:
        async with bus_errors("connecting"):
            self._nc = await self.connection.connect()
        try:
            async with bus_errors(f"opening consumer {self.durable!r}"):
                return await self._subscribe()
        except BaseException:
            await self.close()
            raise

    async def _subscribe(self) -> DocumentConsumer:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import APIError

        self._js = self._nc.jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.from_start else DeliverPolicy.NEW,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,  # the caller decides when to dead-letter (num_delivered)
        )
        try:
            if self.resume_at_ack_floor:
                start_seq = await self._unacked_start()
                if start_seq is not None:
                    config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                    config.opt_start_seq = start_seq
                    self.resumed_from = start_seq
            await self._bind(config)
        except APIError as exc:
            if is_transient(exc):
                raise
            if exc.err_code == STREAM_NOT_FOUND:
                # Not yet: the pod's nats service creates every stream once its cluster
                # can place them (its readiness, re-checked by its health probe). A
                # reader started early can get here first, on a node already up.
                raise BusUnavailableError(
                    f"stream {stream_name(self.instrument)} does not exist yet (the nats "
                    "service creates it)"
                ) from None
            raise BusError(
                f"cannot create consumer {self.durable!r} on "
                f"{stream_name(self.instrument)}: {exc.description}"
            ) from None
        return self

    async def _bind(self, config: Any) -> None:
        """Use the durable (create it if missing; an existing one keeps its config, as
        nats-py's ``pull_subscribe`` does) and start pulling from it."""
        from nats.js.errors import NotFoundError

        stream = stream_name(self.instrument)
        try:
            info = await self._js.consumer_info(stream, self.durable)
        except NotFoundError:
            config.name = config.durable_name = self.durable
            config.filter_subject = documents_subject(self.instrument)
            info = await self._js.add_consumer(stream, config=config)
        # Where delivery stands: a later jump past it is a range the stream discarded.
        self._upto = int(info.delivered.stream_seq or 0) if info.delivered else 0
        urgent = opens_a_stream if self.wake_on_new_stream else None
        puller = BatchPuller(self._nc, stream, self.durable, urgent=urgent)
        await puller.start()
        self._sub = puller

    async def _unacked_start(self) -> int | None:
        """If the durable holds fetched-but-unacknowledged messages, delete it and
        return the stream sequence right after its ack floor (see the class doc)."""
        from nats.js.errors import NotFoundError

        stream = stream_name(self.instrument)
        try:
            info = await self._js.consumer_info(stream, self.durable)
        except NotFoundError:
            return None
        if not info.num_ack_pending:
            return None
        floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        await self._js.delete_consumer(stream, self.durable)
        log.info(
            "consumer %s had %d unacknowledged messages: re-created to deliver from "
            "stream seq %d, in order",
            self.durable,
            info.num_ack_pending,
            floor + 1,
        )
        return floor + 1

    async def __aenter__(self) -> DocumentConsumer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def fetch(
        self, batch: int = 100, timeout: float = 1.0, idle_s: float | None = None
    ) -> list[Message | BadMessage]:
        """Up to ``batch`` messages, waiting at most ``timeout`` s; [] if none came.
        ``idle_s`` (a reader that found nothing last time): wait up to ``idle_s`` for
        the first message, then ``timeout`` for more; one pull request, not one per
        ``timeout``.

        Raises :class:`DeliveryGapError` once a delivery was lost (see the class doc);
        the messages before the gap were returned by the previous call."""
        if self._sub is None:
            raise BusError("consumer not started")
        if self._gap is not None:
            raise DeliveryGapError(self._gap)
        async with bus_errors("fetching documents"):
            raws = await self._sub.fetch(batch, timeout=timeout, idle_s=idle_s)
        if raws:
            self._owed_seen = None  # progress: check_nothing_owed starts over
        out: list[Message | BadMessage] = []
        for raw in raws:
            meta = raw._metadata  # the puller's, read from the ack subject on arrival
            if type(meta) is AckMetadata:
                seq = meta.stream_seq
            else:
                seq = int(raw.metadata.sequence.stream)
            # First deliveries come in stream order; redeliveries are at or below
            # _upto. The stream holds only this instrument's subject, so a jump is
            # either a discard or a lost delivery.
            if seq > self._upto:
                if seq > self._upto + 1 and await self._lost_delivery(self._upto + 1, seq - 1):
                    break  # this and the later messages come again after the re-open
                self._upto = seq
            try:
                name, doc = decode(raw.data)
            except DecodeError as exc:
                out.append(BadMessage(raw, error=str(exc)))
                continue
            out.append(Message(raw, name, doc))
        if self._gap is not None and not out:
            raise DeliveryGapError(self._gap)
        return out

    async def _lost_delivery(self, first: int, last: int) -> bool:
        """Sort the skipped stream seqs ``first..last``: those below the stream's first
        kept message were discarded (noted for ``take_discarded``); if any are still in
        the stream, their delivery was lost: note the gap and return True."""
        async with bus_errors("reading the documents stream's state"):
            info = await self._js.stream_info(stream_name(self.instrument))
        first_kept = int(info.state.first_seq or 0)
        if first < first_kept:
            self._discarded.append((first, min(last, first_kept - 1)))
        if last < first_kept:
            return False
        self._gap = (
            f"stream seqs {max(first, first_kept)}..{last} were delivered to consumer "
            f"{self.durable!r} but never reached it (the consumer's leader changed or "
            "lost its route?); re-opening it at its ack floor to get them in order"
        )
        log.warning("%s", self._gap)
        return True

    async def check_nothing_owed(self) -> None:
        """For a reader that holds no unacknowledged message: JetStream counting some
        as pending means deliveries (or acks) were lost on the way; raise
        :class:`DeliveryGapError` if that is so on two calls in a row with no progress
        in between (acks still in flight get one call's time to arrive)."""
        if self._js is None:
            raise BusError("consumer not started")
        async with bus_errors("reading the consumer's state"):
            info = await self._js.consumer_info(stream_name(self.instrument), self.durable)
        floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        seen = (int(info.num_ack_pending or 0), floor)
        owed, self._owed_seen = self._owed_seen, (seen if seen[0] else None)
        if seen[0] and owed == seen:
            self._gap = (
                f"consumer {self.durable!r} counts {seen[0]} messages after stream seq "
                f"{floor} as delivered and unacknowledged, but holds none (deliveries or "
                "acks lost on the way); re-opening it at its ack floor"
            )
            log.warning("%s", self._gap)
            raise DeliveryGapError(self._gap)

    def take_discarded(self) -> list[tuple[int, int]]:
        """Stream sequence ranges ``(first, last)`` the stream discarded before this
        durable delivered them, found since the last call."""
        out, self._discarded = self._discarded, []
        return out

    async def publish_dead_letter(
        self, original: bytes, reason: str, headers: Mapping[str, str] | None = None
    ) -> int:
        if self._js is None:
            raise BusError("consumer not started")
        async with bus_errors("storing a dead letter"):
            return await publish_dead_letter(self._js, self.instrument, original, reason, headers)

    async def ack_all(self, messages: Sequence[_Delivered]) -> None:
        """Acknowledge each of ``messages`` (fire-and-forget publishes, in order): one
        error wrapper for the batch instead of one per message."""
        if self._nc is None:
            raise BusError("consumer not started")
        async with bus_errors("ack"):
            await ack_replies(self._nc, [m.raw.reply for m in messages])

    async def close(self) -> None:
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None:
            with contextlib.suppress(BusError):  # closing a dead link
                async with bus_errors("closing"):
                    await nc.close()


async def publish_dead_letter(
    js: Any, instrument: str, original: bytes, reason: str, headers: Mapping[str, str] | None = None
) -> int:
    """Store ``original`` on the dead-letter subject with ``reason`` in a header.
    Returns the dead-letter stream sequence."""
    from nats.js.errors import APIError

    hdrs = {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")}
    original_id = _msg_id(headers)
    if original_id:
        hdrs[ORIGINAL_MSG_ID] = original_id
        # Dead-lettering the same delivery twice (a crash before its term()) stores it
        # once; a replayed letter that fails again is a new stream message (new seq), so
        # it gets a new id and is kept, not dropped as a duplicate.
        seq = hdrs.get(ORIGINAL_SEQ)
        hdrs[MSG_ID] = f"dlq:{original_id}" + (f"@{seq}" if seq else "")
    # Header values are single lines.
    hdrs[REASON] = " ".join(reason.split())[:1000]
    try:
        ack = await js.publish(dead_letter_subject(instrument), original, headers=hdrs)
    except APIError as exc:
        raise BusError(f"cannot store dead letter: {exc.description}") from None
    return int(ack.seq)
