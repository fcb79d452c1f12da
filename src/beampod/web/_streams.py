"""Live and Devices: pages, their server-sent event streams, and moving a device
through the queue."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from beampod.web._console import Console
from beampod.web._live import LiveFeed
from beampod.web._queueapi import QueueRefusal, QueueUnavailable

HEARTBEAT_S = 15.0


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


# -- live ----------------------------------------------------------------------------


async def live_page(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    v.start_live()  # another instrument's feed starts when its page is first opened
    return c.page(request, "live.html", {"link": link_text(v.live.status())})


def link_text(status: dict[str, Any], browser_connected: bool = True) -> tuple[str, str]:
    """(state, words) of the Live page's link indicator; console.js says the same."""
    if not browser_connected:
        return "reconnecting", "reconnecting to the console…"
    if status["bus"] == "connecting":
        return "reconnecting", "connecting to the bus…"
    if status["bus"] == "reconnecting":
        why = f" ({status['error']})" if status.get("error") else ""
        return "reconnecting", f"the console is reconnecting to the bus{why}"
    if not status.get("run"):
        return "waiting", "connected to the bus · no run yet"
    if status.get("running"):
        return "connected", "connected to the bus · receiving the run"
    return "connected", "connected to the bus · waiting for the next run"


async def live_events(
    feed: LiveFeed,
    queue: asyncio.Queue[dict[str, Any] | None],
    backlog: list[dict[str, Any]],
    heartbeat_s: float,
) -> AsyncIterator[dict[str, Any]]:
    """What one browser receives: ``hello`` (the link now), the run so far,
    ``caught-up``, then live messages, with the link's ``status`` repeated every
    ``heartbeat_s`` of silence (the browser's proof that the stream is alive)."""
    yield {**feed.status(), "type": "hello", "heartbeat_s": heartbeat_s}
    for message in backlog:
        yield message
    # What follows arrives as it happens (the run so far came before this).
    yield {"type": "caught-up"}
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), heartbeat_s)
        except TimeoutError:
            yield feed.status()
            continue
        if item is None:  # too slow: end; the browser reconnects
            return
        yield item


async def live_stream(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    v.start_live()
    feed = v.live
    queue = feed.subscribe()
    backlog = feed.snapshot()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for message in live_events(feed, queue, backlog, c.heartbeat_s):
                yield sse(message)
        finally:
            feed.unsubscribe(queue)

    return _stream(body())


# -- devices -------------------------------------------------------------------------


FIRST_VISIT_WAIT_S = 20.0


async def devices_page(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    panel = v.devices
    if panel is not None:
        panel.start()  # the first visit loads the devices (see DevicePanel.start)
        # ...so that visit waits for them (seconds: ophyd's import, the IOCs' connect)
        # rather than showing an empty table; past this it says "reload in a moment".
        await asyncio.to_thread(panel.loaded.wait, FIRST_VISIT_WAIT_S)
    rows = panel.device_rows() if panel else []
    movable: dict[str, bool] = {}
    try:
        allowed = await v.queue.devices_allowed()
        movable = {n: bool((d or {}).get("is_movable")) for n, d in allowed.items()}
    except (QueueUnavailable, QueueRefusal):
        pass
    return c.page(
        request,
        "devices.html",
        {
            "rows": rows,
            "movable": movable,
            "devices_error": panel.error if panel else "the Devices panel is off",
            "loading": bool(panel and not panel.loaded.is_set()),
        },
    )


async def devices_stream(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    panel = c.view(request).devices
    if panel is None:
        return JSONResponse({"detail": "the Devices panel is off"}, status_code=404)
    panel.start()
    sub = panel.listen(asyncio.get_running_loop())
    backlog = panel.snapshot()

    async def body() -> AsyncIterator[bytes]:
        try:
            for message in backlog:
                yield sse(message)
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield sse(message)
        finally:
            panel.unlisten(sub)

    return _stream(body())


def parse_position(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


async def move(request: Request) -> Response:
    """``mv(device, position)`` through the queue: run now if the manager is idle
    (``item/execute`` leaves the queue alone), else put it at the front of the queue,
    so it runs right after the current plan and never collides with it."""
    c = _console(request)
    form = await request.form()
    c.require(request, control=True, form=form)
    queue = c.view(request).queue
    device = str(form.get("device", ""))
    try:
        position = parse_position(str(form.get("position", "")))
    except ValueError:
        return JSONResponse(
            {"detail": f"position {form.get('position')!r} is not a number"}, status_code=422
        )
    item = {"item_type": "plan", "name": "mv", "args": [device, position], "kwargs": {}}
    try:
        mode, queued = await queue.run_now_or_next(item)
        return JSONResponse({"mode": mode, "item": queued})
    except QueueRefusal as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    except QueueUnavailable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503)
