"""Pipelined JetStream publishing with cheap acknowledgements.

nats-py's ``publish_async`` costs ~35 µs of GIL time per message in the publisher's
thread (an ``asyncio.wait_for`` task per message, ``os.urandom`` for a token, a JSON
parse into a dataclass per ack), and that time is taken from the RunEngine, which
shares the GIL. Here one wildcard subscription per connection receives every ack, a
counter names each publish (the inbox prefix is already unique per connection), and
an ack is read with two byte searches; JSON is parsed only for errors.

``parse_puback`` is the protocol logic, pure and tested without sockets;
``AckTracker`` is the I/O around it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

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
        pending = self._pending.pop(token, None)
        if pending is None:  # an ack for a message already given up on
            return
        status = msg.headers.get("Status") if msg.headers else None
        pending.outcome, pending.detail = parse_puback(bytes(msg.data), status)
        self._on_ack()

    def forget(self) -> None:
        """The connection is being thrown away: late acks are ignored."""
        self._pending.clear()
