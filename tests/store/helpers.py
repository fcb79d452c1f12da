"""Small helpers shared by the store tests (no fixtures here)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from beampod.store import Item, items_from

Docs = list[tuple[str, dict[str, Any]]]


def with_run_uid(docs: Docs, new_uid: str) -> Docs:
    """The same run under another uid (start uid and every run_start reference)."""
    old = next(d["uid"] for n, d in docs if n == "start")
    out: Docs = []
    for name, doc in docs:
        doc = copy.deepcopy(doc)
        if name == "start":
            doc["uid"] = new_uid
        if doc.get("run_start") == old:
            doc["run_start"] = new_uid
        if name == "descriptor":
            doc["uid"] = str(uuid.uuid4())
        out.append((name, doc))
    # Events point at descriptors by uid: follow the renaming.
    renames = {
        a["uid"]: b["uid"] for (na, a), (_, b) in zip(docs, out, strict=True) if na == "descriptor"
    }
    for name, doc in out:
        if name == "event":
            doc["descriptor"] = renames[doc["descriptor"]]
    return out


def items(docs: Docs) -> list[Item]:
    return items_from(docs)


def events(docs: Docs) -> list[dict[str, Any]]:
    return [d for n, d in docs if n == "event"]


def start_uid(docs: Docs) -> str:
    return next(str(d["uid"]) for n, d in docs if n == "start")


def column(docs: Docs, key: str) -> np.ndarray:
    return np.array([e["data"][key] for e in sorted(events(docs), key=lambda e: e["seq_num"])])


def stored_seq_nums(run: Any, stream: str = "primary") -> list[int]:
    """seq_num column of the stream's event table, straight from Tiled."""
    table = run.base[stream].base["internal"].read(columns=["seq_num"])
    return [int(v) for v in table["seq_num"]]


def local_catalog(root: Path, tables_uri: str, *, streaming: bool = False) -> Any:
    """A writable tiled catalog under ``root`` (its nodes in SQLite), its tables stored
    at ``tables_uri``: for a test of the server's code without a server. ``streaming``:
    with an in-memory streaming cache, as the pod's server has (live subscriptions).

    Initialised as the pod's server initialises its catalog (``init_catalog``, in this
    process), not with tiled's ``init_if_not_exists``, which starts ``tiled catalog
    init`` in a new Python (~2.7 CPU-s a catalog). In a thread of its own, since the
    caller may be inside an event loop."""
    from concurrent.futures import ThreadPoolExecutor

    from tiled.catalog import from_uri

    from beampod.store._catalogdb import init_catalog

    uri = f"sqlite+aiosqlite:///{root / 'catalog.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(init_catalog, uri).result()
    cache = {"cache_config": {"uri": "memory"}} if streaming else {}
    return from_uri(uri, writable_storage=[str(root / "data"), tables_uri], **cache)


def memory_catalog(writable_storage: list[str]) -> Any:
    """tiled's ``in_memory`` catalog without the ``tiled catalog init`` it starts in a
    new Python for a database that Python cannot see: tiled creates an in-memory
    catalog's tables at its ``startup``, in this process."""
    from tiled.catalog import from_uri

    return from_uri("sqlite:///:memory:", writable_storage=writable_storage)


async def create_sql_table(catalog: Any, key: str, structure: Any) -> Any:
    """A table node of ``structure`` stored in the catalog's SQL table storage, made
    as tiled's server makes one (its schema's ``DataSource``, which a catalog with a
    streaming cache requires)."""
    from tiled.server.schemas import DataSource
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import Management

    return await catalog.create_node(
        StructureFamily.table,
        metadata={},
        key=key,
        data_sources=[
            DataSource(
                structure_family=StructureFamily.table,
                structure=structure,
                management=Management.writable,
                mimetype="application/x-tiled-sql-table",
            )
        ],
    )


def get_as_writer(server: Any, path: str, **kw: Any) -> Any:
    """``GET path`` from a test Tiled server (``tests.store.conftest.Server``) with its
    writer key; ``kw`` as httpx takes them (extra ``headers`` are added)."""
    import httpx

    headers = {"Authorization": f"Apikey {server.key('writer')}", **kw.pop("headers", {})}
    return httpx.get(f"{server.url}{path}", headers=headers, trust_env=False, **kw)


#: The media type of an Arrow file, as tiled's client sends a table's rows.
ARROW = "application/vnd.apache.arrow.file"


def arrow_file(table: Any) -> bytes:
    """``table`` (a pyarrow Table) as the body of an Arrow-file append."""
    import io

    import pyarrow.ipc

    sink = io.BytesIO()
    with pyarrow.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def start_subscription(sub: Any, timeout_s: float = 30.0) -> None:
    """Start tiled's live subscription ``sub`` from its first message (one published
    before the server's side of the websocket listened is replayed, not missed).
    tiled's ``start_in_thread`` waits for the connection without a deadline (a refused
    one never comes): given ``timeout_s`` here."""
    import threading

    starting = threading.Thread(target=sub.start_in_thread, kwargs={"start": 1}, daemon=True)
    starting.start()
    starting.join(timeout_s)
    assert not starting.is_alive(), f"the subscription was not connected within {timeout_s:g} s"
