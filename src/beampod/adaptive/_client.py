"""The plan's side of the loop: send a request, get the matching reply (or nothing).

The client owns one NATS connection in its own thread and event loop, so it never
shares or blocks the RunEngine's loop; the plan waits on a future through bluesky's
``wait_for`` message, so the RunEngine stays responsive (Ctrl-C, pause) while waiting.

Correlation: a reply resolves the pending future of exactly its ``(plan, seq)``.
Anything else (a reply to an earlier seq, a second copy of a reply, a reply for
another plan) is counted in ``stats["ignored"]`` and dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from beampod.adaptive._protocol import (
    ProtocolError,
    Reply,
    Request,
    ping_subject,
    reply_subject,
    request_subject,
    unpack,
)
from beampod.adaptive._settings import LoopSettings
from beampod.bus import NatsConnection
from beampod.errors import BusError

log = logging.getLogger("beampod.adaptive.client")

_START_TIMEOUT_S = 10.0


class AgentClient:
    def __init__(
        self,
        connection: NatsConnection,
        instrument: str,
        settings: LoopSettings,
        redis: Mapping[str, Any] | None = None,
    ) -> None:
        self.instrument = instrument
        self.settings = settings
        self.client_id = uuid.uuid4().hex[:12]
        self._connection = connection
        self._redis_params = dict(redis) if redis is not None else None
        self._pending: dict[tuple[str, int], concurrent.futures.Future[Reply]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._redis_task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._closing = False
        self.stats = {"sent": 0, "replies": 0, "ignored": 0, "bad": 0}

    # -- addresses ---------------------------------------------------------------------

    @property
    def request_subject(self) -> str:
        return request_subject(self.instrument, self.settings.name)

    @property
    def reply_to(self) -> dict[str, str]:
        if self.settings.reply_transport == "redis":
            return {
                "redis": f"beampod:{self.instrument}:adaptive:{self.settings.name}:{self.client_id}"
            }
        return {"nats": reply_subject(self.instrument, self.settings.name, self.client_id)}

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect (idempotent). Called on first use, so a session that never runs an
        adaptive plan never dials the bus for it."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, daemon=True, name=f"beampod-adaptive-{self.instrument}"
        )
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._connect(), loop).result(_START_TIMEOUT_S)
        except (BusError, OSError, TimeoutError, concurrent.futures.TimeoutError):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(2.0)
            loop.close()
            raise
        self._loop, self._thread = loop, thread

    async def _connect(self) -> None:
        self._nc = await self._connection.connect()
        if self.settings.reply_transport == "redis":
            self._redis_task = asyncio.get_running_loop().create_task(self._redis_replies())
        else:
            await self._nc.subscribe(self.reply_to["nats"], cb=self._on_nats_reply)
        # Subscribed on the server before the first request can be answered.
        await self._nc.flush()

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._aclose(), loop)
        try:
            fut.result(5.0)
        except (TimeoutError, concurrent.futures.TimeoutError, BusError, OSError) as exc:
            log.warning("adaptive client did not close cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5.0)
        loop.close()
        with self._lock:
            for f in self._pending.values():
                f.cancel()
            self._pending.clear()

    async def _aclose(self) -> None:
        # Publishes scheduled before close (the "done" notice) go out before the drain.
        await asyncio.gather(*self._sending, return_exceptions=True)
        self._closing = True
        if self._redis_task is not None:
            await self._wake_redis_reader()
            try:
                await asyncio.wait_for(self._redis_task, 6)
            except (TimeoutError, OSError) as exc:
                log.warning("Redis reply reader did not stop: %s", exc)
        if self._nc is not None:
            await self._nc.drain()

    # -- requests ----------------------------------------------------------------------

    def submit(self, req: Request) -> concurrent.futures.Future[Reply]:
        """Send ``req``; the future resolves with its reply. Re-submitting the same
        ``(plan, seq)`` (a retry) replaces the earlier future."""
        self.start()
        assert self._loop is not None
        fut: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        key = (req.plan, req.seq)
        with self._lock:
            old = self._pending.pop(key, None)
            self._pending[key] = fut
        if old is not None:
            old.cancel()
        self._publish(req.to_wire())
        return fut

    def notify_done(self, plan: str, seq: int, reason: str) -> None:
        """Tell the agent it may forget ``plan`` (best effort: it forgets old plans anyway)."""
        if self._loop is None:
            return
        self.forget(plan)
        self._publish(
            Request(
                plan=plan, seq=seq, batch=(), reply_to=self.reply_to, kind="done", reason=reason
            ).to_wire()
        )

    def forget(self, plan: str) -> None:
        with self._lock:
            for key in [k for k in self._pending if k[0] == plan]:
                self._pending.pop(key).cancel()

    def _publish(self, data: bytes) -> None:
        loop, nc = self._loop, self._nc
        assert loop is not None and nc is not None
        self.stats["sent"] += 1
        subject = self.request_subject

        def send() -> None:
            # nats-py's publish only appends to its write buffer; the flusher task sends.
            # ``loop`` is captured: close() may already have cleared ``self._loop``.
            task = loop.create_task(nc.publish(subject, data))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

        loop.call_soon_threadsafe(send)

    # -- replies -----------------------------------------------------------------------

    async def _on_nats_reply(self, msg: Any) -> None:
        self._dispatch(msg.data)

    async def _redis_replies(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        assert self._redis_params is not None, "reply_transport=redis needs Redis settings"
        key = self.reply_to["redis"]
        client = aioredis.Redis(**self._redis_params, socket_connect_timeout=2)
        try:
            while not self._closing:
                try:
                    # BLPOP returns as soon as a reply is pushed; the timeout only bounds
                    # how long a close can wait if the wake-up push below is lost.
                    item = await client.blpop([key], timeout=5)
                except (RedisError, OSError) as exc:
                    log.warning("Redis reply list unavailable (%s); reconnecting", exc)
                    await asyncio.sleep(0.5)  # reconnect backoff, not a readiness wait
                    continue
                if item is not None and item[1]:
                    data = item[1]
                    self._dispatch(data.encode() if isinstance(data, str) else data)
        finally:
            await client.aclose()

    async def _wake_redis_reader(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        assert self._redis_params is not None
        client = aioredis.Redis(**self._redis_params, socket_connect_timeout=2)
        try:
            key = self.reply_to["redis"]
            async with client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, b"")  # empty = "wake up and look"
                pipe.expire(key, 60)  # nobody reads this list after the close
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not wake the Redis reply reader: %s", exc)
        finally:
            await client.aclose()

    def _dispatch(self, data: bytes) -> None:
        try:
            reply = Reply.from_wire(data)
        except ProtocolError as exc:
            self.stats["bad"] += 1
            log.warning("ignored a malformed agent reply: %s", exc)
            return
        with self._lock:
            fut = self._pending.pop((reply.plan, reply.seq), None)
        if fut is None or fut.done():
            self.stats["ignored"] += 1
            return
        self.stats["replies"] += 1
        fut.set_result(reply)


async def ping_agent(
    connection: NatsConnection, instrument: str, name: str, timeout: float = 1.0
) -> dict[str, Any] | None:
    """The agent's status, or None if it does not answer within ``timeout``."""
    from nats.errors import Error as NatsError

    try:
        nc = await connection.connect(connect_timeout=timeout, reconnect=False)
    except BusError:
        return None
    try:
        inbox = reply_subject(instrument, name, "ping-" + uuid.uuid4().hex[:12])
        sub = await nc.subscribe(inbox, max_msgs=1)
        await nc.publish(ping_subject(instrument, name), b"", reply=inbox)
        msg = await sub.next_msg(timeout=timeout)
        return unpack(msg.data)
    except (NatsError, TimeoutError, ProtocolError):
        return None
    finally:
        await nc.close()
