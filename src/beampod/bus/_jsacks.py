"""Pipelined JetStream publishing with cheap acknowledgements.

nats-py's ``publish_async`` costs ~35 µs of GIL time per message in the publisher's
thread (an ``asyncio.wait_for`` task per message, ``os.urandom`` for a token, a JSON
parse into a dataclass per ack), and that time is taken from the RunEngine, which
shares the GIL. Here one wildcard subscription per connection receives every ack, a
counter names each publish (the inbox prefix is already unique per connection), and
an ack is read with two byte searches; JSON is parsed only for errors.

A batch of messages is one ``HPUB`` command block handed to the socket in one write
(``publish_batch``), and the acks are taken from the connection's reader
(``nc._process_msg``) before nats-py builds a ``Msg`` and queues it for a subscription
task: every extra turn of the publisher's event loop is a GIL hand-over with the
RunEngine's thread. A nats-py without those internals gets its own ``publish`` and
subscription path (``fast`` tells which one is in use).

``parse_puback`` and ``hpub_block`` are the protocol logic, pure and tested without
sockets; ``AckTracker`` is the I/O around them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nats.errors import ConnectionClosedError, ConnectionDrainingError, OutboundBufferLimitError

from beampod.bus._natsparse import take_frames_first

Outcome = Literal["stored", "duplicate", "refused", "unavailable"]

# What JetStream (2.10/2.11) puts in a publish reply: b'{"stream":"DEMO_DOCUMENTS","seq":12}',
# b'{"stream":"DEMO_DOCUMENTS","seq":12,"duplicate": true}' (note the space), or
# b'{"error":{"code":..,...}}'.
_DUPLICATE = re.compile(rb'"duplicate":\s*true')
_ERROR = b'"error"'

# Errors that are not a decision about the message (JetStream's ``err_code``s): asking again
# later gets it stored, or answered "duplicate" if an earlier copy was stored meanwhile.
_ASK_AGAIN = {
    # A copy with the same message id is still being proposed in the cluster (e.g. the
    # publisher re-sent after a fail-over before the first copy was applied). It may yet
    # be stored, or may not: dropping ours would lose the document in the second case.
    10158: "a copy with this message id is still being stored",
    10167: "the stream's ingest queue is full",  # 429 too many requests
}


def parse_puback(data: bytes, status: str | None = None) -> tuple[Outcome, str]:
    """JetStream's answer to one publish -> (outcome, detail).

    ``unavailable``: not stored yet, and retrying later may work (no stream listening,
    JetStream busy or restarting, a copy with the same id still in process);
    ``refused``: not stored, and retrying will not help (e.g. larger than the stream
    allows).
    """
    if status:
        if status == "503":
            return "unavailable", "no stream answers on this subject (503 no responders)"
        return "unavailable", f"status {status} instead of an acknowledgement"
    if _ERROR in data:
        try:
            err = json.loads(data)["error"]
            code, description = int(err.get("code", 0)), str(err.get("description", ""))
            err_code = int(err.get("err_code", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return "unavailable", f"unreadable error reply {data[:200]!r}"
        if code >= 500:
            return "unavailable", f"{code} {description}"
        if err_code in _ASK_AGAIN or code == 429:
            why = _ASK_AGAIN.get(err_code, "too many requests")
            return "unavailable", f"{code} {description} ({why}; asking again)"
        return "refused", f"{code} {description}"
    if not data.startswith(b'{"stream"'):
        return "unavailable", f"not a JetStream acknowledgement: {data[:200]!r}"
    return ("duplicate" if _DUPLICATE.search(data) else "stored"), ""


_HDR_LINE = b"NATS/1.0"
_MSG = b"MSG "
# What nats-py does to a header value (strip, CR/LF to space): the same id either way.
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def hpub_block(
    subject: bytes, reply_prefix: bytes, first: int, stream: bytes, items: list[tuple[bytes, str]]
) -> bytes:
    """The ``HPUB`` commands for ``items`` (data, message id), the i-th with the reply
    subject ``reply_prefix + str(first + i)``, as nats-py's ``publish`` writes each one
    (headers ``Nats-Msg-Id`` and ``Nats-Expected-Stream``)."""
    tail = b"\r\nNats-Expected-Stream: " + stream + b"\r\n\r\n"
    parts: list[bytes] = []
    token = first
    for data, msg_id in items:
        hdr = _HDR_LINE + b"\r\nNats-Msg-Id: " + msg_id.strip().translate(_NEWLINES).encode() + tail
        parts.append(
            b"HPUB %s %s%d %d %d\r\n%s%s\r\n"
            % (subject, reply_prefix, token, len(hdr), len(hdr) + len(data), hdr, data)
        )
        token += 1
    return b"".join(parts)


def _status_of(headers: bytes | None) -> str | None:
    """The status code of a raw header block ``NATS/1.0 503...``, if it has one."""
    if headers and len(headers) > len(_HDR_LINE) + 3 and headers[len(_HDR_LINE)] == 0x20:
        return headers[len(_HDR_LINE) + 1 : len(_HDR_LINE) + 4].decode("ascii", "replace")
    return None


@dataclass
class Pending:
    """One published message waiting for its acknowledgement."""

    outcome: Outcome | None = None
    detail: str = ""


class AckTracker:
    """Publishes on one connection and matches each ack to its message."""

    def __init__(self, nc: Any, subject: str, stream: str, on_ack: Callable[[], None]) -> None:
        self._nc, self._subject, self._stream, self._on_ack = nc, subject, stream, on_ack
        self._prefix = ""
        self._next = 0
        self._pending: dict[int, Pending] = {}
        self.fast = False  # batches written as one block, acks taken from the reader
        # Acks taken from the connection's reader (not nats-py's subscription task);
        # of those, taken from the read buffer before nats-py's parser.
        self.replies_taken = 0
        self.frames_taken = 0

    async def start(self) -> None:
        nc = self._nc
        self._prefix = nc.new_inbox() + "."
        sub = await nc.subscribe(self._prefix + "*", cb=self._on_reply)
        self.fast = all(
            hasattr(nc, a) for a in ("_process_msg", "_send_command", "_pending", "_transport")
        ) and isinstance(getattr(sub, "_id", None), int)
        if not self.fast:
            return
        own_sid, process, cut = sub._id, nc._process_msg, len(self._prefix)

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            # This connection is the publisher's own: its only other traffic is
            # nats-py's (PING/PONG, INFO), which keeps going the usual way.
            if sid != own_sid:
                await process(sid, subject, reply, data, headers)
                return
            nc.stats["in_msgs"] += 1
            nc.stats["in_bytes"] += len(data)
            try:
                token = int(subject[cut:])
            except ValueError:
                return
            self.replies_taken += 1
            self._resolve(token, bytes(data), _status_of(headers))

        nc._process_msg = process_msg
        sid_b = str(own_sid).encode()
        take_frames_first(nc, _MSG, lambda buf: self._take_frames(buf, sid_b))

    def _take_frames(self, buf: bytearray, own_sid: bytes) -> tuple[int, bool]:
        """Resolve the complete ``MSG <inbox>.<n> <sid> <len>`` frames for this tracker
        at the head of ``buf``: (bytes taken, whether the frame after them is one of
        ours but not complete yet). A status reply is an ``HMSG``: nats-py's."""
        pos, size, cut = 0, len(buf), len(self._prefix)
        nc = self._nc
        while buf.startswith(_MSG, pos):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return pos, True
            parts = buf[pos + len(_MSG) : end].split(b" ")
            if len(parts) != 3:  # a reply subject, or not a frame of ours
                return pos, False
            subject, sid, length = parts
            if sid != own_sid or not length.isdigit():
                return pos, False
            start = end + 2
            stop = start + int(length)
            if stop + 2 > size:
                return pos, True
            try:
                token = int(subject[cut:])
            except ValueError:
                return pos, False
            data = bytes(buf[start:stop])
            nc.stats["in_msgs"] += 1
            nc.stats["in_bytes"] += len(data)
            self.replies_taken += 1
            self.frames_taken += 1
            self._resolve(token, data, None)
            pos = stop + 2
        return pos, False

    async def publish_batch(self, items: list[tuple[bytes, str]]) -> list[Pending]:
        """Publish ``items`` (data, message id) in order; one socket write on the fast
        path. Raises nats-py's errors (nothing of the batch is sent then)."""
        if not self.fast:
            return [await self.publish(data, msg_id) for data, msg_id in items]
        nc = self._nc
        if nc.is_closed:
            raise ConnectionClosedError
        if nc.is_draining_pubs:
            raise ConnectionDrainingError
        if not nc.is_connected:
            raise OutboundBufferLimitError  # the publisher's connection has no buffer
        first = self._next + 1
        block = hpub_block(
            self._subject.encode(),
            self._prefix.encode(),
            first,
            self._stream.encode(),
            items,
        )
        pendings = [Pending() for _ in items]
        for i, pending in enumerate(pendings):
            self._pending[first + i] = pending
        self._next += len(items)
        nc.stats["out_msgs"] += len(items)
        nc.stats["out_bytes"] += sum(len(data) for data, _ in items)
        # The whole batch, and anything nats-py had pending before it, in one write now
        # rather than on the flusher task's next turn.
        await nc._send_command(block)
        nc._transport.writelines(nc._pending)
        nc._pending = []
        nc._pending_data_size = 0
        await nc._transport.drain()  # waits only while the socket's buffer is full
        return pendings

    async def publish(self, data: bytes, msg_id: str) -> Pending:
        self._next += 1
        pending = self._pending[self._next] = Pending()
        await self._nc.publish(
            self._subject,
            data,
            reply=f"{self._prefix}{self._next}",
            headers={"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": self._stream},
        )
        return pending

    async def _on_reply(self, msg: Any) -> None:
        try:
            token = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        status = msg.headers.get("Status") if msg.headers else None
        self._resolve(token, bytes(msg.data), status)

    def _resolve(self, token: int, data: bytes, status: str | None) -> None:
        pending = self._pending.pop(token, None)
        if pending is None:  # an ack for a message already given up on
            return
        pending.outcome, pending.detail = parse_puback(data, status)
        self._on_ack()

    def forget(self) -> None:
        """The connection is being thrown away: late acks are ignored."""
        self._pending.clear()
