"""A stream's table made with its descriptor, and a run's streams closed off the
writer's path: against a real Tiled server, with real RunEngine documents."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow
import pytest

from beampod.store import RunSink, open_catalog, open_sink
from beampod.store._tables_ahead import guessed_schema
from tests.store.conftest import Docs, Server
from tests.store.helpers import column, events, items, start_uid, stored_seq_nums

MakeRun = Callable[..., Docs]


def _rows_schema(docs: Docs) -> pyarrow.Schema:
    """The schema TiledWriter gives a stream's table: its first rows' (``from_pylist``)."""
    rows = [
        {"seq_num": e["seq_num"], "time": e["time"], **e["data"]}
        | {f"ts_{k}": v for k, v in e["timestamps"].items()}
        for e in events(docs)
    ]
    return pyarrow.Table.from_pylist(rows).schema


def _descriptor(docs: Docs) -> dict[str, Any]:
    return next(d for n, d in docs if n == "descriptor")


def _requests(sink: RunSink) -> list[str]:
    made: list[str] = []
    client = sink._container.context.http_client
    client.event_hooks["request"].append(lambda r: made.append(f"{r.method} {r.url.path}"))
    return made


def _table(server: Server, uid: str) -> Any:
    return open_catalog(server.pod)[uid].base["primary"].base["internal"]


# -- the guess (no server) ---------------------------------------------------------


@pytest.mark.parametrize("plan", ["scan", "count"])
def test_the_guess_is_the_schema_of_a_real_runs_rows(make_run: MakeRun, plan: str) -> None:
    docs = make_run(plan, num=3)
    assert guessed_schema(_descriptor(docs)["data_keys"]) == _rows_schema(docs)


def test_dtype_numpy_decides_and_dtype_stands_in_for_it() -> None:
    schema = guessed_schema(
        {
            "i": {"dtype": "number", "dtype_numpy": "<i4", "shape": []},
            "u": {"dtype": "integer", "dtype_numpy": "<u2", "shape": []},
            "f": {"dtype": "number", "dtype_numpy": "<f4", "shape": []},
            "b": {"dtype": "boolean", "shape": []},
            "s": {"dtype": "string", "dtype_numpy": "<U8", "shape": []},
            "n": {"dtype": "integer", "shape": []},
        }
    )
    assert schema is not None
    types = {f.name: f.type for f in schema}
    # Python's values, as TiledWriter's rows carry them: int, int, float, bool, str, int.
    assert types == {
        "seq_num": pyarrow.int64(),
        "time": pyarrow.float64(),
        "i": pyarrow.int64(),
        "u": pyarrow.int64(),
        "f": pyarrow.float64(),
        "b": pyarrow.bool_(),
        "s": pyarrow.string(),
        "n": pyarrow.int64(),
        **{f"ts_{k}": pyarrow.float64() for k in "iufbsn"},
    }
    assert schema.names[2:8] == list("iufbsn")  # the descriptor's order


@pytest.mark.parametrize(
    "data_key",
    [
        {"dtype": "array", "shape": [4]},
        {"dtype": "number", "shape": [], "external": "FILESTORE:"},
        {"dtype": "number", "shape": [], "dtype_numpy": [["x", "<f8"]]},
        {"dtype": "number", "shape": [], "dtype_numpy": "<c16"},
        {"dtype": "object", "shape": []},
        "not a mapping",
    ],
)
def test_no_guess_where_the_descriptor_does_not_tell(data_key: Any) -> None:
    assert guessed_schema({"ok": {"dtype": "number", "shape": []}, "x": data_key}) is None


# -- against Tiled -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Server:
    """A Tiled server on each backend (a table is rows of one shared SQL table)."""
    return request.getfixturevalue("tiled_server" if request.param == "sqlite" else "pg_server")


def _assert_stored_as_tiledwriter_stores(store: Server, docs: Docs) -> None:
    """The run's table has the schema TiledWriter gives it, and every event's values."""
    uid = start_uid(docs)
    assert _table(store, uid).structure().arrow_schema_decoded == _rows_schema(docs)
    run = open_catalog(store.pod)[uid]
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))
    assert stored_seq_nums(run) == [e["seq_num"] for e in events(docs)]


@pytest.mark.pod
def test_the_table_is_made_with_the_descriptor_and_the_first_rows_only_append(
    store: Server, make_run: MakeRun
) -> None:
    docs = make_run("scan", num=5)
    batch = items(docs)
    sink = open_sink(store.pod)
    made = _requests(sink)
    assert not sink.write_batch(batch[:2]).rejected  # start, descriptor
    assert [m.split(" ")[0] for m in made] == ["POST", "POST", "POST"], made
    assert made[-1].endswith("/primary")  # the table's creation, under the stream
    assert stored_seq_nums(open_catalog(store.pod)[start_uid(docs)]) == []
    del made[:]
    assert not sink.write_batch(batch[2:-1]).rejected  # the events
    assert [m.split(" ")[0] for m in made] == ["PATCH"], made
    assert not sink.write_batch(batch[-1:]).rejected
    _assert_stored_as_tiledwriter_stores(store, docs)


@pytest.mark.pod
def test_rows_of_other_types_remake_the_table_as_tiledwriter_would(
    store: Server, make_run: MakeRun
) -> None:
    """The descriptor says number (a double), the device gives ints: TiledWriter would
    make an int64 column of the first rows, so the empty table is made again."""
    docs = copy.deepcopy(make_run("count", num=4))
    for event in events(docs):
        event["data"]["det"] = round(event["data"]["det"] * 100)
    desc = _descriptor(docs)
    desc["data_keys"]["det"].pop("dtype_numpy", None)
    assert guessed_schema(desc["data_keys"]) != _rows_schema(docs)
    sink = open_sink(store.pod)
    made = _requests(sink)
    result = sink.write_batch(items(docs))
    assert not result.rejected and result.written == len(docs)
    _assert_stored_as_tiledwriter_stores(store, docs)
    assert _rows_schema(docs).field("det").type == pyarrow.int64()
    # The guessed table was deleted before any row was sent to it.
    deleted = [i for i, m in enumerate(made) if m.startswith("DELETE /api/v1/metadata/")]
    appended = [i for i, m in enumerate(made) if m.startswith("PATCH /api/v1/table/partition/")]
    assert len(deleted) == 1 and made[deleted[0]].endswith("/primary/internal"), made
    assert deleted[0] < appended[0], made


@pytest.mark.pod
def test_a_stream_without_events_has_an_empty_table_a_new_writer_appends_to(
    store: Server, make_run: MakeRun
) -> None:
    docs = make_run("count", num=3)
    batch = items(docs)
    assert not open_sink(store.pod).write_batch(batch[:2]).rejected
    run = open_catalog(store.pod)[start_uid(docs)]
    assert len(run.primary.read()["det"]) == 0
    # That writer died; a new one gets the events (its state rebuilt from Tiled).
    resumed = open_sink(store.pod).write_batch(batch[2:])
    assert not resumed.rejected and resumed.written == 4
    run = open_catalog(store.pod)[start_uid(docs)]
    np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))


class _Held:
    """An executor that keeps what it is given until told to run it."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def submit(self, fn: Callable[[], None]) -> None:
        self.calls.append(fn)

    def run_all(self) -> None:
        while self.calls:
            self.calls.pop(0)()


