"""Reading runs back: ``db[-1]``, ``db[scan_id]``, ``db['partial uid']``, ``beampod runs``.

The catalog *is* bluesky-tiled-plugins' client: ``Catalog`` subclasses
``CatalogOfBlueskyRuns`` (spec version 3: ``BlueskyRunV3`` runs whose streams read into
xarray, ``run.documents()``, ``.v2``, ``.search``), adding beampod's error messages and
rules (uid prefixes of at least 6 characters), recent-run slices and dict searches.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import CatalogOfBlueskyRuns

from beampod._net import refuses_connections
from beampod.config import LoadedPod
from beampod.errors import StoreError, UsageError
from beampod.store._layout import tiled_url

MIN_UID_PREFIX = 6


class RunNotFoundError(StoreError, KeyError):
    """No run matches the key (also a KeyError, as databroker users expect)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class AmbiguousUidError(RunNotFoundError):
    """A uid prefix matches more than one run."""


@dataclass(frozen=True)
class RunSummary:
    uid: str
    scan_id: int | None
    plan_name: str | None
    start_time: datetime | None
    num_events: int  # events stored (rows of the event tables), not what the stop claims
    exit_status: str | None  # None while the run is still open
    stop_num_events: int | None = None  # what the stop document claims (None: no stop)

    @property
    def mismatch(self) -> bool:
        """The stop document claims another number of events than are stored."""
        return self.stop_num_events is not None and self.stop_num_events != self.num_events


class Catalog(CatalogOfBlueskyRuns):
    """One instrument's runs: bluesky-tiled-plugins' ``CatalogOfBlueskyRuns`` client
    (``search``, ``v2``, ``v3``, ``values()``, ``scan_id[...]``, ``uid[...]`` ...) with
    beampod's lookups and error messages:

    - ``db[-1]``, ``db[-N]``: the latest runs; ``db[-3:]``: the 3 latest, oldest first
    - ``db[scan_id]`` (the latest run with that scan_id), ``db['uid prefix']`` (>= 6
      characters), ``db[[k1, k2]]``: a list
    - ``db.search(Key('plan_name') == 'scan')`` or ``db.search({'plan_name': 'scan'})``
      (a dict is equality on start-document keys); the result is a ``Catalog`` again
    """

    @classmethod
    def of(cls, client: Any) -> Catalog:
        """The same tiled node as ``client`` (a ``CatalogOfBlueskyRuns``), as a Catalog."""
        return cls(client.context, item=client.item, structure_clients=client.structure_clients)

    @property
    def instrument(self) -> str:
        return str(self.item["id"])

    @property
    def client(self) -> Catalog:
        """This catalog (kept for code written when ``Catalog`` wrapped the client)."""
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._by_uid(key)
        if isinstance(key, slice):
            return self._recent_slice(key)
        if isinstance(key, list | tuple):
            return [self[k] for k in key]
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise UsageError(
                f"look runs up by -N, a slice like -3:, scan_id or uid prefix, not {key!r}"
            )
        if key < 0:
            return self._recent(int(key))
        if key == 0:
            raise UsageError("db[0] is not a run: use db[-1] for the latest, db[N] for scan_id N")
        return self._by_scan_id(int(key))

    def search(self, query: Any) -> Any:
        """tiled queries (``Key('plan_name') == 'scan'``, ``Contains``, ``FullText`` ...)
        on start-document keys unless the key starts with ``stop.``; a dict is equality
        on each of its keys (as databroker users write ``db.search({'plan_name': 'scan'})``).
        """
        if not isinstance(query, dict):
            return super().search(query)
        from tiled.queries import Eq

        result: Any = self
        for key, value in query.items():
            if not isinstance(key, str) or isinstance(value, dict):
                raise UsageError(
                    f"db.search with a dict takes {{'key': value}} pairs (equality), not "
                    f"{key!r}: {value!r}; use tiled.queries (Key('x') > 1) for the rest"
                )
            result = result.search(Eq(key, value))
        return result

    def find(self, text: str) -> Any:
        """The run a user typed on a command line: ``-1`` the latest (``-N`` back),
        ``42`` the latest run with scan_id 42, anything else a uid prefix. Digits that
        name no scan_id are tried as a uid prefix too: a uid's first characters can all
        be digits (``88819598``), and a scan_id is rarely that long."""
        try:
            key: int | str = int(text)
        except ValueError:
            key = text
        if not isinstance(key, int) or key <= 0 or len(text) < MIN_UID_PREFIX:
            return self[key]
        try:
            return self._by_scan_id(key)
        except RunNotFoundError:
            try:
                return self._by_uid(text)
            except RunNotFoundError:
                raise RunNotFoundError(
                    f"no run with scan_id {key} or uid starting {text!r} for {self.instrument!r}"
                ) from None

    def _recent(self, key: int) -> Any:
        # A negative index is one request sorted newest first. Not len() first: tiled's
        # client caches a container's length for a second, so a catalog opened before a
        # run was stored would say "no runs" (or miss the newest) for that long.
        try:
            return self.values()[key]
        except IndexError:
            n = len(self)
            if n == 0:
                raise RunNotFoundError(
                    f"no runs stored for instrument {self.instrument!r} yet"
                ) from None
            raise RunNotFoundError(
                f"db[{key}]: only {n} run(s) stored for {self.instrument!r}"
            ) from None

    def _recent_slice(self, key: slice) -> list[Any]:
        """``db[-N:]``, ``db[-N:-M]``: recent runs, oldest first, as a list."""
        start, stop = key.start, key.stop
        if not isinstance(start, int) or start >= 0 or (stop is not None and stop > 0):
            raise UsageError(
                "slices count back from the latest run: db[-3:] or db[-5:-2], "
                f"not db[{_slice(key)}]"
            )
        runs = list(self.values().tail(-start))
        if stop is not None:
            runs = runs[: max(0, len(runs) + stop)]
        return runs[:: key.step] if key.step else runs

    def _by_scan_id(self, scan_id: int) -> Any:
        from tiled.queries import Eq

        results = super().search(Eq("start.scan_id", scan_id))
        if not len(results):
            raise RunNotFoundError(f"no run with scan_id {scan_id} for {self.instrument!r}")
        # scan_ids repeat (RE.md['scan_id'] resets); the latest is what users mean.
        return results.values()[-1]

    def _by_uid(self, prefix: str) -> Any:
        from tiled.queries import Like

        if len(prefix) < MIN_UID_PREFIX:
            raise UsageError(
                f"uid prefix {prefix!r} is too short: give at least {MIN_UID_PREFIX} characters"
            )
        if any(c in prefix for c in "%_\\"):
            raise UsageError(f"uid prefix {prefix!r} contains a wildcard character")
        found = super().search(Like("start.uid", f"{prefix}%")).values().head(2)
        if len(found) > 1:
            raise AmbiguousUidError(
                f"uid prefix {prefix!r} matches several runs: give more characters"
            )
        if not found:
            raise RunNotFoundError(f"no run with uid starting {prefix!r} for {self.instrument!r}")
        return found[0]

    def summaries(self, limit: int = 20) -> list[RunSummary]:
        """The ``limit`` most recent runs, newest first."""
        if limit <= 0:
            return []
        runs = list(self.values().tail(limit))
        return [_summary(run) for run in reversed(runs)]


