"""A session's devices are released at exit (``_namespace._release_devices``): it first
waits for connections under way, unless no IOC of the instrument listens."""

from __future__ import annotations

from beampod.session._namespace import _release_devices


class _Device:
    def __init__(self, connected: bool) -> None:
        self.connected = connected
        self.waited: list[float] = []
        self.destroyed = False

    def wait_for_connection(self, timeout: float) -> None:
        self.waited.append(timeout)
        raise TimeoutError("not connected")

    def destroy(self) -> None:
        self.destroyed = True


def test_connections_under_way_are_waited_for_when_the_iocs_listen() -> None:
    up, connecting = _Device(True), _Device(False)
    asked: list[bool] = []

    def iocs_listen() -> bool:
        asked.append(True)
        return True

    _release_devices([up, connecting], iocs_listen)
    assert asked == [True]
    assert connecting.waited and not up.waited
    assert up.destroyed and connecting.destroyed


def test_nothing_is_waited_for_when_no_ioc_listens() -> None:
    up, unconnected = _Device(True), _Device(False)
    _release_devices([up, unconnected], lambda: False)
    assert unconnected.waited == []
    assert up.destroyed and unconnected.destroyed


def test_the_iocs_are_not_asked_when_every_device_is_connected() -> None:
    devices = [_Device(True), _Device(True)]

    def iocs_listen() -> bool:
        raise AssertionError("asked although every device is connected")

    _release_devices(devices, iocs_listen)
    assert all(d.destroyed for d in devices)
