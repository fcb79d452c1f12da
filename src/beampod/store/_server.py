"""The pod's Tiled server: a writable SQL catalog behind the API-key gate.

``python -m beampod.store.server --home DIR`` runs it. Everything (paths, ports,
keys) comes from the pod home; secrets are read from its 0600 secrets file, never
from argv, and never logged.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beampod._gcstart import pause_gc, resume_gc
from beampod.config import LoadedPod, PodHome, central_bind, load_pod
from beampod.errors import BeampodError, StoreError
from beampod.store._auth import ApiKeyGate, ASGIApp, Role
from beampod.store._catalogdb import init_catalog
from beampod.store._health import health_container
from beampod.store._layout import layout_of, store_uris
from beampod.store._lean import lean_server_imports
from beampod.store._pools import ConnectionPools
from beampod.store._tiled_adapter import install_inline_sql_adapter
from beampod.store._tiled_append_route import add_fast_table_appends
from beampod.store._tiled_appends import install_arrow_appends
from beampod.store._tiled_asgi import replace_request_hooks
from beampod.store._tiled_deps import apply_settings_override, await_cheap_dependencies
from beampod.store._tiled_entry import install_direct_entry
from beampod.store._tiled_fast import install_fast_lookup
from beampod.store._tiled_live_cache import install_live_cache_fixes
from beampod.store._tiled_nodes import install_lean_create_node
from beampod.store._tiled_reads import attach_read_engine
from beampod.store._tiled_schemas import install_cached_schema_decode
from beampod.store._tiled_tables import install_one_table_creation_at_a_time

log = logging.getLogger("beampod.store.server")

# The spec bluesky-tiled-plugins' client looks for: version 3.x selects its SQL-backed
# BlueskyRun classes (``catalog.is_sql``), which read the tables TiledWriter writes.
CATALOG_SPEC = ("CatalogOfBlueskyRuns", "3.0")


def build_catalog(pod: LoadedPod) -> Any:
    """The writable tiled catalog adapter (created on first use, idempotently)."""
    from tiled.catalog import from_uri
    from tiled.config import StreamingCacheConfig

    uris = store_uris(pod)
    layout = layout_of(pod)
    layout.make_dirs()
    init_catalog(uris.catalog)
    pools = ConnectionPools.for_instruments(len(pod.config.instruments))
    catalog = from_uri(
        uris.catalog,
        writable_storage=[layout.arrays_dir, uris.tables],
        init_if_not_exists=False,  # done just above, in-process
        # An in-process streaming cache lets clients subscribe to live runs and makes
        # TiledWriter's close_stream() calls meaningful; it holds no durable state.
        cache_config=StreamingCacheConfig(uri="memory").model_dump(),
        # Ignored by SQLite (no pool); on PostgreSQL sized by the instruments (_pools).
        catalog_pool_size=pools.catalog_pool_size,
        catalog_max_overflow=pools.catalog_max_overflow,
        storage_pool_size=pools.pool_size,
        storage_max_overflow=pools.max_overflow,
    )
    if uris.backend == "sqlite":
        _use_wal(layout.catalog_db, layout.tables_db)
    else:
        attach_read_engine(catalog, uris.catalog, pools)
    return catalog


def _use_wal(*paths: Path) -> None:
    """Put the SQLite files in write-ahead-log mode (a persistent property of the file).

    In the default rollback-journal mode every event-table append costs several
    fsyncs; WAL measured ~35 ms instead of ~53 ms per append here, which is most of the
    event -> readable latency. Readers also no longer block the writer.
    """
    for path in paths:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def _instrument_containers_task(catalog: Any, instruments: Sequence[str]) -> Any:
    async def ensure_instrument_containers() -> None:
        from tiled.catalog.adapter import Collision
        from tiled.server.core import NoEntry
        from tiled.structures.core import Spec, StructureFamily

        spec = Spec(CATALOG_SPEC[0], version=CATALOG_SPEC[1])

        wanted = [(name, [spec]) for name in instruments]
        # Where each instrument's writer checks that Tiled stores: outside the
        # instrument's container, so its runs listing holds only runs.
        wanted += [(health_container(name), []) for name in instruments]
        for name, specs in wanted:
            try:
                await catalog.lookup_adapter([name])
                continue
            except NoEntry:
                pass
            try:
                await catalog.create_node(
                    StructureFamily.container, metadata={}, key=name, specs=specs
                )
                log.info("created container %r", name)
            except Collision:
                # Another server process sharing the database created it first.
                log.info("container %r already exists", name)

    return ensure_instrument_containers


def _open_table_storage_task(catalog: Any) -> Any:
    """tiled opens a SQL table storage (its ADBC driver imported, a first connection,
    the pool) on the first request that creates or appends to a table, inside a
    ``cached_property`` whose lock every other such request waits on. At a new
    facility's first runs that was ~0.5 s of 25 table creations' wait
    (docs/benchmarks.md). Opened in a thread as the server starts instead, off its
    readiness: a request that comes first still waits for it, as before."""

    async def open_table_storage() -> None:
        from tiled.storage import SQLStorage

        storages = [
            s for s in catalog.context.writable_storage.values() if isinstance(s, SQLStorage)
        ]
        if storages:
            threading.Thread(
                target=_open_each, args=(storages,), name="open-table-storage", daemon=True
            ).start()

    return open_table_storage


def _open_each(storages: Sequence[Any]) -> None:
    from beampod.store._storage_ping import ping_pooled_connections

    for storage in storages:
        try:
            with contextlib.closing(storage.connect()):
                pass
            ping_pooled_connections(storage)  # a connection PostgreSQL closed is not used
        except Exception as exc:  # noqa: BLE001 - the first request opens it and answers
            # Neither the URI nor the driver's message: either may hold the password.
            log.warning(
                "table storage (%s) not opened ahead (%s); the first request opens it",
                storage.dialect,
                type(exc).__name__,
            )


JSON_SEQ = "application/json-seq"


def serialization_registry() -> Any:
    """Tiled's exporters plus bluesky-tiled-plugins' JSON-seq one for runs: what
    ``run.documents()`` asks for (a run is a container node)."""
    import copy

    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    registry = copy.deepcopy(default_serialization_registry)
    registry.register("container", JSON_SEQ, json_seq_exporter)
    return registry


def build_store_app(
    pod: LoadedPod, *, internal_key: str | None = None, only_app: bool = False
) -> ASGIApp:
    """ASGI app: tiled's ``build_app`` over the pod catalog, wrapped in the key gate.

    ``only_app``: no other tiled app is built in this process (the server's main), so
    tiled's settings override may be applied once (:func:`apply_settings_override`)."""
    from tiled.config import Authentication
    from tiled.server.app import build_app

    catalog = build_catalog(pod)
    # Runs after the catalog's own startup (which opens the database), so appended
    # to the same list rather than passed as an app-level task (those run first).
    catalog.startup_tasks.append(_instrument_containers_task(catalog, list(pod.config.instruments)))
    catalog.startup_tasks.append(_open_table_storage_task(catalog))
    key = internal_key or secrets.token_hex(32)
    app = build_app(
        catalog,
        authentication=Authentication(single_user_api_key=key),
        serialization_registry=serialization_registry(),
    )
    # One plain ASGI call instead of five task hops; no CSRF cookie, since the gate
    # below removes every cookie before tiled could check one.
    replace_request_hooks(app, csrf_cookie=False)
    add_fast_table_appends(app, key)  # appends without solving tiled's dependency tree
    if only_app:
        apply_settings_override(app)
        await_cheap_dependencies()  # no thread hand-offs before a request's endpoint
    s = pod.secrets
    return ApiKeyGate(
        app,
        keys={
            Role.WRITER: s.tiled_writer_key.get_secret_value(),
            Role.READER: s.tiled_reader_key.get_secret_value(),
            Role.ADMIN: s.tiled_admin_key.get_secret_value(),
        },
        internal_key=key,
        # Each instrument's own keys reach only its own container (docs/facility.md).
        scoped={
            name: {
                Role.WRITER: s.for_instrument(name).tiled_writer_key.get_secret_value(),
                Role.READER: s.for_instrument(name).tiled_reader_key.get_secret_value(),
            }
            for name in pod.config.instruments
        },
    )


def _log_config() -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        # tiled logs each request it serves at INFO; keep warnings only.
        "loggers": {"tiled": {"level": "WARNING"}, "uvicorn.error": {"level": "INFO"}},
    }


