"""One writer service per instrument: bus -> Tiled."""

from __future__ import annotations

from beampod.config import LoadedPod, NatsBus
from beampod.services._probes import LogLineProbe
from beampod.services._spec import ServiceSpec, python_module


def writer_specs(pod: LoadedPod) -> list[ServiceSpec]:
    if not isinstance(pod.config.bus, NatsBus):
        return []  # the 0MQ and Kafka transports have no beampod writer yet
    from beampod.services._svc_nats import nats_service_names

    deps = ("tiled", *nats_service_names(pod))
    return [
        ServiceSpec(
            name=f"writer-{name}" if len(pod.config.instruments) > 1 else "writer",
            argv=python_module("beampod.writer", "--instrument", name),
            probe=LogLineProbe(
                pod.home.log_file(
                    f"writer-{name}" if len(pod.config.instruments) > 1 else "writer"
                ),
                r"^beampod-writer ready",
            ),
            address=f"{name}.bluesky.runengine.documents -> tiled/{name}",
            depends_on=deps,
            # The writer retries a failed batch itself (in order, with backoff); tiled's
            # client would otherwise retry each request for up to ~45 s first.
            env={"TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "2"},
            ready_timeout=60.0,
        )
        for name in pod.config.instruments
    ]
