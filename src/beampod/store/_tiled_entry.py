"""A request's node found with one lookup, not one per path segment.

tiled's ``get_entry`` (every request that names a node) walks the path from the root
one segment at a time, asking each node's adapter for the next (``lookup_adapter``
with one segment) so that an access policy can filter at every level. A table append
to ``/demo/<run>/primary/internal`` made four node queries that way, each with its
ORM loading, about a third of Tiled's ~4 ms of CPU per append (docs/benchmarks.md).

beampod's Tiled has no access policy: the pod's API-key gate (``_auth.py``) decides who
may reach which path before a request gets to tiled. With no policy, tiled's filter at
each level is a no-op and the walk ends where one ``lookup_adapter`` of the whole path
does (tiled's own comment: the adapter "can jump directly to the node of interest, but
currently doesn't, to ensure access_policy is applied"). :func:`install_direct_entry`
makes ``get_entry`` do that one lookup (``_tiled_fast``'s prepared statement) when
there is no access policy and no session state. Anything else -- an access policy, a
missing node, a broken link, a node of another structure family than the endpoint
takes -- goes to tiled's own ``get_entry``, so its errors and messages are tiled's.

Pinned: :data:`PINNED_GET_ENTRY_SHA256` is the hash of the tiled function this wraps;
when tiled changes it the wrapper is not installed (logged) and
``tests/store/test_tiled_entry.py`` fails, so it is re-read against the new code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from beampod.store._pins import replace_pinned, source_sha256

# sha256 of ``inspect.getsource(tiled.server.dependencies.get_entry)`` in the locked tiled.
PINNED_GET_ENTRY_SHA256 = "a549c525cf662a1df1bdff41534549e60d8f18daa675056cc96ef331b35c6ba5"
_MARK = "_beampod_direct_entry"

GetEntry = Callable[..., Coroutine[Any, Any, Any]]


def upstream_get_entry_hash() -> str:
    from tiled.server import dependencies

    return source_sha256(dependencies.get_entry)


async def lookup_at_once(
    root_tree: Any, path_parts: list[str], session_state: Any, access_policy: Any
) -> Any:
    """The node at ``path_parts`` in one lookup, or None where tiled's own walk must
    decide: an access policy or session state that could filter on the way, the root
    itself, a missing node, a broken link."""
    from tiled.server.core import NoEntry
    from tiled.utils import BrokenLink

    if (
        access_policy is not None
        or session_state
        or not path_parts
        or not hasattr(root_tree, "lookup_adapter")
    ):
        return None
    try:
        return await root_tree.lookup_adapter(path_parts)
    except (NoEntry, BrokenLink):
        return None  # tiled's walk gives tiled's answer


def direct_entry(original: GetEntry) -> GetEntry:
    """``get_entry`` that looks the whole path up at once when no access policy (and no
    session state) can filter on the way; ``original`` for everything else."""

    async def get_entry(
        path: str,
        security_scopes: list[str],
        principal: Any,
        authn_access_tags: Any,
        authn_scopes: Any,
        root_tree: Any,
        session_state: dict[str, Any],
        metrics: dict[str, Any],
        structure_families: set[Any] | None = None,
        access_policy: Any = None,
    ) -> Any:
        path_parts = [segment for segment in path.split("/") if segment]
        entry = await lookup_at_once(root_tree, path_parts, session_state, access_policy)
        if entry is not None and (
            structure_families is None or entry.structure_family in structure_families
        ):
            return entry
        return await original(
            path,
            security_scopes,
            principal,
            authn_access_tags,
            authn_scopes,
            root_tree,
            session_state,
            metrics,
            structure_families,
            access_policy,
        )

    get_entry.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(get_entry, _MARK, True)
    return get_entry


def install_direct_entry() -> bool:
    """Make tiled's routes find their node with one lookup (this process only, once).

    Only when tiled's ``get_entry`` is the one this was written against (its source
    hash); returns whether the direct lookup is in place."""
    from tiled.server import dependencies, router

    # The routes call the name their module imported; the dependencies module keeps
    # tiled's own, which this wraps.
    return replace_pinned(
        router,
        "get_entry",
        lambda _: direct_entry(dependencies.get_entry),
        mark=_MARK,
        upstream_sha256=upstream_get_entry_hash(),
        pinned_sha256=PINNED_GET_ENTRY_SHA256,
        changed="tiled's get_entry changed; nodes are found by tiled's own walk",
    )