@pytest.mark.pod
def test_a_runs_streams_close_after_its_batch_returned(
    tiled_server: Server, make_run: MakeRun
) -> None:
    """The stop is stored when ``write_batch`` returns; the requests that tell Tiled's
    live subscribers the run's streams ended come after, from the sink's executor,
    for the same nodes in the same order as TiledWriter's, and Tiled takes them."""
    docs = make_run("count", num=2)
    batch = items(docs)
    held = _Held()
    sink = RunSink(open_sink(tiled_server.pod)._container, stream_closes=held)  # type: ignore[arg-type]
    assert not sink.write_batch(batch[:-1]).rejected
    answered: list[tuple[str, int]] = []
    client = sink._container.context.http_client
    client.event_hooks["response"].append(
        lambda r: answered.append((f"{r.request.method} {r.request.url.path}", r.status_code))
    )
    assert not sink.write_batch(batch[-1:]).rejected  # the stop
    assert open_catalog(tiled_server.pod)[start_uid(docs)].metadata["stop"]["uid"]
    assert not any("/stream/close/" in m for m, _ in answered), answered
    assert len(held.calls) == 1
    held.run_all()
    closes = [(m, status) for m, status in answered if "/stream/close/" in m]
    assert [(m.rsplit("/", 1)[-1], status) for m, status in closes] == [
        ("internal", 200),
        ("primary", 200),
        (start_uid(docs), 200),
    ]


@pytest.mark.pod
def test_a_sink_closes_a_runs_streams_on_its_own_thread(
    tiled_server: Server, make_run: MakeRun
) -> None:
    docs = make_run("count", num=2)
    sink = open_sink(tiled_server.pod)
    closed = threading.Event()
    threads: list[str] = []
    client = sink._container.context.http_client

    def seen(request: Any) -> None:
        if "/stream/close/" in request.url.path and request.url.path.endswith(start_uid(docs)):
            threads.append(threading.current_thread().name)
            closed.set()

    client.event_hooks["request"].append(seen)
    assert not sink.write_batch(items(docs)).rejected
    assert closed.wait(30), "the run's streams were never closed"
    assert threads[0].startswith("beampod-stream-closes"), threads
