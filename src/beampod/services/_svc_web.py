"""The web console: ``python -m beampod.web`` (Starlette + uvicorn). See docs/web.md."""

from __future__ import annotations

from beampod.config import LoadedPod, instrument_bind, queue_servers
from beampod.services._probes import HttpProbe
from beampod.services._spec import NO_BLAS_THREADS, PortClaim, ServiceSpec, python_module


def web_specs(pod: LoadedPod) -> list[ServiceSpec]:
    if not pod.config.web.enabled:
        return []
    from beampod.instrument import ca_client_env
    from beampod.web import HEALTH_PATH, web_url

    cfg = pod.config
    # Ordering only: the console is ready once the store and the queue API answer, so
    # its first page is complete. It copes with either missing (it starts early, to
    # import while they come up, and later either may go away).
    depends = ["tiled"]
    # The console drives the default instrument's queue server (docs/web.md).
    server = queue_servers(pod).get(cfg.instrument_name)
    if server is not None:
        depends.append(server.http_service)
    return [
        ServiceSpec(
            name="web",
            # The pod home is in BEAMPOD_HOME (the supervisor's environment), never a secret.
            argv=python_module("beampod.web"),
            nice=cfg.pod.background_nice,
            # The Devices page reads the IOCs through Channel Access (monitors).
            env={**ca_client_env(cfg), **NO_BLAS_THREADS},
            probe=HttpProbe(f"{web_url(pod)}{HEALTH_PATH}"),
            address=web_url(pod),
            depends_on=tuple(depends),
            start_early=True,
            ports=(PortClaim(instrument_bind(cfg), cfg.web.port),),
            ready_timeout=60.0,
            stop_timeout=10.0,
            forkable=True,
        )
    ]
