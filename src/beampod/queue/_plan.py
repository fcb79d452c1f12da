"""``RE(queue_server_plan())``: bluesky-pods' session-side queue loop, on today's queue server.

In the bluesky-pods demo, the session's RunEngine ran a plan that pulled plans off an HTTP queue and
ran them itself. Today the queue server's RE Manager owns a worker process with its own
RunEngine (built by the same ``make_run_engine``, so its documents reach the same bus,
store and live views). The session plan therefore *drives* the queue instead of
executing it:

1. open the worker environment if it is closed;
2. switch on the queue's autostart, so anything POSTed is run as soon as it arrives
   (what "post to that end point and watch the scans run" meant); plans already queued
   start too;
3. report progress (which plan runs, how each ended) until stopped, or until the queue
   is empty and idle with ``until_empty=True``;
4. when the plan ends for any reason (Ctrl-C then ``RE.abort()``, ``RE.stop()``), switch
   autostart off again; a plan already running in the worker finishes normally.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from beampod.config import LoadedPod, PodHome, load_pod
from beampod.queue._client import QueueClient


def queue_server_plan(
    pod: LoadedPod | None = None,
    *,
    until_empty: bool = False,
    poll_s: float = 0.5,
    report: Callable[[str], None] = print,
) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Serve the pod's queue from the session; returns the history items that finished
    while it ran."""
    import bluesky.plan_stubs as bps

    pod = pod or load_pod(PodHome.resolve(None))
    client = QueueClient(pod)
    finished: list[dict[str, Any]] = []
    try:
        client.open_environment(progress=report)
        seen_history = client.status()["items_in_history"]
        # Autostart also starts a queue that already holds plans; an explicit
        # queue_start here would race with it ("RE Manager is busy").
        client.call("queue_autostart", True)
        status = client.status()
        report(
            f"queue server: serving {client.uri} "
            f"({status['items_in_queue']} queued); POST plans to /qs/add_to_queue or "
            f"/api/queue/item/add"
        )
        running_uid = None
        while True:
            status = client.status()
            uid = status.get("running_item_uid")
            if uid and uid != running_uid:
                _, item = client.queue()
                report(f"queue server: running {_describe(item)}")
            running_uid = uid
            if status["items_in_history"] > seen_history:
                new = client.history()[seen_history:]
                seen_history = status["items_in_history"]
                for item in new:
                    result = item.get("result", {})
                    report(
                        f"queue server: {_describe(item)} -> {result.get('exit_status')}"
                        + (f" ({result.get('msg')})" if result.get("msg") else "")
                    )
                finished += new
            if until_empty and not status["items_in_queue"] and status["manager_state"] == "idle":
                return finished
            # A checkpoint per poll: one Ctrl-C (a deferred pause) pauses here, then
            # RE.abort()/RE.stop() end the plan and switch autostart off.
            yield from bps.checkpoint()
            yield from bps.sleep(poll_s)
    finally:
        # Also on GeneratorExit (RE.abort/stop): stop pulling new plans off the queue.
        try:
            client.call("queue_autostart", False)
        finally:
            client.close()


def _describe(item: dict[str, Any]) -> str:
    args = ", ".join(repr(a) for a in item.get("args", []))
    kwargs = ", ".join(f"{k}={v!r}" for k, v in (item.get("kwargs") or {}).items())
    return f"{item.get('name', '?')}({', '.join(x for x in (args, kwargs) if x)})"
