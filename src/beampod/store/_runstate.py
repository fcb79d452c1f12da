"""One run's writing state, and how to rebuild it from what Tiled already holds.

The writing itself is bluesky-tiled-plugins' ``_RunWriter`` (behind its
``RunNormalizer``), so the layout in Tiled is exactly TiledWriter's. What this
module adds is the knowledge TiledWriter keeps only in memory -- which descriptors
and which events of a run are already stored -- so that a redelivered document, a
restarted writer or a replayed run is recognised and skipped instead of answered
with 409 Conflict (start/descriptor) or KeyError (events of a run this process
never saw start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy

# bluesky-tiled-plugins' TiledWriter calls ``pyarrow.compute`` when it retries an append
# (Tiled unreachable or answering 5xx) without importing it: pandas' import did, and a
# writer no longer imports pandas (ADR 13).
import pyarrow.compute  # noqa: F401
from bluesky_tiled_plugins.writing.tiled_writer import (
    RESERVED_DATA_KEYS,
    RunNormalizer,
    _RunWriter,
)
from tiled.client.container import Container

from beampod.store._arrow_read import read_columns
from beampod.store._ordered import Later, SeqOrderedRunWriter
from beampod.store._tables_ahead import create_table_ahead

Outcome = Literal["written", "duplicate"]

# Rows are written when the sink flushes at the end of each batch, never because a
# cache filled up, so that "write_batch returned" means "stored".
_NEVER = 2**62
#: Largest array (elements) stored as a list column of the event table; TiledWriter's
#: default is 16. 0: every array gets an array node of its own. Tiled's SQLite tables
#: have no list type (a 4-element spectrum was refused with 500 "Unsupported PyArrow
#: type: list<item: double>", at every retry), and PostgreSQL's list columns read back
#: through the client as text ('[0. 1. 2. 3.]'), tiled 0.2.20.
MAX_TABLE_ARRAY_SIZE = 0


class _Normalizer(RunNormalizer):
    """RunNormalizer without its per-document schema validation: the sink validates
    every incoming document first, so validating again would only double the cost."""

    def emit(self, name: Any, doc: Any) -> None:
        self.dispatcher.process(name, doc)


@dataclass(eq=False)  # hashable by identity: the dispatcher stores it in a dict
class _Forward:
    """Normalizer -> writer link that can be muted while replaying stored descriptors
    into the normalizer (to rebuild its state without writing them again)."""

    writer: _RunWriter
    muted: bool = False

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if not self.muted:
            self.writer(name, doc)


@dataclass
class StreamState:
    name: str
    data_keys: frozenset[str]
    # Events may skip the normalizer when it would not change them (no external
    # data, no reserved key names): saves two deep copies per event.
    direct: bool
    # Highest seq_num stored (or queued in this batch). Bluesky numbers the events
    # of a stream 1, 2, 3... in emission order and the bus keeps that order, so the
    # next new event must carry ``high_water + 1``; anything else is not stored.
    high_water: int = 0
    # Identity of every stored event by seq_num: (time, uid). The uid is known for
    # events this process stored; for events rebuilt from Tiled only the time (the
    # table has seq_num and time, not the event uid). None: an array-only stream
    # whose rows carry no seq_num or time, where a stored seq_num is all we know.
    stored: dict[int, tuple[float, str | None] | None] = field(default_factory=dict)
    # The row column of each data key's timestamp (``ts_<key>``), made once per stream
    # rather than formatted for every event.
    ts_columns: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ts_columns = {k: f"ts_{k}" for k in self.data_keys}

    def verdict(self, doc: dict[str, Any], next_seq: int) -> str:
        """``"duplicate"`` (this very event is stored), ``"new"`` (the next event of
        the stream), or a one-line reason why the event must not be stored."""
        seq = doc["seq_num"]
        stored = self.stored
        if seq == next_seq and seq not in stored:  # the common case, first
            return "new"
        known = stored.get(seq, _MISSING)
        if known is None:
            return "duplicate"
        if known is not _MISSING:
            time, uid = known
            if (uid is None or uid == doc["uid"]) and time == doc["time"]:
                return "duplicate"
            return (
                f"event seq_num {seq} of stream {self.name!r} (uid {doc['uid']}) differs "
                f"from the stored event with that seq_num"
                f"{f' (uid {uid})' if uid else ''}: duplicate seq_num, not stored"
            )
        if seq != next_seq:
            return (
                f"event seq_num {seq} of stream {self.name!r} is out of order: the next "
                f"event of the stream is seq_num {next_seq}; not stored"
            )
        return "new"

    def record(self, doc: dict[str, Any]) -> None:
        seq = doc["seq_num"]
        self.stored[seq] = (doc["time"], doc["uid"])
        if seq > self.high_water:
            self.high_water = seq


_MISSING: Any = object()


def _stream_for(doc: dict[str, Any]) -> StreamState:
    keys = doc.get("data_keys", {})
    direct = all("external" not in v for v in keys.values()) and not (
        set(RESERVED_DATA_KEYS) & keys.keys()
    )
    return StreamState(doc["name"], frozenset(keys), direct)


def _array_keys(writer: _RunWriter, stream: str, data_keys: dict[str, Any]) -> None:
    """Same classification _RunWriter.descriptor does for a *new* stream (which
    internal keys go to zarr or ragged arrays); needed when the stream already exists."""
    for key, val in data_keys.items():
        if "external" in val or val.get("dtype") != "array":
            continue
        shape = val.get("shape", ())
        dt = val.get("dtype_numpy")
        if None in shape:
            writer._int_ragged_array_keys[stream].add(key)
        elif (0 <= writer._max_array_size < math.prod(shape)) or (
            dt and numpy.dtype(dt).kind in {"U", "S", "O"}
        ):
            writer._int_array_keys[stream].add(key)


@dataclass
class RunState:
    uid: str
    writer: _RunWriter
    normalizer: _Normalizer
    forward: _Forward
    streams: dict[str, StreamState] = field(default_factory=dict)
    descriptors: dict[str, StreamState] = field(default_factory=dict)
    stopped: bool = False
    stop_uid: str | None = None
    # Message ids whose rows sit in the writer's cache until the next flush.
    pending: list[tuple[str, str]] = field(default_factory=list)
    # The writer's row cache of each descriptor uid (see :meth:`event`).
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def new(cls, client: Container, uid: str, later: Later | None = None) -> RunState:
        """``later``: where the run's streams are closed after its stop (None: at once,
        as TiledWriter does)."""
        writer = SeqOrderedRunWriter(
            client, batch_size=_NEVER, max_array_size=MAX_TABLE_ARRAY_SIZE, later=later
        )
        normalizer = _Normalizer()
        forward = _Forward(writer)
        normalizer.subscribe(forward)
        return cls(uid, writer, normalizer, forward)

    # -- documents ---------------------------------------------------------------

    def start(self, doc: dict[str, Any]) -> None:
        self.normalizer("start", doc)

    def descriptor(self, doc: dict[str, Any]) -> Outcome:
        if doc["uid"] in self.descriptors:
            return "duplicate"
        self.normalizer("descriptor", doc)
        self._register(doc)
        if self.streams[doc["name"]].direct:
            # The normalized data keys (with their dtype_numpy), in the descriptor's order.
            known = self.writer.data_keys
            keys = {k: known.get(k, v) for k, v in doc.get("data_keys", {}).items()}
            create_table_ahead(self.writer, doc["name"], keys)
        return "written"

    def _register(self, doc: dict[str, Any]) -> None:
        stream = self.streams.get(doc["name"])
        if stream is None:
            stream = self.streams[doc["name"]] = _stream_for(doc)
        else:  # a configuration update of an existing stream: same table
            new = _stream_for(doc)
            stream.data_keys, stream.direct = new.data_keys, new.direct
            stream.ts_columns = new.ts_columns
        self.descriptors[doc["uid"]] = stream

    def event(self, doc: dict[str, Any], msg_id: str, stream: StreamState) -> Outcome:
        """Queue a *new* event (the caller checked :meth:`StreamState.verdict`)."""
        if stream.direct:
            # The row ``_RunWriter.event`` caches, put in its cache list directly (the
            # list is looked up once per descriptor: the writer only ever clears it).
            desc = doc["descriptor"]
            rows = self.rows.get(desc)
            if rows is None:
                w = self.writer
                rows = self.rows[desc] = w._internal_data_cache[w._desc_nodes[desc].item["id"]]
            row = {"seq_num": doc["seq_num"], "time": doc["time"], **doc["data"]}
            columns = stream.ts_columns
            for k, v in doc["timestamps"].items():
                row[columns.get(k) or f"ts_{k}"] = v
            rows.append(row)
        else:
            self.normalizer("event", doc)
        stream.record(doc)
        self.pending.append((msg_id, "event"))
        return "written"

    def other(self, name: str, doc: dict[str, Any]) -> None:
        """resource / datum / stream_resource / stream_datum: normalizer decides."""
        self.normalizer(name, doc)

    def missing_events(self, doc: dict[str, Any]) -> str:
        """For a stop not stored yet: the streams with fewer events stored than its
        ``num_events`` says (``"primary: 77 of 170"``), or "" when none are missing."""
        if self.stopped:
            return ""
        missing = []
        for name, count in (doc.get("num_events") or {}).items():
            stream = self.streams.get(name)
            have = stream.high_water if stream is not None else 0
            if isinstance(count, int) and have < count:
                missing.append(f"{name}: {have} of {count}")
        return ", ".join(missing)

    def stop(self, doc: dict[str, Any]) -> Outcome | str:
        """ "written", "duplicate" (this stop is stored), or the reason a second,
        different stop document is not stored."""
        if self.stopped:
            if self.stop_uid in (None, doc["uid"]):
                return "duplicate"
            return (
                f"second stop document (uid {doc['uid']}, exit_status "
                f"{doc.get('exit_status')!r}) for run {self.uid}, which already has stop "
                f"{self.stop_uid}; not stored"
            )
        self.normalizer("stop", doc)  # _RunWriter.stop writes cached rows first
        self.stopped = True
        self.stop_uid = doc["uid"]
        self.pending.clear()
        return "written"

    def flush(self) -> None:
        """Write every cached row of this run: one table append per stream."""
        w = self.writer
        for name, cache in w._internal_data_cache.items():
            if cache:
                w._write_internal_data(cache, desc_node=w._desc_nodes[name])
                cache.clear()
        self.pending.clear()

    # -- rebuilding from Tiled ----------------------------------------------------

    @classmethod
    def load(cls, client: Container, uid: str, later: Later | None = None) -> RunState | None:
        """State of a run already (partly) in Tiled, or None if Tiled has no such run."""
        try:
            run = Container.__getitem__(client, uid)  # plain lookup, no partial-uid magic
        except KeyError:
            return None
        state = cls.new(client, uid, later)
        w = state.writer
        root = run.base if hasattr(run, "base") else run
        w.root_node = root
        metadata = dict(run.metadata)
        stop = metadata.get("stop")
        state.stopped = stop is not None
        if isinstance(stop, dict):
            state.stop_uid = stop.get("uid")
        state.forward.muted = True
        try:
            # The normalizer keeps per-run state too (descriptor names, internal vs
            # external keys); feeding it the start and stored descriptors rebuilds it.
            state.normalizer("start", dict(metadata.get("start", {})))
            for stream_name in list(root):
                state._load_stream(root, stream_name)
        finally:
            state.forward.muted = False
        return state

    def _load_stream(self, root: Container, stream_name: str) -> None:
        node = root[stream_name]
        base: Container = node.base if hasattr(node, "base") else node
        md = dict(base.metadata)
        descriptor = {k: v for k, v in md.items() if k != "_config_updates"}
        descriptor.update(name=stream_name, run_start=self.uid)
        w = self.writer
        self.normalizer("descriptor", descriptor)
        self._register(descriptor)
        stream = self.streams[stream_name]
        w.data_keys.update(descriptor.get("data_keys", {}))
        w._desc_nodes[stream_name] = base
        for uid in [descriptor.get("uid"), *(u["uid"] for u in md.get("_config_updates", []))]:
            if uid:
                w._desc_nodes[uid] = base
                self.descriptors[uid] = stream
        _array_keys(w, stream_name, descriptor.get("data_keys", {}))
        children = set(base)
        if "internal" in children:
            table = base["internal"]
            w._internal_tables[stream_name] = table
            rows = read_columns(table, ["seq_num", "time"])  # Arrow: no pandas
            seqs = [int(x) for x in rows["seq_num"]]
            stream.stored.update(zip(seqs, ((float(t), None) for t in rows["time"]), strict=True))
            if seqs:
                stream.high_water = max(seqs)
        for key in w._int_array_keys[stream_name] | w._int_ragged_array_keys[stream_name]:
            if key in children:
                array = base[key]
                w._internal_arrays[f"{stream_name}/{key}"] = array
                # Array-only streams have no seq_num column: rows == events stored.
                rows_n = int(array.shape[0])
                for seq in range(stream.high_water + 1, rows_n + 1):
                    stream.stored[seq] = None
                stream.high_water = max(stream.high_water, rows_n)
