"""Core functions behind ``beampod dlq list|show|replay``."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from beampod.bus._codec import DecodeError, decode
from beampod.bus._consumer import LOST_SEQS, MSG_ID, ORIGINAL_MSG_ID, REASON
from beampod.bus._natsconn import NatsConnection
from beampod.bus._roles import dead_letter_stream_name
from beampod.config import documents_subject, stream_name
from beampod.errors import BusError, UsageError


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    time: datetime.datetime | None
    reason: str
    msg_id: str | None
    headers: dict[str, str]
    data: bytes = field(repr=False)

    def describe(self) -> str:
        """What the payload is, for humans: document name and uid, or why it is unreadable."""
        if LOST_SEQS in self.headers:
            return f"lost: stream seqs {self.headers[LOST_SEQS]} (no document to replay)"
        try:
            name, doc = decode(self.data)
        except DecodeError as exc:
            return f"undecodable ({exc}), {len(self.data)} bytes"
        return f"{name} {doc.get('uid') or doc.get('datum_id') or ''}".strip()


def _letter(raw: Any) -> DeadLetter:
    headers = dict(raw.headers or {})
    return DeadLetter(
        seq=int(raw.seq),
        time=raw.time,
        reason=headers.get(REASON, ""),
        msg_id=headers.get(ORIGINAL_MSG_ID),
        headers=headers,
        data=bytes(raw.data or b""),
    )


async def _get(js: Any, instrument: str, seq: int) -> DeadLetter | None:
    from nats.js.errors import NotFoundError

    try:
        raw = await js.get_msg(dead_letter_stream_name(instrument), seq)
    except NotFoundError:
        return None
    return _letter(raw)


async def list_dead_letters(
    connection: NatsConnection, instrument: str, *, limit: int = 100
) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters of an instrument."""
    nc = await connection.connect(reconnect=False)
    try:
        js = nc.jetstream()
        info = await js.stream_info(dead_letter_stream_name(instrument))
        out: list[DeadLetter] = []
        seq = info.state.first_seq
        while seq and seq <= info.state.last_seq and len(out) < limit:
            letter = await _get(js, instrument, seq)
            if letter is not None:  # deleted ones leave gaps
                out.append(letter)
            seq += 1
        return out
    finally:
        await nc.close()


async def get_dead_letter(connection: NatsConnection, instrument: str, seq: int) -> DeadLetter:
    nc = await connection.connect(reconnect=False)
    try:
        letter = await _get(nc.jetstream(), instrument, seq)
    finally:
        await nc.close()
    if letter is None:
        raise UsageError(f"no dead letter {seq} for instrument {instrument!r}")
    return letter


async def replay_dead_letter(
    connection: NatsConnection, instrument: str, seq: int, *, delete: bool = True
) -> int:
    """Publish a dead letter's bytes to the documents subject again (after the cause is
    fixed) and, with ``delete``, remove it from the dead-letter stream. Returns the
    documents stream sequence it got."""
    from nats.js.errors import APIError

    nc = await connection.connect(reconnect=False)
    try:
        js = nc.jetstream()
        letter = await _get(js, instrument, seq)
        if letter is None:
            raise UsageError(f"no dead letter {seq} for instrument {instrument!r}")
        if LOST_SEQS in letter.headers:
            raise UsageError(
                f"dead letter {seq} records documents the stream discarded (stream seqs "
                f"{letter.headers[LOST_SEQS]}); it holds no document to replay"
            )
        headers = {ORIGINAL_MSG_ID: letter.msg_id} if letter.msg_id else {}
        # A fresh id: the original id is within the duplicate window of the stream it
        # came from and would be dropped. Replaying the same letter twice is still one
        # message, as long as it is within the window.
        headers[MSG_ID] = f"replay:{instrument}:{seq}"
        try:
            ack = await js.publish(
                documents_subject(instrument),
                letter.data,
                headers=headers,
                stream=stream_name(instrument),
            )
        except APIError as exc:
            raise BusError(f"replay of dead letter {seq} failed: {exc.description}") from None
        if delete:
            await js.delete_msg(dead_letter_stream_name(instrument), seq)
        return int(ack.seq)
    finally:
        await nc.close()
