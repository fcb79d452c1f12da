"""``to_brains`` and ``from_brains``: the two objects the bluesky-pods demo passes to the plan.

``to_brains`` is a RunEngine document callback (the plan subscribes it for its own
duration, as the demo's did): it keeps the primary-stream events of the plan's runs and
turns them into observations, so what the agent is told comes from the documents the
RunEngine really emitted. ``from_brains`` holds the connection to the agent service and
the loop settings (deadline, policy, transport).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from beampod.adaptive._client import AgentClient
from beampod.adaptive._protocol import Batch, Observation
from beampod.adaptive._settings import LoopSettings, loop_settings, redis_params
from beampod.bus import NatsConnection
from beampod.config import LoadedPod


@dataclass
class _Run:
    start: dict[str, Any]
    events: list[Observation] = field(default_factory=list)
    taken: int = 0


@dataclass
class _Watch:
    motors: list[str]
    dets: list[str]


class ToBrains:
    """Collects what each adaptive run measured. Subscribe-able: ``__call__(name, doc)``."""

    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}
        self._runs: dict[str, _Run] = {}  # run uid -> run
        self._by_batch: dict[tuple[str, int | None], str] = {}
        self._descriptors: dict[str, tuple[str, dict[str, list[str]]]] = {}
        self._lock = threading.Lock()

    def watch(self, plan_id: str, motors: Sequence[str], dets: Sequence[str]) -> None:
        with self._lock:
            self._watches[plan_id] = _Watch(list(motors), list(dets))

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            if name == "start":
                plan_id = doc.get("batch_id")
                if plan_id in self._watches:
                    self._runs[doc["uid"]] = _Run(doc)
                    self._by_batch[(plan_id, doc.get("batch_count"))] = doc["uid"]
            elif name == "descriptor":
                if doc.get("run_start") in self._runs and doc.get("name") == "primary":
                    self._descriptors[doc["uid"]] = (doc["run_start"], doc.get("object_keys", {}))
            elif name == "event":
                self._add(doc["descriptor"], [doc["data"]])
            elif name == "event_page":
                data = doc["data"]
                n = len(doc["seq_num"])
                self._add(doc["descriptor"], [{k: v[i] for k, v in data.items()} for i in range(n)])

    def _add(self, descriptor: str, rows: list[dict[str, Any]]) -> None:
        found = self._descriptors.get(descriptor)
        if found is None:
            return
        run_uid, object_keys = found
        run = self._runs[run_uid]
        watch = self._watches[run.start["batch_id"]]
        for data in rows:
            x = {m: float(data[m]) for m in watch.motors if _number(data.get(m))}
            y = {
                k: float(data[k])
                for d in watch.dets
                for k in object_keys.get(d, [])
                if _number(data.get(k))
            }
            run.events.append(Observation(x=x, y=y))

    def take_run(self, plan_id: str, batch_count: int) -> tuple[str, Batch]:
        """(run uid, observations) of the plan's run ``batch_count``; forgets the run."""
        with self._lock:
            uid = self._by_batch.pop((plan_id, batch_count), "")
            run = self._runs.pop(uid, None)
            self._forget_descriptors(uid)
        return uid, tuple(run.events) if run else ()

    def take_events(self, plan_id: str) -> Batch:
        """Observations of the plan's (single) run not taken yet (``per_event`` mode)."""
        with self._lock:
            uid = self._by_batch.get((plan_id, None), "")
            run = self._runs.get(uid)
            if run is None:
                return ()
            new, run.taken = run.events[run.taken :], len(run.events)
        return tuple(new)

    def forget(self, plan_id: str) -> None:
        with self._lock:
            self._watches.pop(plan_id, None)
            for key in [k for k in self._by_batch if k[0] == plan_id]:
                uid = self._by_batch.pop(key)
                self._runs.pop(uid, None)
                self._forget_descriptors(uid)

    def _forget_descriptors(self, run_uid: str) -> None:
        for d in [d for d, (r, _) in self._descriptors.items() if r == run_uid]:
            del self._descriptors[d]


class FromBrains:
    """The agent's side of the conversation: connection + loop settings."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    @property
    def settings(self) -> LoopSettings:
        return self.client.settings

    def close(self) -> None:
        self.client.close()


def make_brains(
    pod: LoadedPod, instrument: str | None = None, **overrides: Any
) -> tuple[ToBrains, FromBrains]:
    """The session's ``to_brains, from_brains`` for the pod's agent service.

    ``overrides`` replace loop settings from the config (``reply_transport``,
    ``deadline_s``, ``policy``, ``max_retries``, ``mode``, ``name``). Nothing connects
    until the first adaptive plan runs.
    """
    inst = instrument or pod.config.instrument_name
    settings = loop_settings(pod, inst).with_overrides(**overrides)
    conn = NatsConnection.from_pod(pod, inst, role="publisher", name=f"beampod-adaptive-{inst}")
    redis = redis_params(pod) if settings.reply_transport == "redis" else None
    return ToBrains(), FromBrains(AgentClient(conn, inst, settings, redis=redis))


def _number(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool | str)
    except (TypeError, ValueError):
        return False
