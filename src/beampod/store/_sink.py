"""RunSink: the transport-independent half of the writer.

A bus consumer hands it batches of ``(name, doc, msg_id)``; ``write_batch`` returns
once everything it accepted is stored in Tiled, so the consumer can then ack the
whole batch. Three outcomes per message: written, duplicate (already stored: ack it),
rejected (permanently bad: dead-letter it with the reason). A Tiled outage raises
:class:`TransientStoreError` instead, and the consumer retries the same batch;
idempotency makes the retry safe.

A rejection may be *early*: the document came before others of its run that it needs
(an event past a missing seq_num, an event of an unknown descriptor, a document of a
run whose start is not stored, a stop before all its events). A bus can reorder a
publisher's pipelined messages when a cluster node fails over (the head of the window
lost, the rest stored), so a consumer that can hold it unacknowledged (the NATS writer,
``writer/_held.py``) offers it again once the missing documents are stored, instead of
dead-lettering it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, cast

import httpx
from event_model import unpack_event_page
from tiled.client.container import Container

from beampod.errors import StoreError
from beampod.store._health import health_container, tiled_stores_sync
from beampod.store._runstate import RunState, StreamState
from beampod.store._sinkresult import (
    BatchResult,
    Early,
    Item,
    Rejected,
    Rejection,
    http_detail,
    http_status,
    is_transient_http,
    translate,
)
from beampod.store._validate import event_keys_problem, fast_event_ok, schema_problem

log = logging.getLogger("beampod.store.sink")


def _run_hint(msg_id: str) -> str | None:
    """beampod message ids start with the run uid (``<run>:<name>:<key>``)."""
    head = msg_id.split(":", 1)[0]
    return head if head and head != "-" else None


class RunSink:
    """Stores bluesky documents into one instrument's Tiled container, exactly once.

    ``container`` is a writable tiled client node (the instrument's
    ``CatalogOfBlueskyRuns`` container). Not thread-safe: one consumer, one sink.
    """

    def __init__(
        self,
        container: Container,
        *,
        max_cached_runs: int = 64,
        stream_closes: Executor | None = None,
    ) -> None:
        """``stream_closes``: where a stopped run's streams are closed (a request per
        node, for Tiled's live subscribers; ``_ordered.py``), after ``write_batch``
        returned if need be. Default: one thread of this sink's own."""
        self._container = container.include_data_sources()
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._max_cached_runs = max_cached_runs
        if stream_closes is None:
            stream_closes = ThreadPoolExecutor(1, thread_name_prefix="beampod-stream-closes")
        self._later = stream_closes.submit

    @classmethod
    def from_uri(cls, uri: str, api_key: str, instrument: str) -> RunSink:
        from beampod.store._client import connect

        try:
            # Straight to the container: an instrument's key may not read the root.
            return cls(connect(f"{uri}/api/v1/metadata/{instrument}", api_key))
        except KeyError:
            raise StoreError(f"Tiled has no container {instrument!r}") from None
        except (httpx.HTTPError, OSError) as exc:
            if http_status(exc) == 404:
                raise StoreError(f"Tiled has no container {instrument!r}") from None
            raise translate(exc, "connecting to Tiled") from None

    # -- public -----------------------------------------------------------------

    def ping(self) -> None:
        """One un-retried request: raises TransientStoreError unless Tiled answers now."""
        try:
            resp = self._container.context.http_client.get(self._container.uri)
            resp.raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            raise translate(exc, "checking Tiled") from None

    def can_store(self) -> bool:
        """Tiled can store now (one real write in this instrument's health container,
        see ``_health.py``), not only answer: with a full disk it still answers reads.
        The container is this instrument's own, so the check never races the
        supervisor's, and an instrument's own key may make it. False when the write
        fails for any reason: the caller then keeps retrying rather than blame its
        documents."""
        ctx = self._container.context
        parent = health_container(self._container.item["id"])
        return tiled_stores_sync(ctx.http_client, str(ctx.api_uri), "writer", parent)

    def write_batch(self, items: Iterable[Item], waiting: Collection[str] = ()) -> BatchResult:
        """Store ``items`` (in order); see the module docstring for the outcomes.

        ``waiting``: message ids that will be delivered again if rejected as early. A
        stop before all its run's events is stored only when its id is not among them
        (a consumer that cannot wait, or has waited long enough: the missing events are
        then lost and the run is closed); every other early document is rejected
        either way, with ``early`` set.

        An empty batch is a health check (:meth:`ping`): callers use it to learn
        whether Tiled is back before retrying.
        """
        items = list(items)
        if not items:
            self.ping()
            return BatchResult()
        result = BatchResult()
        touched: dict[str, RunState] = {}
        try:
            for name, doc, msg_id in items:
                if name == "event" and self._plain_event(doc, msg_id, touched):
                    result.written += 1
                    continue
                try:
                    outcome = self._one(name, doc, msg_id, touched, msg_id in waiting)
                except Rejected as exc:
                    result.rejected.append(Rejection(msg_id, name, str(exc), exc.early))
                    continue
                if outcome == "duplicate":
                    result.duplicates += 1
                else:
                    result.written += 1
            self._flush(touched, result)
        except (httpx.HTTPError, OSError) as exc:
            # Whatever this process believed about these runs may now be wrong (a
            # request may or may not have been applied): forget it, so the retry
            # rebuilds the state from what Tiled actually holds.
            for uid in touched:
                self._runs.pop(uid, None)
            raise translate(exc, "writing to Tiled") from None
        return result

    def forget(self) -> None:
        """Drop all in-memory run state (it is rebuilt from Tiled on demand)."""
        self._runs.clear()

    # -- per document -------------------------------------------------------------

    def _plain_event(self, doc: Any, msg_id: str, touched: dict[str, RunState]) -> bool:
        """Queue ``doc`` if it is the common case of a catch-up: a valid event, the next
        of a stream of a run in hand, with exactly its descriptor's keys. Whatever is
        not that (False) changed nothing and takes :meth:`_one`'s full path, which
        gives the verdict and the reason; what this queues is what that would queue."""
        if type(doc) is not dict or not fast_event_ok(doc):
            return False
        desc = doc["descriptor"]
        for run in self._runs.values():
            stream = run.descriptors.get(desc)
            if stream is not None:
                break
        else:
            return False
        seq = doc["seq_num"]
        keys = stream.data_keys
        if (
            run.stopped
            or seq != stream.high_water + 1
            or seq in stream.stored
            or doc["data"].keys() != keys
            or doc["timestamps"].keys() != keys
        ):
            return False
        touched[run.uid] = run
        run.event(doc, msg_id, stream)
        return True

    def _one(
        self, name: str, doc: Any, msg_id: str, touched: dict[str, RunState], waiting: bool
    ) -> str:
        if not isinstance(doc, dict):
            raise Rejected(f"{name} document is {type(doc).__name__}, not a mapping")
        if name == "event_page":
            return self._event_page(doc, msg_id, touched)
        problem = schema_problem(name, doc)
        if problem:
            raise Rejected(problem)
        if name == "start":
            return self._start(doc, touched)
        if name == "event":
            run, stream = self._checked_event(doc, msg_id, touched)
            if _verdict(run, stream, doc, stream.high_water + 1) == "duplicate":
                return "duplicate"
            return run.event(doc, msg_id, stream)
        run_uid = doc.get("run_start") if name in ("descriptor", "stop") else _run_hint(msg_id)
        if run_uid is None:
            raise Rejected(f"{name} document names no run")
        state = self._state(run_uid, touched)
        if state is None:
            raise Early(f"{name} for unknown run {run_uid} (no start document stored)")
        try:
            if name == "descriptor":
                return state.descriptor(doc)
            if name == "stop":
                if waiting and (missing := state.missing_events(doc)):
                    raise Early(f"stop of run {run_uid} came before its events: {missing}")
                outcome = state.stop(doc)
                self._runs.pop(run_uid, None)  # finished: nothing more to remember
                touched.pop(run_uid, None)
                if outcome not in ("written", "duplicate"):
                    raise Rejected(outcome)
                return outcome
            state.other(name, doc)
            return "written"
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            # _RunWriter/RunNormalizer raise these for documents that do not fit the
            # run (e.g. a datum for an unknown resource); the run state may be half
            # updated, so rebuild it from Tiled next time.
            self._runs.pop(run_uid, None)
            raise Rejected(f"{name} could not be applied: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPStatusError as exc:
            if is_transient_http(exc) or http_status(exc) in (401, 403):
                raise
            self._runs.pop(run_uid, None)
            raise Rejected(f"Tiled refused {name}: {http_status(exc)} {http_detail(exc)}") from None

    def _start(self, doc: dict[str, Any], touched: dict[str, RunState]) -> str:
        uid = doc["uid"]
        if uid in self._runs:
            self._state(uid, touched)
            return "duplicate"
        # Created at once, not looked up first: a run Tiled already has (a redelivered
        # start) answers 409 and is loaded then, and every new run saves the lookup, one
        # of the requests made one after the other before its first event is readable.
        state = RunState.new(self._container, uid, self._later)
        try:
            state.start(doc)
        except httpx.HTTPStatusError as exc:
            if http_status(exc) == 409:  # created concurrently (or an unseen retry): reuse
                return "duplicate" if self._state(uid, touched) else "written"
            if is_transient_http(exc) or http_status(exc) in (401, 403):
                raise
            raise Rejected(f"Tiled refused start: {http_status(exc)} {http_detail(exc)}") from None
        self._remember(state, touched)
        return "written"

    def _event_page(self, doc: dict[str, Any], msg_id: str, touched: dict[str, RunState]) -> str:
        problem = schema_problem("event_page", doc)
        if problem:
            raise Rejected(problem)
        evs = list(unpack_event_page(cast(Any, doc)))
        # Check every event before queueing any: a page is stored whole or rejected whole.
        checked = []
        for ev in evs:
            if problem := schema_problem("event", ev):
                raise Rejected(f"event_page: {problem}")
            checked.append(self._checked_event(ev, msg_id, touched))
        # Identity and order too: the page's own events count as stored in turn.
        next_seq: dict[int, int] = {}
        new = []
        for ev, (run, stream) in zip(evs, checked, strict=True):
            expected = next_seq.get(id(stream), stream.high_water + 1)
            if _verdict(run, stream, ev, expected, page=True) == "new":
                next_seq[id(stream)] = ev["seq_num"] + 1
                new.append((ev, run, stream))
        for ev, run, stream in new:
            run.event(ev, msg_id, stream)
        return "written" if new else "duplicate"

    def _checked_event(
        self, doc: dict[str, Any], msg_id: str, touched: dict[str, RunState]
    ) -> tuple[RunState, StreamState]:
        run, stream = self._stream_of(doc, msg_id, touched)
        if (problem := event_keys_problem(doc, stream.data_keys)) is not None:
            raise Rejected(problem)
        return run, stream

    def _stream_of(
        self, doc: dict[str, Any], msg_id: str, touched: dict[str, RunState]
    ) -> tuple[RunState, StreamState]:
        desc = doc["descriptor"]
        for known in self._runs.values():
            if desc in known.descriptors:
                touched[known.uid] = known
                return known, known.descriptors[desc]
        hint = _run_hint(msg_id)
        state = self._state(hint, touched) if hint else None
        if state is None:
            where = f"run {hint}" if hint else "any run this writer knows"
            raise Early(f"event for unknown descriptor {desc} (not in {where})")
        if desc not in state.descriptors:
            raise Early(f"event for unknown descriptor {desc} in run {state.uid}")
        return state, state.descriptors[desc]

    # -- run state cache ----------------------------------------------------------

    def _state(self, uid: str, touched: dict[str, RunState]) -> RunState | None:
        state = self._runs.get(uid)
        if state is None:
            state = RunState.load(self._container, uid, self._later)
            if state is None:
                return None
            self._remember(state, touched)
        touched[uid] = state
        self._runs.move_to_end(uid)
        return state

    def _remember(self, state: RunState, touched: dict[str, RunState]) -> None:
        self._runs[state.uid] = state
        touched[state.uid] = state
        while len(self._runs) > self._max_cached_runs:
            old_uid = next(iter(self._runs))
            if old_uid in touched:
                break  # never evict a run with rows waiting for this batch's flush
            del self._runs[old_uid]

    def _flush(self, touched: dict[str, RunState], result: BatchResult) -> None:
        for uid, state in touched.items():
            pending = list(state.pending)
            try:
                state.flush()
            except httpx.HTTPStatusError as exc:
                if is_transient_http(exc) or http_status(exc) in (401, 403):
                    raise
                self._runs.pop(uid, None)
                reason = f"Tiled refused the rows: {http_status(exc)} {http_detail(exc)}"
                result.written -= len(pending)
                result.rejected.extend(Rejection(m, n, reason) for m, n in pending)


def _verdict(
    run: RunState, stream: StreamState, doc: dict[str, Any], next_seq: int, page: bool = False
) -> str:
    """ "duplicate" or "new"; anything the writer will not store is rejected (and so
    dead-lettered) with its reason: an event with a stored seq_num but another
    identity, an event out of order, an event after its run's stop."""
    verdict = stream.verdict(doc, next_seq)
    if verdict != "duplicate" and run.stopped:
        verdict = f"event seq_num {doc['seq_num']} arrived after run {run.uid} stopped; not stored"
    elif verdict not in ("duplicate", "new") and doc["seq_num"] > next_seq:
        # Ahead of a seq_num not stored yet (and no stored event of its own seq_num).
        raise Early(f"event_page: {verdict}" if page else verdict)
    if verdict in ("duplicate", "new"):
        return verdict
    raise Rejected(f"event_page: {verdict}" if page else verdict)


def items_from(docs: Sequence[tuple[str, dict[str, Any]]]) -> list[Item]:
    """``(name, doc)`` pairs -> ``(name, doc, msg_id)`` with beampod's stable ids."""
    from beampod.bus import message_id, run_uid_of

    runs: dict[str, str] = {}
    return [(n, d, message_id(n, d, run_uid_of(n, d, runs))) for n, d in docs]
