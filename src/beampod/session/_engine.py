"""The one place a pod's RunEngine is made."""

from __future__ import annotations

import atexit
import json
import logging
import os

from bluesky import RunEngine as RunEngineBase

from beampod._affinity import pin_self_to_runengine_cpus
from beampod.bus import DocumentPublisher
from beampod.config import RUNENGINE_CPUS_ENV, LoadedPod
from beampod.errors import BusError
from beampod.session._plan_stack import cheap_plan_stacks
from beampod.session._scan_id import ScanIdCounter

log = logging.getLogger("beampod.session")


class PodRunEngine(RunEngineBase):
    """A RunEngine that knows its document publisher: ``RE.publisher.status()`` tells
    where every document is (acknowledged by the bus, in flight, or only spooled)."""

    publisher: DocumentPublisher | None = None


def make_run_engine(
    pod: LoadedPod, instrument: str | None = None, *, publish: bool = True
) -> PodRunEngine:
    """A RunEngine for ``instrument`` (default: the pod's default instrument).

    Its metadata names the instrument and the pod, so every run start document says
    where it came from; ``scan_id`` continues across sessions and processes (a locked
    counter in the pod home); documents go to the pod's bus through the
    durable publisher unless ``publish`` is False.
    """
    name = pod.config.instrument_name if instrument is None else instrument
    pod.config.instrument(name)  # a clear UsageError for an unknown instrument
    pin_to_runengine_cpus(pod)
    cheap_plan_stacks()  # every plan call formatted its caller's stack (_plan_stack)
    counter = ScanIdCounter(pod.home.data_dir / "scan_id" / name)
    RE = PodRunEngine(
        {"instrument": name, "beampod_pod": pod.config.pod.name},
        call_returns_result=False,
        scan_id_source=counter,
    )
    if publish:
        _subscribe_document_path(RE, pod, name)
    return RE


def pin_to_runengine_cpus(pod: LoadedPod) -> frozenset[int] | None:
    """Pin this process to the CPUs the pod leaves its RunEngines (pod.background_cpus):
    the ones the supervisor gave the services it started (``RUNENGINE_CPUS_ENV``: the
    queue server's worker), else those of the running pod's state (`beampod shell`,
    `run`). Every thread of the process, before the RunEngine starts its own: a thread
    inherits its creator's CPUs. None when the pod does not pin."""
    cpus = os.environ.get(RUNENGINE_CPUS_ENV)
    if cpus is None:
        try:
            state = json.loads(pod.home.state_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("phase") not in ("starting", "running"):
            return None
        cpus = state.get("runengine_cpus")
    return pin_self_to_runengine_cpus(cpus if isinstance(cpus, str) else None)


def _subscribe_document_path(RE: PodRunEngine, pod: LoadedPod, instrument: str) -> None:
    """Every RunEngine beampod makes (shell, ``beampod run``, the queue worker) sends its
    documents through the same path: publisher -> (spool) -> bus -> writer -> Tiled."""
    from beampod.bus import transport_for

    publisher = transport_for(pod, instrument).publisher()
    RE.subscribe(publisher)
    RE.publisher = publisher
    # Deliver what can be delivered at exit; the rest stays in the spool for next time.
    atexit.register(_close_quietly, publisher)


def _close_quietly(publisher: DocumentPublisher) -> None:
    try:
        publisher.close()
    except BusError as exc:
        log.warning("closing the document publisher: %s", exc)
