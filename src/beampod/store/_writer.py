"""Opening a RunSink for a pod's instrument with the pod's writer key."""

from __future__ import annotations

from beampod.config import LoadedPod
from beampod.store._layout import tiled_url
from beampod.store._sink import RunSink


def open_sink(pod: LoadedPod, instrument: str | None = None) -> RunSink:
    """A sink writing into ``instrument``'s container (default: the pod's instrument)."""
    name = instrument or pod.config.instrument_name
    pod.config.instrument(name)  # UsageError for an unknown instrument
    # The instrument's own writer key: it can write nothing but this container.
    key = pod.secrets.for_instrument(name).tiled_writer_key.get_secret_value()
    return RunSink.from_uri(tiled_url(pod), key, name)
