"""Service specs of the store: the Tiled server, and embedded PostgreSQL when configured."""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from beampod.config import LoadedPod, PostgresStore, central_bind
from beampod.errors import ConfigError
from beampod.services._probes import AllProbes, CallableProbe, HttpProbe, TcpProbe
from beampod.services._spec import NO_BLAS_THREADS, PortClaim, ServiceSpec, python_module
from beampod.store import (
    embedded_postgres,
    postgres_uri,
    prepare_postgres,
    tiled_stores,
    tiled_url,
)

#: How long one probe of PostgreSQL may take to connect, and then to answer.
PG_PROBE_TIMEOUT_S = 2.0


def postgres_query_probe(uri: str) -> Callable[[], Awaitable[bool]]:
    """Whether the server at ``uri`` answers ``select 1``: the connect, the query and
    the goodbye each within ``PG_PROBE_TIMEOUT_S`` (the query and the goodbye had no
    bound, so a server that accepted and then stalled held the health check).

    Without TLS unless the URI asks for it (``sslmode``): the embedded server listens on
    127.0.0.1 without it, and asyncpg's default ("prefer") first asks for TLS, one more
    exchange per probe. asyncpg bounds the connect itself (its ``timeout``) rather than
    being cancelled from outside."""

    async def can_query() -> bool:
        import asyncpg

        ssl: dict[str, bool] = {} if "sslmode=" in uri else {"ssl": False}
        try:
            conn = await asyncpg.connect(uri, timeout=PG_PROBE_TIMEOUT_S, **ssl)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            return await conn.fetchval("select 1", timeout=PG_PROBE_TIMEOUT_S) == 1
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        finally:
            await conn.close(timeout=PG_PROBE_TIMEOUT_S)  # aborts the link past it

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
                    postgres_query_probe(postgres_uri(pod)),
                    "postgres answers `select 1` with the pod password",
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
        spawn_first=True,  # Tiled, the slowest start, needs it
    )


# Tiled answers within this (and stores within tiled_stores' own 10 s) or its probe
# fails: slow under load is not broken, and restarting a busy Tiled only adds load.
SLOW_ANSWER_S = 10.0


# The write check costs Tiled ~0.1 CPU-s (three requests); the supervisor re-probes
# every 5 s, so done each time it took ~2 % of a core from an idle pod. After a
# success it is repeated at most this often (or half the pod's degraded_after_s, if
# shorter); a failure is re-checked at every probe.
STORE_CHECK_EVERY_S = 15.0


@dataclass
class SpacedCheck:
    """``check`` run at most every ``every_s`` after it succeeded; in between it
    counts as passed (the cheaper probes next to it still run every time)."""

    check: Callable[[], Awaitable[bool]]
    every_s: float
    clock: Callable[[], float] = time.monotonic
    _passed_at: float | None = field(default=None, init=False)

    async def __call__(self) -> bool:
        now = self.clock()
        if self._passed_at is not None and now - self._passed_at < self.every_s:
            return True
        ok = await self.check()
        self._passed_at = now if ok else None
        return ok


def tiled_spec(pod: LoadedPod) -> ServiceSpec:
    url = tiled_url(pod)
    reader = pod.secrets.tiled_reader_key.get_secret_value()
    writer_key = pod.secrets.tiled_writer_key.get_secret_value()
    instrument = pod.config.instrument_name

    async def writes() -> bool:
        return await tiled_stores(url, writer_key)

    every = min(STORE_CHECK_EVERY_S, pod.config.pod.health.degraded_after_s / 2)
    can_store = SpacedCheck(writes, every)

    return ServiceSpec(
        name="tiled",
        argv=python_module("beampod.store.server", "--home", str(pod.home.root)),
        env=NO_BLAS_THREADS,
        nice=pod.config.pod.background_nice,
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
                    f"Tiled stores a 64 KiB array with the writer's key (at most every "
                    f"{every:g} s while it does)",
                    timeout_s=SLOW_ANSWER_S,  # tiled_stores' limit per request
                ),
            )
        ),
        address=url,
        ports=(PortClaim(central_bind(pod.config), pod.config.tiled.port),),
        depends_on=("postgres",) if embedded_postgres(pod) else (),
        # The slowest start of a pod: `up` waits for it, so it is spawned before the
        # IOCs and the rest that are let start at the same moment (ADR 0031).
        spawn_first=True,
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