def quiet_gc() -> None:
    """Keep the garbage collector off the ~300 MB of imported modules.

    Every request allocates enough (FastAPI resolving tiled's dependencies, the ORM)
    to trigger collections, and each older-generation one walked every object of
    tiled, pandas, pyarrow and SQLAlchemy: py-spy --native put ~45 % of Tiled's CPU per
    request in ``gc_collect_main``. Objects alive now live as long as the process, so
    they are moved out of the collector's reach (``gc.freeze``); what requests
    allocate is still collected as before. No ``gc.collect()`` first: it would add
    ~0.3 s to Tiled's start (the slowest of the pod) to free a little import garbage.
    The collector, paused for the start by ``main`` (``beampod._gcstart``), runs again.
    """
    resume_gc()


def serve(pod: LoadedPod) -> None:
    from beampod import _uvicorn

    install_fast_lookup()  # this process serves only this app (docs/store.md)
    install_one_table_creation_at_a_time()  # runs of many instruments start at once
    install_arrow_appends()  # rows reach SQL storage as Arrow, not through pandas
    install_inline_sql_adapter()  # a SQL table's adapter without a hop to a thread
    install_direct_entry()  # a request's node in one lookup, not one per path segment
    install_lean_create_node()  # a new node is not read back after it is stored
    install_cached_schema_decode()  # a table's Arrow schema decoded once, not per request
    install_live_cache_fixes()  # live messages: none of a deleted node, counters kept
    app = build_store_app(pod, only_app=True)
    quiet_gc()
    host, port = central_bind(pod.config), pod.config.tiled.port
    uris = store_uris(pod)
    log.info("tiled store (%s backend) on http://%s:%d", uris.backend, host, port)
    # access_log off: uvicorn would log request lines; request URLs never carry keys
    # past the gate, but the access log adds nothing the supervisor needs.
    _uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=_log_config(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beampod.store.server", description="Run the pod's Tiled server."
    )
    parser.add_argument("--home", required=True, help="pod home directory")
    args = parser.parse_args(argv)
    pause_gc()  # until the app is built (quiet_gc): the start is imports
    lean_server_imports()  # before anything imports tiled (store/_lean.py)
    try:
        pod = load_pod(PodHome.resolve(args.home))
        serve(pod)
    except BeampodError as exc:
        print(f"beampod store: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"beampod store: {StoreError(str(exc))}", file=sys.stderr)
        return 1
    return 0
