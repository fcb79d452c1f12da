"""The one place a pod's RunEngine is made."""

from __future__ import annotations

import atexit
import logging

from bluesky import RunEngine as RunEngineBase

from beampod.bus import DocumentPublisher
from beampod.config import LoadedPod
from beampod.errors import BusError
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
    counter = ScanIdCounter(pod.home.data_dir / "scan_id" / name)
    RE = PodRunEngine(
        {"instrument": name, "beampod_pod": pod.config.pod.name},
        call_returns_result=False,
        scan_id_source=counter,
    )
    if publish:
        _subscribe_document_path(RE, pod, name)
    return RE


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
