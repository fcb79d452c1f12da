"""``db`` in a session: the instrument's catalog, opened on first use, and consistent
with the session's own RunEngine.

``db`` forwards everything to the catalog (:class:`beampod.store.Catalog`, a
bluesky-tiled-plugins ``CatalogOfBlueskyRuns``): ``db[-1]``, ``db[-3:]``,
``db[scan_id]``, ``db['uid prefix']``, ``db.search(...)``, ``db.v2``, ``db.values()``...

The data path is asynchronous (RunEngine -> bus -> writer -> Tiled), so right after
``RE(...)`` returns, the run may not be in Tiled yet; ``db[-1]`` would then quietly be
the run before, and ``db[uid]`` would not find it. ``db`` therefore watches this
session's documents and, before any lookup (indexing, ``search``, ``values()``,
``len``...), first waits (bounded by ``db.wait_s``) until the newest run this session
made is stored -- with its stop document if the session saw it stop. If it does not
arrive in time, the error says so instead of answering without it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

from beampod.config import LoadedPod
from beampod.errors import StoreError

_POLL_S = 0.1  # poll interval of the bounded wait below
_TELL_AFTER_S = 1.0  # say that we wait, once, after this long


class LazyCatalog:
    """``db``: the instrument's catalog, opened on first use (the store may start later
    than the session). Without a data path it explains that instead of failing oddly."""

    def __init__(
        self, pod: LoadedPod, instrument: str | None = None, *, wait_s: float = 30.0
    ) -> None:
        self._pod = pod
        self._instrument = instrument
        self._catalog: Any = None
        self.wait_s = wait_s
        self._latest: str | None = None  # start uid of this session's newest run
        self._latest_stopped = False
        self._confirmed: str | None = None  # newest own run seen complete in the store

    # -- following the session's RunEngine ---------------------------------------------

    def observe(self, name: str, doc: dict[str, Any]) -> None:
        """RunEngine callback: remember this session's newest run."""
        if name == "start":
            self._latest, self._latest_stopped = doc.get("uid"), False
        elif name == "stop" and doc.get("run_start") == self._latest:
            self._latest_stopped = True

    def _wait_for_own_run(self) -> None:
        uid, stopped = self._latest, self._latest_stopped
        if uid is None or uid == self._confirmed:
            return
        t0 = time.monotonic()
        told = False
        while True:
            run = self._stored(uid)
            if run is not None and (not stopped or run.metadata.get("stop")):
                if stopped:
                    self._confirmed = uid
                return
            waited = time.monotonic() - t0
            if waited > self.wait_s:
                raise StoreError(
                    f"run {uid[:8]} of this session is not {'completely ' if run else ''}in "
                    f"the store after {self.wait_s:g} s, so db would answer without it. "
                    "The writer may be behind or down (`beampod status`, `beampod logs "
                    "writer`); the run's documents are safe on the bus or in the local "
                    "spool (`RE.publisher.status()`)."
                )
            if not told and waited > _TELL_AFTER_S:
                print(
                    f"db: waiting for the writer to store run {uid[:8]} ...",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(_POLL_S)

    def _stored(self, uid: str) -> Any:
        from beampod.store import RunNotFoundError

        try:
            return self._get()[uid]
        except RunNotFoundError:
            return None

    # -- the catalog ----------------------------------------------------------------------

    def _opener(self) -> Any:
        import beampod.store

        return getattr(beampod.store, "open_catalog", None)

    def _get(self) -> Any:
        if self._catalog is None:
            opener = self._opener()
            if opener is None:
                raise StoreError(
                    "the data path is not configured: this beampod has no "
                    "beampod.store.open_catalog, so db is not available"
                )
            args = (self._pod,) if self._instrument is None else (self._pod, self._instrument)
            self._catalog = opener(*args)
        return self._catalog

    def _fresh(self) -> Any:
        """The catalog, once this session's newest run is in it."""
        catalog = self._get()
        self._wait_for_own_run()
        return catalog

    def __getitem__(self, key: Any) -> Any:
        return self._fresh()[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._fresh(), name)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        if self._catalog is not None:
            names.update(n for n in dir(self._catalog) if not n.startswith("_"))
        return sorted(names)

    def __len__(self) -> int:
        return len(self._fresh())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fresh())

    def __contains__(self, key: object) -> bool:
        return key in self._fresh()

    def __repr__(self) -> str:
        if self._catalog is not None:
            return repr(self._catalog)
        if self._opener() is None:
            return "<db: the data path is not configured (no beampod.store.open_catalog)>"
        name = self._instrument or self._pod.config.instrument_name
        return f"<db: catalog of instrument {name!r}, opened on first use>"
