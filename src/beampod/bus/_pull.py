"""Pulling batches from a durable JetStream consumer at a low cost per message.

nats-py's ``PullSubscription.fetch`` awaits every message of a batch through
``next_msg``, which creates two tasks and a timer and draws a uuid per message: ~15 us
of the writer's ~25 us per message in a catch-up, more than decoding it. This puller
sends the same pull requests (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``, reply
to an inbox of its own) and collects the replies in a callback, so a batch costs one
wait, not one per message. Ordering, acknowledgement and redelivery are JetStream's,
unchanged: the messages are nats-py ``Msg`` objects with their ack subjects.

The replies to that inbox are taken straight from the connection's reader
(:meth:`BatchPuller._take`) rather than through nats-py's subscription queue and task:
per message that skips its generic header parser, a queue hop and a task switch, and
the JetStream metadata (``msg.metadata``: the stream sequence the consumer checks for
gaps) is read from the ack subject with one split instead of a dataclass with a
timezone-aware datetime built for every message. Together ~6 us of the writer's
~18 us per message in a catch-up.

In a catch-up nearly every byte the connection reads is a reply to this inbox, and
nats-py's protocol parser costs a regex or two, a dict of arguments and an awaited
coroutine per message. The puller takes the run of complete ``HMSG`` (``_natsparse.py``)
frames for this inbox at the head of the read buffer with one ``find`` and one
``split`` each and hands them to ``_take`` directly; anything else (another
subscription's message, PING, INFO, -ERR, a frame split across reads that nats-py
already began) is left to nats-py's parser, unchanged. A message's headers are parsed
only if someone reads them (``_pulled.message_class``): the writer needs only its
``Nats-Msg-Id``, found with one search (``_pulled.quick_msg_id``). Acknowledgements of a
batch go out as one write (``_pulled.ack_replies``) instead of one nats-py ``publish``
each.

A live pull stays open across fetches for ``LIVE_PULL_S`` (not one fetch's window):
messages that come while the reader stores the last batch wait in this puller's
buffer instead of at the server, and the next fetch takes them without a request.
Asking per window cost each live message ~1.3 pull requests (a writer at 20 events/s
in a facility: a no-wait pull and an expiring one per store), and each request costs
the server 100-300 us of CPU: about what publishing the message to three replicas
costs (docs/benchmarks.md, "Pull requests per message").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from beampod.bus._natsparse import take_frames_first
from beampod.bus._pulled import CRLF, HDR_LINE, AckMetadata, message_class

# Heartbeats (100) keep a long pull alive; every other status (404 no messages, 408
# request expired, 409 consumer changed or too many waiting pulls) ends the request.
_HEARTBEAT = "100"
# "No responders": the server is there but JetStream is not (yet) answering.
_NO_RESPONDERS = "503"
# How long past its own expiry a pull may take to end before the puller stops waiting
# (a server that went away never answers; the connection reports that itself).
_GRACE_S = 1.0
# How long a live pull stays open (see the module doc). A pull the server lost (its
# node died, the consumer's leader moved) is noticed when this has passed, or at once
# when the connection reconnected: the longest a reader can wait for nothing.
LIVE_PULL_S = 2.0

# $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
# (the v1 form JetStream sends without a domain; anything else is parsed by nats-py).
_ACK_TOKENS = 9


# What the connection's stream reader may buffer before it pauses the socket (2x this).
_READ_LIMIT = 1 << 20
_HMSG = b"HMSG "
_new = object.__new__


class BatchPuller:
    """``await puller.fetch(n, timeout)``: up to ``n`` messages, in stream order.

    ``urgent`` (of a message's raw header block): a live fetch returns as soon as such
    a message came, with what came before it, instead of at the end of its ``timeout``
    (the writer: a run's start, a stream's descriptor). The pull stays open; the next
    fetch takes what it brings."""

    def __init__(
        self,
        nc: Any,
        stream: str,
        durable: str,
        urgent: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._buffer: deque[Any] = deque()
        # Messages still owed by the outstanding pull request; 0: none outstanding.
        self._owed = 0
        self._ended = asyncio.Event()
        self._ended.set()
        self._urgent = urgent
        # Set with _ended, and when an urgent message comes during a live pull: what a
        # fetch waits for.
        self._served = asyncio.Event()
        self._served.set()
        self._live = False  # the outstanding request is a live (expiring) pull
        # When the outstanding request must have ended; past it, it was lost (the
        # server restarted) and the next fetch pulls again.
        self._deadline = 0.0
        self._reconnects = 0  # the connection's count when the open pull was sent
        self._no_jetstream = False
        self._msg_class: Any = None
        self._subject_b, self._subject_s = b"", ""
        # Messages taken by this puller's own frame reader (not nats-py's parser): 0
        # after a backlog means a nats-py without the internals it uses (ADR 0029).
        self.frames_taken = 0

    async def start(self) -> None:
        self._msg_class = message_class()
        # No limit on the subscription's own queue: the pull requests bound what comes.
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=0, pending_bytes_limit=0
        )
        nc = self._nc
        own_sid, process = self._sub._id, nc._process_msg

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            if sid == own_sid:
                self._take(subject, reply, data, headers)
            else:
                await process(sid, subject, reply, data, headers)

        # The connection's reader calls ``nc._process_msg`` for every message; this
        # connection is the consumer's own, and every other subscription's messages
        # still go the usual way.
        nc._process_msg = process_msg
        sid_b = str(own_sid).encode()
        take_frames_first(nc, _HMSG, lambda buf: self._take_frames(buf, sid_b))
        # nats-py's stream reader stops reading the socket past twice its 32 KiB read
        # size and starts again below it: two epoll changes per read in a catch-up.
        reader = getattr(getattr(nc, "_transport", None), "_io_reader", None)
        if isinstance(reader, asyncio.StreamReader) and getattr(reader, "_limit", 0) < _READ_LIMIT:
            setattr(reader, "_limit", _READ_LIMIT)  # noqa: B010 (private to asyncio)

    def _take_frames(self, buf: bytearray, own_sid: bytes) -> tuple[int, bool]:
        """Take the complete ``HMSG`` frames for this inbox at the head of ``buf``:
        (bytes taken, whether the frame after them is ours but not complete yet)."""
        with memoryview(buf) as view:  # one copy per slice (released before buf shrinks)
            return self._take_frames_of(buf, view, own_sid)

    def _take_frames_of(self, buf: bytearray, view: memoryview, own_sid: bytes) -> tuple[int, bool]:
        pos, size, taken, nbytes = 0, len(buf), 0, 0
        try:
            while buf.startswith(_HMSG, pos):
                end = buf.find(CRLF, pos)
                if end < 0:
                    return pos, True
                parts = bytes(view[pos + len(_HMSG) : end]).split(b" ")
                if len(parts) == 5:
                    subject, sid, reply, hdr_len, total_len = parts
                elif len(parts) == 4:
                    subject, sid, hdr_len, total_len = parts
                    reply = b""
                else:
                    return pos, False
                if sid != own_sid or not (hdr_len.isdigit() and total_len.isdigit()):
                    return pos, False
                start, hdr_n = end + 2, int(hdr_len)
                stop = start + int(total_len)
                if stop + 2 > size:
                    return pos, True
                headers = bytes(view[start : start + hdr_n]) if hdr_n else None
                data = bytes(view[start + hdr_n : stop])
                taken += 1
                nbytes += len(data)
                self._take(subject, reply, data, headers)
                pos = stop + 2
            return pos, False
        finally:
            if taken:  # nats-py's counters, once per read instead of once per message
                self.frames_taken += taken
                stats = self._nc.stats
                stats["in_msgs"] += taken
                stats["in_bytes"] += nbytes

    def _take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if headers and headers[len(HDR_LINE)] == 0x20:  # " ": a status reply
            self._on_status(headers[len(HDR_LINE) + 1 : len(HDR_LINE) + 4].decode())
            return
        reply_s = reply.decode()
        if subject != self._subject_b:  # every message of a stream has the same one
            self._subject_b, self._subject_s = subject, subject.decode()
        # Msg's fields, set without its dataclass __init__ (the class defaults cover the
        # rest: not acked, headers parsed from ``raw_headers`` when read).
        msg = _new(self._msg_class)
        msg.__dict__.update(
            _client=self._nc,
            subject=self._subject_s,
            reply=reply_s,
            data=data,
            _sid=self._sub._id,
            raw_headers=headers,
        )
        tokens = reply_s.split(".")
        if len(tokens) == _ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
            msg._metadata = AckMetadata(reply_s, int(tokens[5]))
        self._arrived(msg)
        if self._live and headers and self._urgent is not None and self._urgent(headers):
            self._served.set()

    async def _on_msg(self, msg: Any) -> None:
        # Only if a message reached the subscription itself (not through ``_take``).
        headers = msg.headers
        status = headers.get("Status") if headers and not msg.data else None
        if status is None:
            self._arrived(msg)
            msg_id = headers.get("Nats-Msg-Id") if headers else None
            if self._live and msg_id and self._urgent is not None and self._urgent(msg_id.encode()):
                self._served.set()
        else:
            self._on_status(status)

    def _arrived(self, msg: Any) -> None:
        self._buffer.append(msg)
        self._owed -= 1
        if self._owed <= 0:
            self._owed = 0
            self._ended.set()
            self._served.set()

    def _on_status(self, status: str) -> None:
        if status == _HEARTBEAT:
            return
        if status == _NO_RESPONDERS:
            self._no_jetstream = True
        self._owed = 0
        self._ended.set()
        self._served.set()

    async def _pull(
        self, request: dict[str, Any], open_s: float, wait_s: float | None = None
    ) -> None:
        """Send one pull request (it ends at the latest ``open_s`` from now) and wait
        until it is served, ended or ``wait_s`` (default: ``open_s``) passed."""
        self._owed = int(request["batch"])
        self._ended.clear()
        self._served.clear()
        # Only a live pull ends early for an urgent message: a backlog's batch (a
        # no-wait pull) is taken whole, or a catch-up would store a batch per run.
        self._live = "expires" in request
        self._deadline = time.monotonic() + open_s
        self._reconnects = self._nc.stats["reconnects"]
        await self._nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)
        await self._wait_served(open_s if wait_s is None else wait_s)

    def _end_if_lost(self) -> None:
        """An open pull past its deadline, or sent before the connection reconnected,
        will never be answered: count it as ended."""
        if self._ended.is_set():
            return
        if time.monotonic() > self._deadline or self._nc.stats["reconnects"] != self._reconnects:
            self._owed = 0
            self._ended.set()

    async def _wait_served(self, wait_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._served.wait(), wait_s)

    async def _idle_pull(self, batch: int, timeout: float, idle_s: float) -> None:
        """One pull for a single message, open for ``idle_s``: an idle reader so costs
        one request per ``idle_s`` instead of one per ``timeout``. Once the first
        message came, the rest of a batch is gathered for ``timeout``, as a live fetch
        does (and stays open as a live pull does). The idle pull asks for one message
        only: a whole batch's pull, open for ``idle_s`` and answered as messages came,
        measured +75 ms readable p50 at full RunEngine speed (docs/store.md)."""
        await self._pull({"batch": 1, "expires": max(1, int(idle_s * 1e9))}, idle_s + _GRACE_S)
        if self._buffer and batch > 1 and self._ended.is_set():
            await self._open_live_pull(batch - 1, timeout)

    async def _open_live_pull(self, batch: int, timeout: float) -> None:
        """A pull that stays open ``LIVE_PULL_S`` (or ``timeout`` if longer); wait up to
        ``timeout`` for it to be served."""
        open_s = max(timeout, LIVE_PULL_S)
        request = {"batch": batch, "expires": max(1, int(open_s * 1e9))}
        await self._pull(request, open_s + _GRACE_S, timeout)

    async def _live_pull(self, batch: int, timeout: float) -> None:
        if len(self._buffer) < batch and self._ended.is_set():
            # Answered at once (the messages waiting, then "no messages"), unless the
            # server is gone: then it ends by the deadline.
            wanted = batch - len(self._buffer)
            await self._pull({"batch": wanted, "no_wait": True}, timeout + _GRACE_S)
        if timeout <= 0:  # what is waiting now, nothing more
            return
        if not self._buffer and self._ended.is_set():
            await self._open_live_pull(batch, timeout)
        elif not self._buffer:  # an earlier pull is still open: wait for it
            began = time.monotonic()
            self._served.clear()
            await self._wait_served(min(timeout, max(0.0, self._deadline - began)))
            self._end_if_lost()
            rest = timeout - (time.monotonic() - began)
            if not self._buffer and self._ended.is_set() and not self._no_jetstream and rest > 0:
                # It ended (expired) during the wait: a new one for the rest of the window.
                await self._open_live_pull(batch, rest)

    async def fetch(self, batch: int, timeout: float, idle_s: float | None = None) -> list[Any]:
        """What is waiting now (up to ``batch``) at once; else what arrives within
        ``timeout`` (the pull expires then), possibly nothing. ``timeout`` 0: only what
        is waiting now.

        ``idle_s`` (for a reader that found nothing last time): when nothing is
        waiting, keep one pull open up to ``idle_s`` and return ``timeout`` after the
        first message that comes, or empty when none came."""
        from nats.errors import NoRespondersError

        if self._sub is None:
            raise RuntimeError("puller not started")
        self._end_if_lost()
        if not self._buffer and self._ended.is_set() and idle_s is not None and idle_s > timeout:
            await self._idle_pull(batch, timeout, idle_s)
        else:
            await self._live_pull(batch, timeout)
        if self._no_jetstream and not self._buffer:
            self._no_jetstream = False
            raise NoRespondersError
        n = min(batch, len(self._buffer))
        return [self._buffer.popleft() for _ in range(n)]
