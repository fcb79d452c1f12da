"""The short reason a device did not connect (``instrument/_ca_quiet.py``)."""

from __future__ import annotations

from beampod.instrument import why_not_connected


class _Signal:
    def __init__(self, pvname: str, connected: bool) -> None:
        self.pvname, self.connected = pvname, connected


class _Walked:
    def __init__(self, item: _Signal) -> None:
        self.item = item


class _Device:
    """What ``why_not_connected`` reads of an ophyd Device: ``walk_signals()``."""

    def __init__(self, *signals: _Signal) -> None:
        self._signals = signals

    def walk_signals(self) -> list[_Walked]:
        return [_Walked(s) for s in self._signals]


def test_a_device_is_named_with_how_many_of_its_pvs_are_missing_and_one_of_them() -> None:
    motor = _Device(_Signal("m:RBV", True), _Signal("m:VAL", False), _Signal("m:EGU", False))
    assert why_not_connected(motor, TimeoutError("x" * 2000)) == "2 PVs, e.g. m:VAL"
    assert why_not_connected(_Device(_Signal("d:det", False)), TimeoutError()) == "PV d:det"


def test_a_lone_signal_is_named_by_its_pv() -> None:
    assert why_not_connected(_Signal("mini:current", False), TimeoutError()) == "PV mini:current"


def test_anything_else_gets_the_first_line_of_its_error_cut_short() -> None:
    long = "could not connect " + "y" * 200 + "\nsecond line"
    reason = why_not_connected(object(), TimeoutError(long))
    assert reason.startswith("could not connect yyy") and reason.endswith("...")
    assert len(reason) == 80 and "second" not in reason
    assert why_not_connected(object(), TimeoutError()) == "TimeoutError"
