"""A LiveTable of the queue worker's runs, in the session that serves the queue.

The worker runs plans in its own process, so the session's RunEngine never sees their
documents; they reach the bus like any run. This follows the instrument's documents
subject with an ephemeral ordered consumer (what ``beampod tail --table`` does) in a
background thread and feeds bluesky's BestEffortCallback with plots disabled, which
prints one LiveTable per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from beampod.config import LoadedPod
from beampod.errors import BeampodError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 15.0


def headless_best_effort() -> Callable[[str, dict[str, Any]], Any]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from bluesky.callbacks.best_effort import BestEffortCallback

    bec = BestEffortCallback()
    bec.disable_plots()
    return bec


class BusTable:
    """``start()`` follows the bus from now on; ``wait_for_runs(uids)`` waits until their
    stop documents were shown; ``close()`` stops following."""

    def __init__(
        self,
        pod: LoadedPod,
        *,
        callback: Callable[[str, dict[str, Any]], Any] | None = None,
        name: str = "beampod-queue-table",
    ) -> None:
        self._pod = pod
        self._name = name
        self._callback = callback
        self._ready = threading.Event()
        self._done = threading.Condition()
        self._stopped: set[str] = set()
        self._error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str | None:
        """Start following; None once the consumer exists, else why there is no table."""
        if self._callback is None:
            self._callback = headless_best_effort()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            self._error = f"the bus did not answer within {READY_TIMEOUT_S:.0f} s"
        return self._error

    def wait_for_runs(self, run_uids: Iterable[str], timeout_s: float = 10.0) -> bool:
        """Wait until the stop document of each run was shown (False on timeout)."""
        wanted = set(run_uids)
        with self._done:
            return self._done.wait_for(
                lambda: wanted <= self._stopped or self._error is not None, timeout_s
            )

    def close(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(10)

    # -- the following thread ----------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels it
            asyncio.run(self._follow())

    async def _follow(self) -> None:
        from beampod.bus import NatsConnection, tail

        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        instrument = self._pod.config.instrument_name
        try:
            conn = NatsConnection.from_pod(self._pod, instrument, role="reader", name=self._name)
            async for name, doc in tail(conn, instrument, on_ready=self._ready.set):
                self._show(name, doc)
        except BeampodError as exc:
            self._fail(str(exc))

    def _show(self, name: str, doc: dict[str, Any]) -> None:
        assert self._callback is not None
        try:
            self._callback(name, doc)
        except Exception as exc:  # noqa: BLE001 - a display problem must not end serving
            log.warning("live table: %s document not shown: %s", name, exc)
        if name == "stop":
            with self._done:
                self._stopped.add(str(doc.get("run_start", "")))
                self._done.notify_all()

    def _fail(self, reason: str) -> None:
        with self._done:
            self._error = reason
            self._done.notify_all()
        self._ready.set()
