"""Queue-driven agents: watch runs on the bus, submit the next plan to the queue server.

No plan waits for this agent: it reads the instrument's documents from the bus, and
after each stop document of a run of its campaign it ingests that run, asks the agent,
and adds the next plan to the queue (autostart on, so the queue runs it). Every plan it
submits carries ``md["adaptive"] = {"campaign": id, "seq": n, "agent": name}``; a stop
for an unknown run, an earlier seq, or a seq already handled is ignored, so redelivered
or foreign documents cannot make it submit twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from beampod.adaptive._sdk import Agent, NoRecommendation, StopAgent
from beampod.bus import DecodeError, NatsConnection, decode
from beampod.config import LoadedPod, documents_subject, instrument_address, queue_server

log = logging.getLogger("beampod.adaptive.queue_agent")


class QueueApi(Protocol):
    """The part of bluesky-queueserver-api's ``REManagerAPI`` the agent uses."""

    def item_add(self, item: Any) -> Any: ...

    def queue_autostart(self, enable: bool) -> Any: ...

    def status(self) -> Any: ...


@dataclass
class _Run:
    seq: int
    object_keys: dict[str, list[str]] = field(default_factory=dict)
    primary: set[str] = field(default_factory=set)
    rows: list[tuple[dict[str, float], dict[str, float]]] = field(default_factory=list)


class QueueAgent:
    """The decision logic, transport-free: feed it documents with :meth:`on_document`."""

    def __init__(
        self,
        agent: Agent,
        api: QueueApi,
        *,
        detectors: Sequence[str],
        motors: Sequence[str],
        plan_name: str = "scan",
        name: str = "agent",
        campaign: str | None = None,
        max_failed_runs: int = 3,
    ) -> None:
        self.agent = agent
        self.api = api
        self.detectors = list(detectors)
        self.motors = list(motors)
        self.plan_name = plan_name
        self.name = name
        self.campaign = campaign or str(uuid.uuid4())
        self.max_failed_runs = max_failed_runs
        self.expected_seq = 0
        self.finished = False
        self.reason = ""
        self.submitted: list[dict[str, Any]] = []
        self._runs: dict[str, _Run] = {}
        self._failures = 0
        self._retry_pending = False
        self._autostart_off = 0

    def start(self, first_point: Mapping[str, float]) -> dict[str, Any]:
        """Turn autostart on and queue the campaign's first plan."""
        self.api.queue_autostart(True)
        return self._submit(dict(first_point), 0)

    def plan_item(self, point: Mapping[str, float], seq: int) -> dict[str, Any]:
        """``scan(detectors, m1, x1, x1, m2, x2, x2, ..., num=1)``: one point, every motor
        moved together. (``list_scan``'s variadic arguments do not pass the queue
        server's plan validation; ``scan``'s, the bluesky-pods demo's own example, do.)"""
        args: list[Any] = [self.detectors]
        for motor in self.motors:
            x = float(point[motor])
            args += [motor, x, x]
        md = {"adaptive": {"campaign": self.campaign, "seq": seq, "agent": self.name}}
        return {
            "item_type": "plan",
            "name": self.plan_name,
            "args": args,
            "kwargs": {"num": 1, "md": md},
        }

    def on_document(self, name: str, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Returns the plan item it submitted, if this document led to one."""
        if self.finished:
            return None
        if name == "start":
            tag = doc.get("adaptive") or {}
            if isinstance(tag, Mapping) and tag.get("campaign") == self.campaign:
                self._runs[doc["uid"]] = _Run(seq=int(tag.get("seq", -1)))
        elif name == "descriptor":
            run = self._runs.get(doc.get("run_start", ""))
            if run is not None and doc.get("name") == "primary":
                run.primary.add(doc["uid"])
                run.object_keys.update(doc.get("object_keys", {}))
        elif name in ("event", "event_page"):
            self._on_event(name, doc)
        elif name == "stop":
            return self._on_stop(doc)
        return None

    def _on_event(self, name: str, doc: Mapping[str, Any]) -> None:
        for run in self._runs.values():
            if doc.get("descriptor") in run.primary:
                break
        else:
            return
        data = doc["data"]
        rows = (
            [data]
            if name == "event"
            else [{k: v[i] for k, v in data.items()} for i in range(len(doc["seq_num"]))]
        )
        for row in rows:
            x = {m: float(row[m]) for m in self.motors if _finite(row.get(m))}
            y = {
                k: float(row[k])
                for d in self.detectors
                for k in run.object_keys.get(d, [])
                if _finite(row.get(k))
            }
            run.rows.append((x, y))

    def _on_stop(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        run = self._runs.pop(doc.get("run_start", ""), None)
        if run is None or run.seq != self.expected_seq:
            return None
        if doc.get("exit_status") != "success":
            self._on_failed(doc)
            return None
        for x, y in run.rows:
            self.agent.ingest(x, y)
        try:
            points = list(self.agent.suggest(1))
        except (StopAgent, NoRecommendation) as exc:
            self._finish(str(exc) or type(exc).__name__)
            return None
        if not points:
            self._finish("agent suggested nothing")
            return None
        return self._submit(dict(points[0]), self.expected_seq + 1)

    def _on_failed(self, doc: Mapping[str, Any]) -> None:
        """A run of the campaign did not succeed. The queue server then puts its item
        back at the front of the queue, stops the queue and turns autostart off. A
        failed plan is run again, the same item under the same seq (no second copy of
        the point), once :meth:`on_queue_status` sees autostart off, up to
        ``max_failed_runs``; an aborted or halted run was someone's decision, and ends
        the campaign."""
        status = doc.get("exit_status")
        why = f"{status} {doc.get('reason', '')}".strip()
        self._failures += 1
        if status != "fail":
            self._finish(f"run {self.expected_seq} ended {why}; the queue is stopped")
        elif self._failures >= self.max_failed_runs:
            self._finish(f"{self._failures} runs of the campaign failed; last: {why}")
        else:
            self._retry_pending = True

    def on_queue_status(self, status: Mapping[str, Any]) -> None:
        """Called every second or so with the queue server's status. The campaign runs on
        autostart: when it is off, either a failed run waits to be run again (turn it
        back on), or the queue stopped for a reason this agent did not see (an operator,
        a plan that failed before its run opened): after two looks in a row, the
        campaign ends saying so, rather than waiting for runs that will not come."""
        if self.finished:
            return
        if status.get("queue_autostart_enabled", True):
            self._autostart_off = 0
            return
        if self._retry_pending:
            self._retry_pending = False
            self.api.queue_autostart(True)
            return
        self._autostart_off += 1
        if self._autostart_off >= 2:
            self._finish(
                "the queue's autostart was turned off (the queue stopped) before run "
                f"{self.expected_seq} ended"
            )

    def _submit(self, point: dict[str, float], seq: int) -> dict[str, Any]:
        item = self.plan_item(point, seq)
        self.api.item_add(item)
        self.submitted.append(item)
        self.expected_seq = seq
        return item

    def _finish(self, reason: str) -> None:
        self.finished, self.reason = True, reason
        log.info("campaign %s finished: %s", self.campaign, reason)


async def follow_bus(
    agent: QueueAgent,
    connection: NatsConnection,
    instrument: str,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Feed ``agent`` the instrument's documents (core subscription) until ``stop`` is set
    or the campaign finishes. ``on_ready`` is called once the subscription is in place:
    start the campaign after that, so its first documents cannot be missed. Queue calls
    are blocking HTTP: they run in a thread."""
    nc = await connection.connect()
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        try:
            name, doc = decode(msg.data)
        except DecodeError:
            return  # split parts / foreign payloads: not a whole document
        await asyncio.to_thread(agent.on_document, name, doc)
        if agent.finished:
            done.set()

    sub = await nc.subscribe(documents_subject(instrument), cb=on_msg)
    await nc.flush()
    if on_ready is not None:
        on_ready()
    try:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(done.wait())]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
    finally:
        await sub.unsubscribe()
        await nc.drain()


