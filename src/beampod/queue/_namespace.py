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

from beampod.config import LoadedPod, PodHome, load_pod
from beampod.queue._files import RE_FACTORY_ENV, QueueFiles


def worker_namespace(pod: LoadedPod | None = None) -> dict[str, Any]:
    """``{"RE": ..., <device names>: ..., <plan names>: ...}`` for the pod's instrument."""
    from beampod.instrument import apply_ca_client_env, load_instrument

    pod = pod or load_pod(PodHome.resolve(None))
    # The supervisor already puts the CA variables into the service environment; this
    # also covers a worker started by hand.
    apply_ca_client_env(pod.config)
    name = pod.config.instrument_name
    settings = pod.config.instrument(name)
    iocs = [{"family": i.family, "prefix": i.prefix} for i in settings.iocs]
    instrument = load_instrument(settings.package, iocs=iocs)
    RE = make_run_engine(pod)
    RE.subscribe(RunJournal(QueueFiles.of(pod.home).runs_log))
    namespace: dict[str, Any] = {}
    namespace.update(instrument.plans)
    namespace.update(instrument.devices)
    namespace["RE"] = RE
    print(f"beampod: instrument {settings.package!r} ({name}): "
          f"{len(instrument.devices)} devices, {len(instrument.plans)} plans", flush=True)
    return namespace


def make_run_engine(pod: LoadedPod) -> Any:
    """The session's RunEngine factory when the services layer names one, else a bare one.

    The factory (``beampod.session:make_run_engine``) subscribes the durable bus
    publisher, so queue runs reach the bus and the store exactly like session runs.
    """
    target = os.environ.get(RE_FACTORY_ENV, "")
    if target:
        module_name, _, func_name = target.partition(":")
        try:
            factory: Callable[[LoadedPod], Any] = getattr(
                importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            print(f"beampod: WARNING: RunEngine factory {target!r} unavailable ({exc}); "
                  f"using a bare RunEngine: runs are NOT published to the bus", flush=True)
        else:
            return factory(pod)
    from bluesky import RunEngine

    return RunEngine({})


class RunJournal:
    """Appends one JSON line per finished run: uid, plan, exit status, events per stream.

    A cheap, local record of what the worker ran, independent of the bus and the
    store, so a test or an operator can confirm a queued plan really produced data.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._starts: dict[str, Mapping[str, Any]] = {}

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._starts[doc["uid"]] = doc
        elif name == "stop":
            start = self._starts.pop(doc.get("run_start", ""), {})
            line = {
                "uid": doc.get("run_start"),
                "plan_name": start.get("plan_name"),
                "exit_status": doc.get("exit_status"),
                "num_events": doc.get("num_events", {}),
                "time": time.time(),
            }
            with self._path.open("a") as fh:
                fh.write(json.dumps(line) + "\n")


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
