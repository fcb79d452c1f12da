"""A small client of the pod's queue HTTP API (bluesky-queueserver-api over HTTP).

It turns the library's exceptions into beampod errors with one readable line, and
submits plan expressions through the safe parser (never ``eval``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from beampod.config import LoadedPod, queue_server
from beampod.errors import BeampodError, PlanError, PodNotRunningError, UsageError
from beampod.queue._files import http_uri
from beampod.queue._values import check_values

Progress = Callable[[str], None]


class QueueClient:
    """``with QueueClient(pod) as q: q.add("count([pinhole])")``; the queue server of
    ``instrument`` (default: the default instrument's), its control key by default."""

    def __init__(
        self,
        pod: LoadedPod,
        *,
        instrument: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        from bluesky_queueserver_api.http import REManagerAPI

        self.server = queue_server(pod, instrument)
        self._uri = http_uri(pod, self.server)
        self._rm = REManagerAPI(http_server_uri=self._uri, timeout=timeout_s)
        key = api_key if api_key is not None else self.server.control_key.get_secret_value()
        if key:
            self._rm.set_authorization_key(api_key=key)

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rm.close()

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def api(self) -> Any:
        """The underlying ``REManagerAPI`` for anything not wrapped here."""
        return self._rm

    # -- calls -------------------------------------------------------------------------

    def call(self, method: str, *args: Any, submission: bool = False, **kwargs: Any) -> Any:
        """``REManagerAPI.<method>(...)`` with errors as beampod errors."""
        rm = self._rm
        try:
            return getattr(rm, method)(*args, **kwargs)
        except rm.HTTPRequestError as exc:
            raise PodNotRunningError(
                f"the queue HTTP API at {self._uri} is not reachable ({type(exc).__name__}); "
                f"is the pod up? (`beampod status`)"
            ) from None
        except rm.HTTPClientError as exc:
            detail = _detail(exc)
            error = PlanError if submission else UsageError
            raise error(f"{method}: {detail}") from None
        except rm.RequestFailedError as exc:
            error = PlanError if submission else UsageError
            raise error(f"{method}: {_failed(exc)}") from None
        except rm.HTTPServerError as exc:
            raise BeampodError(f"{method}: queue server error: {_detail(exc)}") from None
        except rm.RequestTimeoutError as exc:
            raise BeampodError(
                f"{method}: the queue server did not answer in time ({exc})"
            ) from None

    def status(self) -> dict[str, Any]:
        return dict(self.call("status", reload=True))

    def add(self, expression: str, *, pos: int | str | None = None) -> dict[str, Any]:
        """Parse ``expression`` against the allowed plans/devices and enqueue it."""
        from bluesky_queueserver_api import BPlan

        from beampod.instrument import parse_plan_call

        plans = self.call("plans_allowed")["plans_allowed"]
        devices = self.call("devices_allowed")["devices_allowed"]
        call = parse_plan_call(expression, plans, devices)
        # Before JSON: it would silently turn ``md={1: 2}`` into ``{"1": 2}``.
        problems = check_values({"args": list(call.args), "kwargs": dict(call.kwargs)})
        if problems:
            raise PlanError(f"item_add: {'; '.join(problems)}")
        item = BPlan(call.plan, *_plain(call.args), **_plain(call.kwargs))
        kwargs = {"pos": pos} if pos is not None else {}
        return dict(self.call("item_add", item, submission=True, **kwargs)["item"])

    def queue(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        resp = self.call("queue_get", reload=True)
        return list(resp["items"]), dict(resp.get("running_item") or {})

    def history(self) -> list[dict[str, Any]]:
        return list(self.call("history_get", reload=True)["items"])

    # -- environment and queue control ---------------------------------------------------

    def open_environment(
        self, *, timeout_s: float = 120.0, progress: Progress | None = None
    ) -> bool:
        """Open the environment if closed; True if this call opened it."""
        st = self.status()
        if st["worker_environment_exists"]:
            return False
        if st["manager_state"] != "creating_environment":
            self.call("environment_open")
        self.wait(
            lambda s: s["manager_state"] != "creating_environment",
            "the worker environment to open",
            timeout_s,
            progress,
        )
        if not self.status()["worker_environment_exists"]:
            raise BeampodError(
                "the worker environment did not open; see "
                f"`beampod logs {self.server.manager_service}`"
            )
        return True

    def close_environment(
        self, *, timeout_s: float = 60.0, progress: Progress | None = None
    ) -> bool:
        if not self.status()["worker_environment_exists"]:
            return False
        self.call("environment_close")
        self.wait(
            lambda s: not s["worker_environment_exists"],
            "the worker environment to close",
            timeout_s,
            progress,
        )
        return True

    def start(self, *, progress: Progress | None = None) -> None:
        self.open_environment(progress=progress)
        self.call("queue_start")

    def abort(self, *, timeout_s: float = 30.0, progress: Progress | None = None) -> None:
        """Abort the running plan (pausing it first, as the RunEngine requires)."""
        st = self.status()
        if st["manager_state"] == "executing_queue":
            self.call("re_pause", "immediate")
            self.wait(
                lambda s: s["manager_state"] == "paused", "the plan to pause", timeout_s, progress
            )
        elif st["manager_state"] != "paused":
            raise UsageError(f"nothing to abort: the manager is {st['manager_state']}")
        self.call("re_abort")

    def wait(
        self,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
        timeout_s: float,
        progress: Progress | None = None,
    ) -> None:
        """Wait for a status condition, reporting every few seconds."""
        rm = self._rm
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        while True:
            step = min(3.0, deadline - time.monotonic())
            if step <= 0:
                raise BeampodError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            try:
                rm.wait_for_condition(condition, timeout=step)
                return
            except rm.WaitTimeoutError:
                if progress is not None:
                    progress(f"waiting for {what} ({time.monotonic() - started:.0f} s)")


def _plain(value: Any) -> Any:
    """Tuples to lists and device names to plain strings: the queue's JSON form."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _detail(exc: Any) -> str:
    resp = getattr(exc, "response", None)
    try:
        body = resp.json() if resp is not None else None
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = "; ".join(str(d) for d in detail)
    status = f"HTTP {resp.status_code}: " if resp is not None else ""
    return status + str(detail or exc)


def _failed(exc: Any) -> str:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict) and resp.get("msg"):
        return str(resp["msg"])
    return str(exc)
