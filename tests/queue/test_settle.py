"""The worker's first plan after its environment opens waits for the devices to connect
(``beampod.queue._settle``), with a real RunEngine and the real ``unconnected_devices``."""

from __future__ import annotations

import threading
from typing import Any

import bluesky.plan_stubs as bps
from bluesky import RunEngine

from beampod.instrument import unconnected_devices
from beampod.queue._settle import settle_first_plans


class SlowDevice:
    """Connects when ``connect()`` is called; ``wait_for_connection`` as ophyd's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = threading.Event()
        self.waiting = threading.Event()
        self.waits = 0

    def wait_for_connection(self, timeout: float) -> None:
        self.waits += 1
        self.waiting.set()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"{self.name} not connected")


def plan(log: list[str], device: SlowDevice) -> Any:
    log.append(f"plan starts, {device.name} connected: {device.connected.is_set()}")
    yield from bps.null()


def test_the_first_plan_waits_for_the_devices_and_the_next_does_not() -> None:
    motor = SlowDevice("motor")
    reports: list[str] = []
    RE = RunEngine({})
    RE.preprocessors.append(settle_first_plans([motor], unconnected_devices, report=reports.append))

    def ioc_answers() -> None:  # once the plan waits for it, from another thread (as CA)
        if motor.waiting.wait(10):
            motor.connected.set()

    threading.Thread(target=ioc_answers).start()
    log: list[str] = []
    RE(plan(log, motor))
    RE(plan(log, motor))
    assert log == ["plan starts, motor connected: True"] * 2
    assert motor.waits == 1 and reports == []


def test_a_device_that_never_connects_is_named_and_the_plan_runs() -> None:
    motor, det = SlowDevice("motor"), SlowDevice("det")
    det.connected.set()
    reports: list[str] = []
    RE = RunEngine({})
    RE.preprocessors.append(
        settle_first_plans([motor, det], unconnected_devices, timeout_s=0.2, report=reports.append)
    )
    log: list[str] = []
    RE(plan(log, det))
    assert log == ["plan starts, det connected: True"]
    assert len(reports) == 1 and "not connected after 0.2 s" in reports[0]
    assert "motor (motor not connected)" in reports[0] and "det" not in reports[0].split(":", 2)[2]


def test_plans_long_after_the_opening_do_not_wait() -> None:
    motor = SlowDevice("motor")
    RE = RunEngine({})
    RE.preprocessors.append(settle_first_plans([motor], unconnected_devices, window_s=0.0))
    log: list[str] = []
    RE(plan(log, motor))
    assert log == ["plan starts, motor connected: False"] and motor.waits == 0
