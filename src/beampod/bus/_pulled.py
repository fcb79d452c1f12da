"""What the writer's puller hands over for each JetStream message (``bus/_pull.py``):
nats-py's ``Msg`` with its headers parsed only when read, the JetStream metadata read
from the ack subject when asked for, the message id found with one search, and the
acknowledgements of a batch sent as one write."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

# A message's header block starts with this line; a status reply has " <code>" after it.
HDR_LINE = b"NATS/1.0"
CRLF = b"\r\n"


class _SequencePair:
    __slots__ = ("consumer", "stream")

    def __init__(self, stream: int, consumer: int) -> None:
        self.stream, self.consumer = stream, consumer


class AckMetadata:
    """``Msg.metadata`` for a JetStream message, from its ack subject: the attributes of
    nats-py's ``Msg.Metadata``. The writer asks for the stream sequence of every message
    (kept as a number), for the rest rarely: those split the subject again when asked.
    A batch keeps thousands of these alive, so each holds two objects, not the ten of
    a split subject."""

    __slots__ = ("_reply", "_sequence", "stream_seq")

    domain = None  # as nats-py has it for this (v1, no domain) form

    def __init__(self, reply: str, stream_seq: int) -> None:
        self._reply = reply
        self.stream_seq = stream_seq  # ``sequence.stream`` without building the pair
        self._sequence: _SequencePair | None = None

    def _token(self, i: int) -> str:
        return self._reply.split(".")[i]

    @property
    def stream(self) -> str:
        return self._token(2)

    @property
    def consumer(self) -> str:
        return self._token(3)

    @property
    def num_delivered(self) -> int:
        return int(self._token(4))

    @property
    def sequence(self) -> _SequencePair:
        if self._sequence is None:
            self._sequence = _SequencePair(self.stream_seq, int(self._token(6)))
        return self._sequence

    @property
    def num_pending(self) -> int:
        return int(self._token(8))

    @property
    def timestamp(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(self._token(7)) / 1e9, datetime.UTC)


# The header a beampod publisher sets on every message, and what may shadow it.
_MSG_ID_LINE = b"\r\nNats-Msg-Id:"
_ID_MARK = b"Msg-Id"


def quick_msg_id(block: bytes) -> str | None:
    """``Nats-Msg-Id`` of a raw header block, when it is there once, in the form
    publishers write it; None means "parse the headers" (no id, the id twice, or a
    ``Beampod-Original-Msg-Id`` that takes precedence). Equal to what :func:`parse_headers`
    gives for the same block."""
    if block.count(_ID_MARK) != 1:
        return None
    at = block.find(_MSG_ID_LINE)
    if at < 0:
        return None
    start = at + len(_MSG_ID_LINE)
    end = block.find(CRLF, start)
    value = block[start : end if end >= 0 else len(block)].strip()
    return value.decode("utf-8", "replace")


def message_class() -> type:
    """nats-py's ``Msg`` with headers parsed on first read (``raw_headers`` kept)."""
    from nats.aio.msg import Msg

    unparsed: Any = object()

    class PulledMsg(Msg):
        raw_headers: bytes | None = None
        _parsed: Any = unparsed

        @property
        def headers(self) -> dict[str, str] | None:
            if self._parsed is unparsed:
                block = self.raw_headers
                self._parsed = parse_headers(block) if block else None
            return self._parsed

        @headers.setter
        def headers(self, value: dict[str, str] | None) -> None:
            # Msg's __init__ sets None: "not parsed yet" (read from raw_headers then).
            self._parsed = unparsed if value is None else value

    return PulledMsg


async def ack_replies(nc: Any, replies: Sequence[str]) -> None:
    """``nc.publish(reply)`` (an empty message: JetStream's ack) for each of
    ``replies``, in order, as one command instead of one per message; the same checks
    and errors as nats-py's ``publish``."""
    if not replies:
        return
    if not hasattr(nc, "_send_command") or not hasattr(nc, "_flush_queue"):
        for reply in replies:  # a nats-py without those internals: its own way
            await nc.publish(reply)
        return
    from nats import errors

    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    cmd = "".join([f"PUB {reply} 0\r\n\r\n" for reply in replies]).encode()
    if not nc.is_connected and (
        nc._max_pending_size <= 0 or len(cmd) + nc._pending_data_size > nc._max_pending_size
    ):
        raise errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += len(replies)
    await nc._send_command(cmd)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def parse_headers(raw: bytes) -> dict[str, str]:
    """``Name: value`` lines after the ``NATS/1.0`` line (what a stored message carries)."""
    out: dict[str, str] = {}
    for line in raw[len(HDR_LINE) + 2 :].split(CRLF):
        name, sep, value = line.partition(b":")
        if sep:
            out[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    return out