def run_campaign(
    pod: LoadedPod,
    agent: Agent,
    *,
    detectors: Sequence[str],
    motors: Sequence[str],
    first_point: Mapping[str, float],
    instrument: str | None = None,
    name: str = "agent",
) -> QueueAgent:
    """Blocking: queue the first point, then one plan per decision until the agent stops.
    Returns the finished :class:`QueueAgent` (``submitted``, ``reason``)."""
    inst = instrument or pod.config.instrument_name
    api = queue_api(pod, inst)
    qa = QueueAgent(agent, api, detectors=detectors, motors=motors, name=name)

    async def main() -> None:
        started, stop = asyncio.Event(), asyncio.Event()
        follower = asyncio.ensure_future(
            follow_bus(
                qa,
                NatsConnection.from_pod(
                    pod, inst, role="reader", name=f"beampod-queue-agent-{inst}"
                ),
                inst,
                stop,
                started.set,
            )
        )
        ready = asyncio.ensure_future(started.wait())
        await asyncio.wait([follower, ready], return_when=asyncio.FIRST_COMPLETED)
        if follower.done():
            ready.cancel()
            follower.result()  # raises why it could not subscribe
            return
        await asyncio.to_thread(qa.start, first_point)
        watcher = asyncio.ensure_future(watch_queue(qa, stop))
        try:
            await follower
        finally:
            watcher.cancel()

    try:
        asyncio.run(main())
    finally:
        api.close()
    return qa


async def watch_queue(agent: QueueAgent, stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """Hand ``agent`` the queue server's status every ``interval_s``; set ``stop`` once
    the campaign finished from what the status showed."""
    while not agent.finished:
        await asyncio.sleep(interval_s)
        try:
            status = await asyncio.to_thread(agent.api.status)
        except Exception as exc:  # noqa: BLE001 - any client error: look again next time
            log.warning("queue status unavailable: %s", exc)
            continue
        await asyncio.to_thread(agent.on_queue_status, status)
    stop.set()


def queue_api(pod: LoadedPod, instrument: str | None = None) -> Any:
    """An ``REManagerAPI`` (HTTP) for the queue server of ``instrument`` (default: the
    default instrument's) with its control key."""
    from bluesky_queueserver_api.http import REManagerAPI

    server = queue_server(pod, instrument)
    host = instrument_address(pod.config, server.instrument)
    api = REManagerAPI(http_server_uri=f"http://{host}:{server.settings.http_port}")
    api.set_authorization_key(api_key=server.control_key.get_secret_value())
    return api


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool | str)
    except (TypeError, ValueError):
        return False
