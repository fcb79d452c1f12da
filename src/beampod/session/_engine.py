"""The one place a pod's RunEngine is made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from beampod.config import LoadedPod

if TYPE_CHECKING:
    from bluesky import RunEngine


def make_run_engine(pod: LoadedPod, instrument: str | None = None) -> RunEngine:
    """A RunEngine for ``instrument`` (default: the pod's default instrument).

    Its metadata names the instrument and the pod, so every run start document says
    where it came from; the document path to the bus is attached by
    :func:`_subscribe_document_path`.
    """
    from bluesky import RunEngine

    name = pod.config.instrument_name if instrument is None else instrument
    pod.config.instrument(name)  # a clear UsageError for an unknown instrument
    RE = RunEngine({"instrument": name, "beampod_pod": pod.config.pod.name},
                   call_returns_result=False)
    _subscribe_document_path(RE, pod)
    return RE


def _subscribe_document_path(RE: RunEngine, pod: LoadedPod) -> None:
    """HOOK: subscribe the durable bus publisher to ``RE`` (documents -> spool -> bus).

    Intentionally does nothing yet; the bus engineer wires the publisher here so every
    RunEngine beampod makes (shell, ``beampod run``, tests) gets the same document path.
    """
    return None
