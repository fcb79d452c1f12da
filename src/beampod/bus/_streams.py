"""JetStream streams of a pod: one documents stream and one dead-letter stream per
instrument, ensured idempotently with the admin credentials."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from beampod.bus._accounts import readers_account, readers_api_prefix
from beampod.bus._natsconf import nats_bus
from beampod.bus._natsconn import NatsConnection
from beampod.bus._roles import dead_letter_stream_name
from beampod.config import LoadedPod, StreamSettings, dead_letter_subject, documents_subject
from beampod.config import stream_name as documents_stream_name
from beampod.errors import BusError

_DAY = 86400.0
# Dead letters are few and need a human: keep them a year unless the documents stream
# keeps its data longer.
_DEAD_LETTER_MIN_AGE_DAYS = 365.0
_DEAD_LETTER_MAX_BYTES = 1024**3


@dataclass(frozen=True)
class StreamPlan:
    name: str
    subjects: tuple[str, ...]
    max_age_s: float
    max_bytes: int
    duplicate_window_s: float
    replicas: int
    max_msg_size: int


def plan_streams(
    instrument: str, settings: StreamSettings, max_payload: int
) -> tuple[StreamPlan, StreamPlan]:
    """Documents stream and dead-letter stream of one instrument (pure: unit tested)."""
    docs = StreamPlan(
        name=documents_stream_name(instrument),
        subjects=(documents_subject(instrument),),
        max_age_s=settings.max_age_days * _DAY,
        max_bytes=int(settings.max_bytes_gb * 1024**3),
        duplicate_window_s=settings.duplicate_window_s,
        replicas=settings.replicas,
        max_msg_size=max_payload,
    )
    dead = StreamPlan(
        name=dead_letter_stream_name(instrument),
        subjects=(dead_letter_subject(instrument),),
        max_age_s=max(settings.max_age_days, _DEAD_LETTER_MIN_AGE_DAYS) * _DAY,
        max_bytes=min(_DEAD_LETTER_MAX_BYTES, docs.max_bytes),
        duplicate_window_s=settings.duplicate_window_s,
        replicas=settings.replicas,
        max_msg_size=max_payload,
    )
    return docs, dead


# The readers' copy of an instrument's documents keeps the same age limit and a quarter
# of the size: readers replay the recent past, while the documents stream must hold
# everything until the writer has stored it. (nats-server reserves max_bytes on disk.)
READERS_SHARE = 0.25


def plan_readers_stream(docs: StreamPlan) -> StreamPlan:
    """The readers' stream of one instrument, in its readers' account: the documents
    stream's name and subject, so plain nats-py finds it by subject."""
    return replace(docs, max_bytes=int(docs.max_bytes * READERS_SHARE))


def _stream_config(plan: StreamPlan):
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    return StreamConfig(
        name=plan.name,
        subjects=list(plan.subjects),
        # Limits retention: documents stay replayable for every consumer (writer, tail,
        # late external consumers) until age/size limits, independent of acks.
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=plan.max_age_s,
        max_bytes=plan.max_bytes,
        max_msg_size=plan.max_msg_size,
        duplicate_window=plan.duplicate_window_s,
        num_replicas=plan.replicas,
    )


async def ensure_stream(js: object, plan: StreamPlan) -> str:
    """Create the stream, or update it when its settings differ. Returns what it did."""
    from nats.js.errors import APIError, NotFoundError

    config = _stream_config(plan)
    try:
        info = await js.stream_info(plan.name)  # type: ignore[attr-defined]
    except NotFoundError:
        try:
            await js.add_stream(config)  # type: ignore[attr-defined]
        except APIError as exc:
            raise BusError(f"cannot create stream {plan.name}: {exc.description}") from None
        return "created"
    current = info.config
    wanted = (
        sorted(plan.subjects),
        plan.max_age_s,
        plan.max_bytes,
        plan.duplicate_window_s,
        plan.replicas,
        plan.max_msg_size,
    )
    have = (
        sorted(current.subjects or []),
        current.max_age,
        current.max_bytes,
        current.duplicate_window,
        current.num_replicas,
        current.max_msg_size,
    )
    if tuple(map(str, wanted)) == tuple(map(str, have)):
        return "unchanged"
    try:
        await js.update_stream(config)  # type: ignore[attr-defined]
    except APIError as exc:
        raise BusError(f"cannot update stream {plan.name}: {exc.description}") from None
    return "updated"


async def ensure_streams(pod: LoadedPod, *, timeout: float = 10.0) -> dict[str, str]:
    """Ensure every instrument's streams exist with the configured settings (idempotent).

    Uses the admin credentials: instrument users may not create or change streams.
    """
    bus = nats_bus(pod)
    conn = NatsConnection.from_pod(pod, admin=True, name="beampod-ensure-streams")
    nc = await conn.connect(reconnect=False, connect_timeout=min(timeout, 5.0))
    try:
        js = nc.jetstream(timeout=timeout)
        done: dict[str, str] = {}
        for instrument in pod.config.instruments:
            docs, dead = plan_streams(instrument, bus.stream, conn.max_payload)
            for plan in (docs, dead):
                done[plan.name] = await ensure_stream(js, plan)
            # The readers' copy of the documents, in their own account
            # (beampod.bus._accounts): fed by the documents subject the BEAMPOD account
            # exports to it, with the same limits.
            readers = nc.jetstream(timeout=timeout, prefix=readers_api_prefix(instrument))
            done[f"{readers_account(instrument)}/{docs.name}"] = await ensure_stream(
                readers, plan_readers_stream(docs)
            )
        return done
    finally:
        await nc.close()


def ensure_streams_sync(pod: LoadedPod, *, timeout: float = 10.0) -> dict[str, str]:
    return asyncio.run(ensure_streams(pod, timeout=timeout))