def _slice(key: slice) -> str:
    parts = ["" if v is None else str(v) for v in (key.start, key.stop, key.step)]
    return ":".join(parts if key.step is not None else parts[:2])


def _summary(run: Any) -> RunSummary:
    md = run.metadata
    start: dict[str, Any] = dict(md.get("start") or {})
    stop: dict[str, Any] | None = md.get("stop")
    t = start.get("time")
    started = datetime.fromtimestamp(t, tz=UTC) if isinstance(t, int | float) else None
    claimed = None
    if stop is not None and stop.get("num_events") is not None:
        claimed = sum(int(v) for v in (stop.get("num_events") or {}).values())
    return RunSummary(
        uid=str(start.get("uid", "")),
        scan_id=start.get("scan_id"),
        plan_name=start.get("plan_name"),
        start_time=started,
        num_events=_count_events(run),
        exit_status=None if stop is None else stop.get("exit_status"),
        stop_num_events=claimed,
    )


def _count_events(run: Any) -> int:
    """Events stored: rows of each stream's event table."""
    base = run.base if hasattr(run, "base") else run
    total = 0
    for name in base:
        stream = base[name]
        stream = stream.base if hasattr(stream, "base") else stream
        if "internal" in stream:
            total += len(stream["internal"].read(columns=["seq_num"]))
    return total


def _connect(pod: LoadedPod, instrument: str | None, api_key: str | None) -> tuple[Any, str]:
    from beampod.store._client import connect

    name = instrument or pod.config.instrument_name
    pod.config.instrument(name)  # UsageError for an unknown instrument
    # The instrument's own reader key reads its container and nothing else.
    key = api_key or pod.secrets.for_instrument(name).tiled_reader_key.get_secret_value()
    url = tiled_url(pod)
    missing = StoreError(
        f"Tiled at {url} has no container for instrument {name!r} (is this the pod's store?)"
    )
    refused = refuses_connections(url)
    if refused is not None:
        # Before tiled's client, which would retry a refused connection for ~25 s.
        raise StoreError(
            f"cannot reach the pod's Tiled server at {url}: {refused}; is the pod up? "
            "(`beampod status`)"
        )
    try:
        # Straight to the container: an instrument's key may not read the root.
        return connect(f"{url}/api/v1/metadata/{name}", key), name
    except KeyError:
        raise missing from None
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            raise missing from None
        raise StoreError(f"Tiled at {url} refused to open {name!r}: {exc}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise StoreError(f"cannot reach the pod's Tiled server at {url}: {exc}") from None


def open_catalog(
    pod: LoadedPod, instrument: str | None = None, *, api_key: str | None = None
) -> Catalog:
    """The instrument's runs, read with the pod's read-only key unless ``api_key``."""
    client, name = _connect(pod, instrument, api_key)
    if not isinstance(client, CatalogOfBlueskyRuns):
        raise StoreError(f"Tiled's node {name!r} is not a catalog of Bluesky runs")
    return Catalog.of(client)


def list_runs(pod: LoadedPod, instrument: str | None = None, limit: int = 20) -> list[RunSummary]:
    """Most recent runs first, for ``beampod runs``."""
    return open_catalog(pod, instrument).summaries(limit)
