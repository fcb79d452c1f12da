"""The first plans after the worker environment opens wait for its devices to connect.

ophyd's ``EpicsMotor`` refuses a move at once (``DisconnectedError``) while its channels
still connect. A plan started right after the environment opened (autostart, a script
that opens and starts) failed that way on a busy machine, 0.16 s after the opening.
Waiting for every device while the environment opens would cost every ``up -d`` that
time (the queue is ready once its environment is), ~0.6 s on two busy cores; so the
wait is a RunEngine preprocessor instead: a plan that starts within ``window_s`` of the
opening, before the devices were once seen connected, first waits for them (one
deadline, in a thread, the RunEngine's loop free), and names those that did not
connect. After that, plans run as in any bluesky environment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Generator
from typing import Any

SETTLE_TIMEOUT_S = 5.0
SETTLE_WINDOW_S = 60.0

Plan = Generator[Any, Any, Any]


def settle_first_plans(
    devices: Collection[Any],
    unconnected: Callable[[Collection[Any], float], list[str]],
    *,
    timeout_s: float = SETTLE_TIMEOUT_S,
    window_s: float = SETTLE_WINDOW_S,
    report: Callable[[str], None] | None = None,
) -> Callable[[Plan], Plan]:
    """A RunEngine preprocessor (``RE.preprocessors.append(...)``); ``unconnected``
    waits up to its timeout and returns the devices that are not connected."""
    from bluesky import Msg

    opened = time.monotonic()
    settled = False

    def wait_first(plan: Plan) -> Plan:
        nonlocal settled
        if settled or time.monotonic() - opened > window_s:
            return (yield from plan)
        settled = True  # one wait only, whatever it finds

        def waiting() -> asyncio.Future[list[str]]:
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(None, unconnected, devices, timeout_s)

        (task,) = yield Msg("wait_for", None, [waiting])
        missing = task.result()
        if missing:
            (report or _print_now)(
                f"beampod: WARNING: not connected after {timeout_s:g} s (they connect when "
                f"their IOC answers): {'; '.join(missing)}"
            )
        return (yield from plan)

    return wait_first


def _print_now(text: str) -> None:
    print(text, flush=True)  # the worker's log, in order with the queue server's lines
