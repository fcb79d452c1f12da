"""The default instrument's queue over its HTTP API (bluesky-httpserver behind
beampod's gate). In a pod of several instruments the console drives the default
instrument's queue server only, with that server's keys (docs/web.md).

The control key stays in this process: browsers never see it. What a browser may do
is decided by its session role before anything is sent here.
"""

from __future__ import annotations

from typing import Any

import httpx

from beampod.config import LoadedPod, QueueServer, queue_servers
from beampod.errors import BeampodError
from beampod.sim import probe_host


class QueueUnavailable(BeampodError):
    """The queue HTTP API cannot be reached."""


class QueueRefusal(Exception):
    """The queue answered 4xx/5xx or ``success: false``; ``message`` is for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def console_queue(pod: LoadedPod) -> QueueServer | None:
    """The queue server the console drives: the default instrument's, if it has one."""
    return queue_servers(pod).get(pod.config.instrument_name)


def queue_keys(pod: LoadedPod) -> tuple[str, str]:
    """(control, observer) keys of the console's queue: they are also the console's
    login keys. Without a queue, the pod-wide ``queue_*`` keys."""
    server = console_queue(pod)
    control = server.control_key if server else pod.secrets.queue_control_key
    observer = server.observer_key if server else pod.secrets.queue_observer_key
    return control.get_secret_value(), observer.get_secret_value()


def queue_url(pod: LoadedPod) -> str:
    server = console_queue(pod)
    port = server.settings.http_port if server else pod.config.queue.http_port
    return f"http://{probe_host(pod.config.pod.bind)}:{port}"


class QueueApi:
    def __init__(self, base_url: str, control_key: str, timeout_s: float = 10.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"ApiKey {control_key}"},
            timeout=timeout_s,
            trust_env=False,
        )

    @classmethod
    def of(cls, pod: LoadedPod) -> QueueApi:
        return cls(queue_url(pod), queue_keys(pod)[0])

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

    async def remove(self, uid: str) -> None:
        await self._call("POST", "/api/queue/item/remove", {"uid": uid})

    async def action(self, name: str) -> None:
        """One of :data:`ACTIONS` (start, stop, pause, resume, abort...)."""
        path, body = ACTIONS[name]
        await self._call("POST", path, body)


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


def _detail(payload: Any) -> str:
    if isinstance(payload, dict):
        detail = payload.get("detail", payload.get("msg"))
        if isinstance(detail, list):
            return "; ".join(str(d) for d in detail)
        if detail:
            return str(detail)
    return ""
