"""The RE Worker's namespace: the instrument's devices and plans, and a RunEngine.

Built inside the worker process each time the environment opens (see ``_startup``).
The queue server lists every plan and device it finds here as "existing"; the allowed
lists (what a submission may name) follow from them and the user group permissions.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from beampod._gcstart import pause_gc, resume_gc
from beampod.config import LoadedPod, PodHome, load_pod
from beampod.queue._files import RE_FACTORY_ENV, QueueFiles, process_server
from beampod.queue._lean import quiet_ophyd_dispatcher, versions_without_import


def worker_namespace(pod: LoadedPod | None = None) -> dict[str, Any]:
    """``{"RE": ..., <device names>: ..., <plan names>: ...}`` for the queue server's
    instrument (``BEAMPOD_QUEUE_INSTRUMENT``, inherited from the manager; default: the
    pod's default instrument). Built with the cyclic collector paused: it is mostly
    imports (``beampod._gcstart``)."""
    pause_gc()
    try:
        return _build_namespace(pod)
    finally:
        resume_gc()


def _build_namespace(pod: LoadedPod | None) -> dict[str, Any]:
    from beampod.instrument import apply_ca_client_env, load_instrument, unconnected_devices
    from beampod.queue._settle import settle_first_plans

    pod = pod or load_pod(PodHome.resolve(None))
    # The supervisor already puts the CA variables into the service environment; this
    # also covers a worker started by hand.
    apply_ca_client_env(pod.config)
    server = process_server(pod)
    name = server.instrument
    settings = pod.config.instrument(name)
    iocs = [{"family": i.family, "prefix": i.prefix} for i in settings.iocs]
    instrument = load_instrument(settings.package, iocs=iocs)
    quiet_ophyd_dispatcher()  # its callback threads wake only when called (ADR 0022)
    with versions_without_import() as record_versions:
        RE = make_run_engine(pod, name)
    record_versions(RE)
    RE.subscribe(RunJournal(QueueFiles.of(pod.home, server).runs_log))
    devices = list(instrument.devices.values())
    RE.preprocessors.append(settle_first_plans(devices, unconnected_devices))
    namespace: dict[str, Any] = {}
    namespace.update(instrument.plans)
    namespace.update(instrument.devices)
    namespace["RE"] = RE
    print(
        f"beampod: instrument {settings.package!r} ({name}): "
        f"{len(instrument.devices)} devices, {len(instrument.plans)} plans",
        flush=True,
    )
    return namespace


def make_run_engine(pod: LoadedPod, instrument: str | None = None) -> Any:
    """The session's RunEngine factory when the services layer names one, else a bare one.

    The factory (``beampod.session:make_run_engine``) subscribes the durable bus
    publisher, so queue runs reach the bus and the store exactly like session runs.
    """
    target = os.environ.get(RE_FACTORY_ENV, "")
    if target:
        module_name, _, func_name = target.partition(":")
        try:
            factory: Callable[..., Any] = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            print(
                f"beampod: WARNING: RunEngine factory {target!r} unavailable ({exc}); "
                f"using a bare RunEngine: runs are NOT published to the bus",
                flush=True,
            )
        else:
            return factory(pod, instrument=instrument)
    from bluesky import RunEngine

    return RunEngine({})


class RunJournal:
    """Appends one JSON line per finished run: uid, plan, exit status, events per stream,
    and when the start document, the first event and the stop document were seen.

    A cheap, local record of what the worker ran, independent of the bus and the
    store, so a test, a benchmark or an operator can confirm (and time) queued runs.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._runs: dict[str, dict[str, Any]] = {}
        self._descriptors: dict[str, str] = {}

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        now = time.time()
        if name == "start":
            self._runs[doc["uid"]] = {
                "plan_name": doc.get("plan_name"),
                "t_start": now,
                "t_first_event": None,
            }
        elif name == "descriptor":
            self._descriptors[doc["uid"]] = doc.get("run_start", "")
        elif name == "event":
            run = self._runs.get(self._descriptors.get(doc.get("descriptor", ""), ""))
            if run is not None and run["t_first_event"] is None:
                run["t_first_event"] = now
        elif name == "stop":
            uid = doc.get("run_start", "")
            run = self._runs.pop(uid, {})
            self._descriptors = {d: r for d, r in self._descriptors.items() if r != uid}
            line = {
                "uid": uid,
                **run,
                "exit_status": doc.get("exit_status"),
                "num_events": doc.get("num_events", {}),
                "t_stop": now,
            }
            with self._path.open("a") as fh:
                fh.write(json.dumps(line) + "\n")


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
