"""Service specs of the store: the Tiled server, and embedded PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from beampod.config import LoadedPod, PostgresStore
from beampod.errors import ConfigError
from beampod.services._probes import AllProbes, CallableProbe, HttpProbe, TcpProbe
from beampod.services._spec import PortClaim, ServiceSpec, python_module
from beampod.store import (
    embedded_postgres,
    postgres_uri,
    prepare_postgres,
    tiled_stores,
    tiled_url,
)


def _postgres_query_probe(pod: LoadedPod) -> Callable[[], Awaitable[bool]]:
    async def can_query() -> bool:
        import asyncpg

        try:
            conn = await asyncio.wait_for(asyncpg.connect(postgres_uri(pod)), 2.0)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return False
        try:
            return await conn.fetchval("select 1") == 1
        finally:
            await conn.close()

    return can_query


def postgres_spec(pod: LoadedPod) -> ServiceSpec:
    store = pod.config.store
    if not isinstance(store, PostgresStore):
        raise ConfigError("config.yaml", ["store.backend is not postgres"])
    home = str(pod.home.root)
    return ServiceSpec(
        name="postgres",
        argv=python_module("beampod.store.postgres", "--home", home),
        probe=AllProbes(
            (
                TcpProbe("127.0.0.1", store.port),
                CallableProbe(
                    _postgres_query_probe(pod), "postgres answers `select 1` with the pod password"
                ),
            )
        ),
        address=f"postgresql://127.0.0.1:{store.port}",
        ports=(PortClaim("127.0.0.1", store.port),),
        ready_timeout=60.0,
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM waits for clients to leave).
        stop_signal=signal.SIGINT,
        stop_timeout=30.0,
        prepare=lambda: prepare_postgres(pod),
    )


# Tiled answers within this (and stores within tiled_stores' own 10 s) or its probe
# fails: slow under load is not broken, and restarting a busy Tiled only adds load.
SLOW_ANSWER_S = 10.0


def tiled_spec(pod: LoadedPod) -> ServiceSpec:
    url = tiled_url(pod)
    reader = pod.secrets.tiled_reader_key.get_secret_value()
    writer_key = pod.secrets.tiled_writer_key.get_secret_value()
    instrument = pod.config.instrument_name

    async def can_store() -> bool:
        return await tiled_stores(url, writer_key)

    return ServiceSpec(
        name="tiled",
        argv=python_module("beampod.store.server", "--home", str(pod.home.root)),
        # Ready = the app answers an authenticated read of an instrument container,
        # i.e. the catalog is open and the startup task created the containers, and it
        # can store (re-run while the pod runs: a full or read-only disk under the
        # catalog or data directory fails it, see services/_health.py).
        probe=AllProbes(
            (
                HttpProbe(f"{url}/healthz", timeout_s=SLOW_ANSWER_S),
                HttpProbe(
                    f"{url}/api/v1/metadata/{instrument}",
                    headers={"Authorization": f"Apikey {reader}"},
                    timeout_s=SLOW_ANSWER_S,
                ),
                CallableProbe(
                    can_store,
                    "Tiled stores a 64 KiB array with the writer's key",
                    timeout_s=SLOW_ANSWER_S,  # tiled_stores' limit per request
                ),
            )
        ),
        address=url,
        ports=(PortClaim(pod.config.pod.bind, pod.config.tiled.port),),
        depends_on=("postgres",) if embedded_postgres(pod) else (),
        # Importing the server alone takes ~6 s on a quiet 2-core machine and over a
        # minute on a loaded one; a start that gives up early only starts it again.
        ready_timeout=120.0,
        # No ``prepare``: the server makes its directories itself (build_catalog), and
        # a prepare step would run in a thread first, delaying the slowest service.
    )


def tiled_specs(pod: LoadedPod) -> list[ServiceSpec]:
    specs = [tiled_spec(pod)]
    if embedded_postgres(pod):
        specs.insert(0, postgres_spec(pod))
    return specs
