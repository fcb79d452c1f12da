"""Where the store keeps its files, and which database URIs it uses.

One place derives every path and URI from the pod home and config, so the Tiled
server, the postgres service and the tests cannot disagree about them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from beampod.config import LoadedPod, PostgresStore, central_address
from beampod.errors import ConfigError

# Database name and role the embedded PostgreSQL is initialised with.
PG_USER = "beampod"
PG_DATABASE = "tiled"


@dataclass(frozen=True)
class StoreLayout:
    """Paths under ``<home>/data`` owned by the store."""

    data_dir: Path

    @property
    def tiled_dir(self) -> Path:
        return self.data_dir / "tiled"

    @property
    def catalog_db(self) -> Path:
        """SQLite catalog: one row per node (run, stream, table) with its metadata."""
        return self.tiled_dir / "catalog.db"

    @property
    def tables_db(self) -> Path:
        """SQLite tabular storage: the appendable event tables (one SQL table per schema)."""
        return self.tiled_dir / "tables.db"

    @property
    def arrays_dir(self) -> Path:
        """Writable file storage: zarr arrays for array-valued data (images, spectra)."""
        return self.tiled_dir / "data"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.postgres_dir / "pgdata"

    def make_dirs(self) -> None:
        for d in (self.tiled_dir, self.arrays_dir):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class StoreUris:
    """Database URIs for Tiled. ``catalog`` uses an async driver, ``tables`` a plain one."""

    catalog: str
    tables: str
    backend: str


def layout_of(pod: LoadedPod) -> StoreLayout:
    return StoreLayout(pod.home.data_dir)


def embedded_postgres(pod: LoadedPod) -> bool:
    store = pod.config.store
    return isinstance(store, PostgresStore) and not store.uri_env


def postgres_uri(pod: LoadedPod) -> str:
    """Plain ``postgresql://`` URI of the catalog database (carries the password)."""
    store = pod.config.store
    if not isinstance(store, PostgresStore):
        raise ConfigError("config.yaml", ["store.backend is not postgres"])
    if store.uri_env:
        value = os.environ.get(store.uri_env, "")
        if not value:
            raise ConfigError(
                "config.yaml",
                [f"store.uri_env names ${store.uri_env}, which is not set in the environment"],
            )
        scheme = urlsplit(value).scheme.split("+", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                "config.yaml", [f"${store.uri_env} must be a postgresql:// URI (got {scheme!r})"]
            )
        return _with_scheme(value, "postgresql")
    password = quote(pod.secrets.postgres_password.get_secret_value(), safe="")
    return f"postgresql://{PG_USER}:{password}@127.0.0.1:{store.port}/{PG_DATABASE}"


def _with_scheme(uri: str, scheme: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def store_uris(pod: LoadedPod) -> StoreUris:
    """Catalog and tabular-storage URIs for the configured backend."""
    if isinstance(pod.config.store, PostgresStore):
        plain = postgres_uri(pod)
        # Catalog and event tables share one database: tiled names its data tables
        # ``table_<hash>`` so they cannot collide with the catalog's own tables, and
        # an external deployment then needs only one database and one role.
        return StoreUris(
            catalog=_with_scheme(plain, "postgresql+asyncpg"), tables=plain, backend="postgres"
        )
    layout = layout_of(pod)
    return StoreUris(
        catalog=f"sqlite+aiosqlite:///{layout.catalog_db}",
        tables=f"sqlite:///{layout.tables_db}",
        backend="sqlite",
    )


def tiled_url(pod: LoadedPod) -> str:
    """Base URL this process reaches the pod's Tiled server at (a central service)."""
    host = central_address(pod.config)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{pod.config.tiled.port}"
