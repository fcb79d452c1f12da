"""The ``agent`` pod service: serves decisions over NATS core request/reply.

One NATS connection per instrument, with that instrument's own credentials, so an agent
can only read that instrument's requests and answer on that instrument's subjects. Each
instrument whose agent is enabled gets its own agent (its class, arguments, name and
loop settings: its ``agent`` block, else the top-level one). The supervisor runs one
process per instrument (``agent-<instrument>``) with only that instrument's credentials;
run by hand without ``--instrument``, one process serves them all.
Requests are taken in a queue group: two agent processes can serve one instrument.
Replies go where the request says: a NATS subject, or (the bluesky-pods demo's way) a Redis list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping
from typing import Any

from beampod.adaptive._protocol import (
    READY_WORD,
    ProtocolError,
    Reply,
    Request,
    pack,
    ping_subject,
    request_subject,
    unpack,
)
from beampod.adaptive._runner import AgentFactory, AgentRunner, agent_factory
from beampod.adaptive._settings import (
    LoopSettings,
    agent_settings,
    loop_settings,
    redis_params,
    split_args,
)
from beampod.bus import NatsConnection
from beampod.config import LoadedPod, instrument_agent
from beampod.errors import BusUnavailableError

log = logging.getLogger("beampod.adaptive.service")

# A reply list nobody reads (plan gone) must not live forever in Redis.
REDIS_REPLY_TTL_S = 3600
# Between attempts to reach a bus that does not answer yet (doubling up to the max).
CONNECT_RETRY_INITIAL_S = 0.5
CONNECT_RETRY_MAX_S = 5.0


class RedisReplyFailed(Exception):
    """Redis refused or lost a reply (redis-py's error, named in the message)."""


class _RedisReplier:
    """Lazily connected: a pod whose plans never ask for Redis replies never dials it."""

    def __init__(self, params: Mapping[str, Any] | None) -> None:
        self._params = params
        self._client: Any = None

    async def push(self, key: str, data: bytes) -> None:
        if self._params is None:
            raise ProtocolError("this agent has no Redis configured for replies")
        # redis-py (with hiredis) loads on the first Redis reply, not in every agent
        # process: a facility's agents reply over NATS (~7 MB RSS each; ADR 23).
        from redis.exceptions import RedisError

        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis(**self._params, socket_connect_timeout=2)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, data)  # RPUSH + the plan's BLPOP: first in, first out
                pipe.expire(key, REDIS_REPLY_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            raise RedisReplyFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class AgentService:
    def __init__(
        self,
        connections: Mapping[str, NatsConnection],
        agents: Mapping[str, tuple[AgentFactory, LoopSettings]],
        redis: Mapping[str, Any] | None = None,
    ) -> None:
        """``agents``: instrument -> (its agent factory, its loop settings)."""
        self._connections = dict(connections)
        self.settings = {inst: settings for inst, (_, settings) in agents.items()}
        self.runners = {
            inst: AgentRunner(factory, name=settings.name)
            for inst, (factory, settings) in agents.items()
        }
        self._redis = _RedisReplier(redis)
        self._clients: list[Any] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Every instrument's connection and subscriptions, each on its own: in a pool
        (ADR 0025) a member whose bus does not answer yet (or refuses its user) does not
        hold back the others from serving; this returns once all of them serve."""
        await asyncio.gather(*(self._start_one(i, c) for i, c in self._connections.items()))

    async def _start_one(self, inst: str, conn: NatsConnection) -> None:
        nc = await self._connect(conn)
        if nc is None:
            return  # asked to stop while the bus did not answer
        self._clients.append(nc)
        name = self.settings[inst].name
        await nc.subscribe(
            request_subject(inst, name), queue="agents", cb=self._on_request(inst, nc)
        )
        await nc.subscribe(ping_subject(inst, name), cb=self._on_ping(inst, nc))
        # The subscriptions are registered on the server once flush returns: only then
        # is it true that a request sent now will be answered.
        await nc.flush()
        log.info("agent %r of %s serves %s", name, inst, request_subject(inst, name))

    async def _connect(self, conn: NatsConnection) -> Any | None:
        """A connection, waited for as long as it takes (None: stopped meanwhile). A
        facility's 25 agents start while the bus cluster is busy starting everything
        else: a connect that times out then is the machine's load, not a fault, and the
        supervisor's readiness deadline (with its allowance for a busy start) bounds
        the wait instead of this process giving up after one attempt."""
        delay = CONNECT_RETRY_INITIAL_S
        while not self._stop.is_set():
            try:
                return await conn.connect()
            except BusUnavailableError as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)  # backoff, or stopped
            delay = min(CONNECT_RETRY_MAX_S, delay * 2)
        return None

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run_until_stopped(self) -> None:
        await self._stop.wait()
        await self.close()

    async def close(self) -> None:
        from nats.errors import Error as NatsClientError

        for nc in self._clients:
            try:
                await nc.drain()
            except NatsClientError:
                # Stopped while the link is down (reconnecting): nothing in flight can be
                # drained; close without a traceback on the way out.
                await nc.close()
        self._clients.clear()
        await self._redis.close()

    def _on_request(self, inst: str, nc: Any) -> Callable[[Any], Any]:
        runner = self.runners[inst]

        async def handler(msg: Any) -> None:
            try:
                req = Request.from_wire(msg.data)
            except ProtocolError as exc:
                log.warning("%s: ignored a bad request: %s", inst, exc)
                return
            reply = runner.handle(req)
            if reply is None:
                return
            await self._send(inst, nc, req, reply)

        return handler

    async def _send(self, inst: str, nc: Any, req: Request, reply: Reply) -> None:
        data = reply.to_wire()
        if "nats" in req.reply_to:
            subject = req.reply_to["nats"]
            if not subject.startswith(f"{inst}."):
                log.warning("%s: refused to reply outside the instrument: %s", inst, subject)
                return
            await nc.publish(subject, data)
        elif "redis" in req.reply_to:
            try:
                await self._redis.push(req.reply_to["redis"], data)
            except (OSError, ProtocolError, RedisReplyFailed) as exc:
                # The plan's deadline policy covers a reply that never arrives.
                log.warning(
                    "%s: Redis reply to plan %s failed: %s: %s",
                    inst,
                    req.plan,
                    type(exc).__name__,
                    exc,
                )
        else:
            log.warning("%s: request of plan %s names no reply transport", inst, req.plan)

    def _on_ping(self, inst: str, nc: Any) -> Callable[[Any], Any]:
        async def handler(msg: Any) -> None:
            if msg.reply and msg.reply.startswith(f"{inst}."):
                runner = self.runners[inst]
                status: dict[str, Any] = {
                    "v": 1,
                    "agent": self.settings[inst].name,
                    "plans": runner.active_plans,
                    "stats": runner.stats,
                }
                wanted = _recent_wanted(msg.data)
                if wanted:
                    status["recent"] = runner.recent_decisions(wanted)
                await nc.publish(msg.reply, pack(status))

        return handler


def _recent_wanted(data: bytes) -> int:
    """How many recent decisions a ping asks for: an empty ping (``beampod agent ping``,
    the readiness probe) asks for none; ``{"v": 1, "recent": n}`` for ``n``."""
    if not data:
        return 0
    try:
        n = unpack(data).get("recent", 0)
    except ProtocolError:
        return 0
    return n if isinstance(n, int) and n > 0 else 0


def agent_instruments(pod: LoadedPod) -> list[str]:
    """The instruments whose agent is enabled."""
    return [n for n in pod.config.instruments if instrument_agent(pod.config, n) is not None]


def service_from_pod(pod: LoadedPod, instruments: list[str] | None = None) -> AgentService:
    names = instruments or agent_instruments(pod)
    agents = {}
    for n in names:
        _, args = split_args(agent_settings(pod, n).args)
        agents[n] = (agent_factory(agent_settings(pod, n).agent, args), loop_settings(pod, n))
    conns = {
        n: NatsConnection.from_pod(pod, n, role="agent", name=f"beampod-agent-{n}") for n in names
    }
    # No Redis password (an instrument of a facility): Redis replies are refused.
    redis = redis_params(pod) if pod.secrets.redis_password.get_secret_value() else None
    return AgentService(conns, agents, redis=redis)


async def serve(pod: LoadedPod, instruments: list[str] | None = None) -> None:
    service = service_from_pod(pod, instruments)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    await service.start()
    if service.stopping:
        await service.close()  # stopped before the bus answered: never said ready
        return
    names = ",".join(service.runners)
    agents = ",".join(sorted({s.name for s in service.settings.values()}))
    classes = ",".join(sorted({agent_settings(pod, n).agent for n in service.runners}))
    print(f"{READY_WORD} agent={agents} instruments={names} class={classes}", flush=True)
    await service.run_until_stopped()
