"""An instrument's queue over its HTTP API (bluesky-httpserver behind beampod's gate).
In a pod of several instruments the console drives each instrument's own queue server
(``queue-http-<name>``) with that server's control key (docs/web.md).

The control key stays in this process: browsers never see it. What a browser may do
is decided by its session role before anything is sent here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from beampod.config import LoadedPod, QueueServer, instrument_address, queue_servers
from beampod.errors import BeampodError


class QueueUnavailable(BeampodError):
    """The queue HTTP API cannot be reached."""


class QueueRefusal(Exception):
    """The queue answered 4xx/5xx or ``success: false``; ``message`` is for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def console_queue(pod: LoadedPod, instrument: str | None = None) -> QueueServer | None:
    """The queue server of ``instrument`` (default: the default instrument), if any."""
    return queue_servers(pod).get(instrument or pod.config.instrument_name)


def queue_keys(pod: LoadedPod, instrument: str | None = None) -> tuple[str, str] | None:
    """(control, observer) keys of an instrument's queue: they are also its login keys
    on the console. A pod of one instrument without a queue: the pod-wide ``queue_*``
    keys; an instrument of several without a queue: None (no key logs in for it)."""
    server = console_queue(pod, instrument)
    if server is not None:
        return server.control_key.get_secret_value(), server.observer_key.get_secret_value()
    if len(pod.config.instruments) > 1:
        return None
    s = pod.secrets
    return s.queue_control_key.get_secret_value(), s.queue_observer_key.get_secret_value()


def queue_url(pod: LoadedPod, instrument: str | None = None) -> str:
    server = console_queue(pod, instrument)
    port = server.settings.http_port if server else pod.config.queue.http_port
    host = instrument_address(pod.config, server.instrument if server else None)
    return f"http://{host}:{port}"


class QueueApi:
    def __init__(
        self,
        base_url: str,
        control_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"ApiKey {control_key}"},
            timeout=timeout_s,
            trust_env=False,
            transport=transport,
        )

    @classmethod
    def of(cls, pod: LoadedPod, instrument: str | None = None) -> QueueApi:
        """The queue HTTP API of ``instrument``, with its control key (each instrument's
        queue server takes only its own keys)."""
        keys = queue_keys(pod, instrument)
        if keys is None:
            return NoQueue(instrument or pod.config.instrument_name)
        return cls(queue_url(pod, instrument), keys[0])

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            if method == "GET":
                resp = await self._client.get(path)
            else:
                resp = await self._client.post(path, json=body or {})
        except httpx.HTTPError as exc:
            raise QueueUnavailable(f"the queue API does not answer: {exc}") from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 400:
            raise QueueRefusal(resp.status_code, _detail(payload) or resp.reason_phrase)
        if isinstance(payload, dict) and payload.get("success") is False:
            raise QueueRefusal(422, str(payload.get("msg") or "refused by the queue server"))
        return payload

    # -- reading -----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/api/status"))

    async def queue(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/api/queue/get"))

    async def history(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/api/history/get")).get("items") or [])

    async def plans_allowed(self) -> dict[str, Any]:
        return dict((await self._call("GET", "/api/plans/allowed")).get("plans_allowed") or {})

    async def devices_allowed(self) -> dict[str, Any]:
        return dict((await self._call("GET", "/api/devices/allowed")).get("devices_allowed") or {})

    # -- changing ----------------------------------------------------------------------

    async def add(self, item: dict[str, Any], *, front: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"item": item}
        if front:
            body["pos"] = "front"
        return dict(await self._call("POST", "/api/queue/item/add", body))

    async def execute(self, item: dict[str, Any]) -> dict[str, Any]:
        """Run ``item`` now, without touching the queue (the manager must be idle)."""
        return dict(await self._call("POST", "/api/queue/item/execute", {"item": item}))

    async def run_now_or_next(self, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run ``item`` now if the manager is idle, else put it at the front of the queue
        so that it runs right after the current plan. Returns (mode, the item as queued).

        Adding is not enough on its own: after a plan the manager reads the queue's
        length, and turns idle if it is empty, while an item being added is still on its
        way to Redis. That item would then wait for a start nobody gives. So after adding,
        this watches the manager until the item runs or is known to come next; if the
        manager turned idle with the item still queued, the item is taken out and run.
        """
        if _can_execute(await self.status()):
            try:
                return "running", dict((await self.execute(item)).get("item") or {})
            except QueueRefusal as exc:  # started meanwhile by someone else: queue it
                if "busy" not in str(exc).lower() and "idle" not in str(exc).lower():
                    raise
        added = dict((await self.add(item, front=True)).get("item") or {})
        uid = added.get("item_uid")
        deadline = time.monotonic() + SETTLE_S
        while uid and time.monotonic() < deadline:
            status = await self.status()
            state, running = status.get("manager_state"), status.get("running_item_uid")
            if running == uid:
                return "running", added
            if state == "idle" and status.get("worker_environment_exists"):
                if uid not in await self._queued_uids():
                    return "running", added  # it ran already
                await self.remove(uid)
                try:
                    return "running", dict((await self.execute(item)).get("item") or {})
                except QueueRefusal:
                    # Something started meanwhile: back to the front, as asked.
                    return QUEUED, dict((await self.add(item, front=True)).get("item") or {})
            if state == "idle":
                return CLOSED, added
            if running or state not in ("executing_queue", "starting_queue"):
                return QUEUED, added  # a plan runs (or is paused): this item is next
            await asyncio.sleep(SETTLE_POLL_S)
        return QUEUED, added

    async def _queued_uids(self) -> set[str]:
        return {str(i.get("item_uid")) for i in (await self.queue()).get("items") or []}

    async def remove(self, uid: str) -> None:
        await self._call("POST", "/api/queue/item/remove", {"uid": uid})

    async def action(self, name: str) -> None:
        """One of :data:`ACTIONS` (start, stop, pause, resume, abort...)."""
        path, body = ACTIONS[name]
        await self._call("POST", path, body)


class NoQueue(QueueApi):
    """An instrument without a queue server: every call says so."""

    def __init__(self, instrument: str) -> None:
        super().__init__("http://127.0.0.1:9", "")
        self.instrument = instrument

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raise QueueUnavailable(
            f"instrument {self.instrument} has no queue server (its queue is not enabled "
            "in the pod's config.yaml)"
        )


ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("/api/queue/start", {}),
    "stop": ("/api/queue/stop", {}),
    "pause": ("/api/re/pause", {"option": "deferred"}),
    "pause-now": ("/api/re/pause", {"option": "immediate"}),
    "resume": ("/api/re/resume", {}),
    "abort": ("/api/re/abort", {}),
    "halt": ("/api/re/halt", {}),
    "clear": ("/api/queue/clear", {}),
    "open-env": ("/api/environment/open", {}),
}


QUEUED = "queued at the front"
CLOSED = "queued at the front; the environment is closed: open it, then start the queue"
# How long a just-added item is watched for the manager's turn to idle (it settles in a
# few of its loop turns; a plan that is running is seen at the first look).
SETTLE_S = 5.0
SETTLE_POLL_S = 0.05


def _can_execute(status: dict[str, Any]) -> bool:
    return status.get("manager_state") == "idle" and bool(status.get("worker_environment_exists"))


def _detail(payload: Any) -> str:
    if isinstance(payload, dict):
        detail = payload.get("detail", payload.get("msg"))
        if isinstance(detail, list):
            return "; ".join(str(d) for d in detail)
        if detail:
            return str(detail)
    return ""
