"""The Devices page: every device of the instrument with its readings, kept current by
Channel Access monitors (ophyd's signals over pyepics, with the pod's CA environment),
and pushed to browsers over server-sent events.

Moving is never done here: the page submits an ``mv`` plan to the queue (see
``_app.move``), so a move cannot collide with a running plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from beampod.config import LoadedPod
from beampod.instrument import apply_ca_client_env, load_instrument

log = logging.getLogger("beampod.web.devices")

Listener = Callable[[dict[str, Any]], None]


@dataclass
class Reading:
    signal: str
    value: Any = None
    timestamp: float | None = None
    connected: bool = False


@dataclass
class DeviceRow:
    name: str
    kind: str  # class name
    readings: list[Reading] = field(default_factory=list)
    read_only: bool = False  # a read-only signal: the queue may call it movable, mv fails


def is_read_only(device: Any) -> bool:
    """ophyd's read-only signals (``EpicsSignalRO``, ``SignalRO``)."""
    try:
        from ophyd.signal import EpicsSignalRO, SignalRO
    except ImportError:
        return False
    return isinstance(device, SignalRO | EpicsSignalRO)


def readable_signals(device: Any) -> list[tuple[str, Any]]:
    """(name, signal) of what ``device.read()`` reports: hinted and normal leaf signals."""
    attrs = getattr(device, "read_attrs", None)
    if attrs is None:
        return [(str(device.name), device)] if hasattr(device, "subscribe") else []
    out = []
    for attr in attrs:
        sig = getattr(device, attr, None)
        if sig is None or hasattr(sig, "read_attrs"):  # a sub-device: its leaves are listed
            continue
        out.append((str(sig.name), sig))
    return out


def display_value(value: Any) -> Any:
    """A JSON-friendly scalar (arrays are summarised, never sent whole)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    shape = getattr(value, "shape", None)
    return f"array{tuple(shape)}" if shape is not None else str(value)


class DevicePanel:
    """Loads the instrument's devices once and follows their readable signals."""

    def __init__(self, pod: LoadedPod, instrument: str | None = None) -> None:
        self._pod = pod
        self._instrument = instrument or pod.config.instrument_name
        self._lock = threading.Lock()
        self.rows: dict[str, DeviceRow] = {}
        self._by_signal: dict[str, Reading] = {}
        self._listeners: set[Listener] = set()
        self.error = ""
        self.loaded = threading.Event()
        self._started = False

    def start(self) -> None:
        """Build the devices and subscribe (in a thread: connecting can take seconds).
        Once; called when the Devices page is first opened, so a console nobody uses
        for devices never imports ophyd or connects to every IOC (seconds of CPU while
        the pod starts, ~100 MB resident)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="beampod-web-devices", daemon=True).start()

    def _load(self) -> None:
        cfg = self._pod.config
        settings = cfg.instrument(self._instrument)
        try:
            apply_ca_client_env(cfg)
            iocs = [{"family": i.family, "prefix": i.prefix} for i in settings.iocs]
            inst = load_instrument(settings.package, iocs=iocs)
        except Exception as exc:  # noqa: BLE001 - shown on the page instead of crashing
            self.error = f"cannot load the instrument's devices: {exc}"
            log.warning("%s", self.error)
            self.loaded.set()
            return
        for name, device in sorted(inst.devices.items()):
            row = DeviceRow(name=name, kind=type(device).__name__, read_only=is_read_only(device))
            for sig_name, sig in readable_signals(device):
                reading = Reading(sig_name)
                row.readings.append(reading)
                with self._lock:
                    self._by_signal[sig_name] = reading
                self._follow(sig, reading)
            with self._lock:
                self.rows[name] = row
        self.loaded.set()

    def _follow(self, sig: Any, reading: Reading) -> None:
        def on_value(value: Any = None, timestamp: float | None = None, **_: Any) -> None:
            self._update(reading, value, timestamp, connected=True)

        def on_meta(connected: bool = False, **_: Any) -> None:
            if not connected:
                self._update(reading, reading.value, reading.timestamp, connected=False)

        try:
            sig.subscribe(on_value, run=True)
            with contextlib.suppress(AttributeError, ValueError, KeyError):
                sig.subscribe(on_meta, event_type=sig.SUB_META, run=False)
        except Exception as exc:  # noqa: BLE001 - one bad signal must not hide the rest
            log.warning("cannot follow %s: %s", reading.signal, exc)

    def _update(self, reading: Reading, value: Any, ts: float | None, *, connected: bool) -> None:
        with self._lock:
            reading.value = display_value(value)
            reading.timestamp = ts if ts is not None else time.time()
            reading.connected = connected
            message = {
                "signal": reading.signal,
                "value": reading.value,
                "timestamp": reading.timestamp,
                "connected": connected,
            }
            listeners = list(self._listeners)
        for listener in listeners:
            listener(message)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "signal": r.signal,
                    "value": r.value,
                    "timestamp": r.timestamp,
                    "connected": r.connected,
                }
                for r in self._by_signal.values()
                if r.timestamp is not None
            ]

    def device_rows(self) -> list[DeviceRow]:
        with self._lock:
            return list(self.rows.values())

    def listen(self, loop: asyncio.AbstractEventLoop) -> Subscription:
        """Updates for one browser, delivered on ``loop``; :meth:`unlisten` when done."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10_000)

        def put(message: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

        def listener(message: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(put, message)

        with self._lock:
            self._listeners.add(listener)
        return Subscription(queue, listener)

    def unlisten(self, sub: Subscription) -> None:
        with self._lock:
            self._listeners.discard(sub.listener)


@dataclass(frozen=True)
class Subscription:
    queue: asyncio.Queue[dict[str, Any]]
    listener: Listener
