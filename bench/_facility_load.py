"""What bench_facility.py runs against a facility: per instrument, an emitter of runs
through the real DurablePublisher (its instrument's publisher credential), a Tiled
reader that records when each event became readable, and the checks of what was stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import WorkerThread

DATA_KEYS = {"det": {"dtype": "number", "shape": [], "source": "bench:det"}}


@dataclass
class EmittedRun:
    uid: str
    emitted: dict[int, float] = field(default_factory=dict)  # seq_num -> monotonic time
    closed: bool = False


class Emitter(WorkerThread):
    """Runs of ``run_events`` events through ``publisher`` at ``rate`` events/s (0: as
    fast as it can) until ``until`` (monotonic); the run in progress is then stopped.
    ``first_run_events``: the first run's length, if not ``run_events`` (so that
    instruments' runs start at different moments).

    Events are made as a RunEngine makes them, without checking each against the event
    schema (``validate``: event-model's ``compose_event`` does, ~100-250 us of CPU per
    event on this machine, more than publishing it; until 2026-12-06 the bench did).
    The emitters stand for instruments' RunEngines, which run on other hosts."""

    def __init__(
        self,
        publisher: Any,
        rate: float,
        run_events: int,
        start: float,
        until: float,
        first_run_events: int | None = None,
        validate: bool = False,
    ) -> None:
        super().__init__()
        self.validate = validate
        self.publisher, self.rate, self.run_events = publisher, rate, run_events
        self.start_at, self.until = start, until
        self.first_run_events = first_run_events or run_events
        self.runs: list[EmittedRun] = []

    def _run(self) -> None:
        from event_model import compose_run

        pub, n = self.publisher, 0
        while time.monotonic() < self.until:
            length = self.first_run_events if not self.runs else self.run_events
            bundle = compose_run(metadata={"plan_name": "bench_facility", "purpose": "bench"})
            run = EmittedRun(bundle.start_doc["uid"])
            self.runs.append(run)
            pub("start", bundle.start_doc)
            desc = bundle.compose_descriptor(name="primary", data_keys=DATA_KEYS)
            pub("descriptor", desc.descriptor_doc)
            for seq in range(1, length + 1):
                if self.rate:
                    # A fixed schedule, so a slow call does not lower the rate.
                    delay = self.start_at + n / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if time.monotonic() >= self.until:
                    break
                now = time.time()
                event = desc.compose_event(
                    data={"det": float(seq)},
                    timestamps={"det": now},
                    seq_num=seq,
                    validate=self.validate,
                )
                run.emitted[seq] = time.monotonic()
                pub("event", event)
                n += 1
            pub("stop", bundle.compose_stop())
            run.closed = True

    @property
    def events(self) -> int:
        return sum(len(r.emitted) for r in self.runs)


def event_table(container: Any, uid: str) -> Any:
    """The run's primary event table (the layout bench_datapath reads)."""
    from tiled.client.container import Container

    run = Container.__getitem__(container, uid)
    stream = run.base["primary"] if hasattr(run, "base") else run["primary"]
    stream = stream.base if hasattr(stream, "base") else stream
    return stream["internal"]


def seq_nums_url(container: Any, uid: str) -> str:
    """The address of the ``seq_num`` column of the run's primary event table: one GET
    reads it, where walking the tree (run, stream, table, then read) takes four."""
    path = "/".join([*container.path_parts, uid, "primary", "internal"])
    return f"{container.context.api_uri}table/full/{path}"


class ReadableTimes:
    """When each event of ``emitter``'s runs became readable (``readable``: (run uid,
    seq_num) -> monotonic time), and the latencies from its emission; ``polls``: the
    answers (or messages) that told it, ``errors``: the reads that failed."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.readable: dict[tuple[str, int], float] = {}
        self.polls = 0
        self.errors: list[str] = []

    def latencies_ms(self, seqs: range | None = None, skip_runs: int = 0) -> list[float]:
        """Emitted -> readable of every event seen (or of those whose ``seq_num`` is in
        ``seqs``, e.g. ``range(1, 6)``: each run's first five), of the runs after the
        first ``skip_runs``."""
        out = []
        for run in self.emitter.runs[skip_runs:]:
            for seq, t in run.emitted.items():
                seen = self.readable.get((run.uid, seq))
                if seen is not None and (seqs is None or seq in seqs):
                    out.append((seen - t) * 1000)
        return out


class Reader(ReadableTimes, WorkerThread):
    """Polls the event table of each of ``emitter``'s runs in turn through Tiled (the
    instrument's reader key), one poll every ``period`` s (or as soon as the last one
    answered, when that took longer): a live view refreshing at a fixed rate. Records
    for every event the end of the first poll that returned it: an upper bound of
    "readable", at most one period and that poll's own time late. Until 2026-12-07 the
    reader waited ``period`` after each answer instead, so that a poll's time, long
    when Tiled is busy, counted twice.

    Each poll is one request for the table's ``seq_num`` column by its path, a new run
    included (404 until the writer created it), so that the reader's own requests add
    as little as they can to the latency of a run's first events. Before 2026-12-05 it
    walked the tree to a new run's table first (three lookups, then the read)."""

    def __init__(self, container: Any, emitter: Emitter, period: float) -> None:
        ReadableTimes.__init__(self, emitter)
        WorkerThread.__init__(self)
        self.container, self.period = container, period
        self.stop = threading.Event()
        self._began = 0.0  # when the last poll began (monotonic)

    def _next_poll(self) -> None:
        time.sleep(max(0.0, self._began + self.period - time.monotonic()))

    def _run(self) -> None:
        import httpx

        http = self.container.context.http_client
        index = 0
        while not self.stop.is_set():
            runs = self.emitter.runs
            if index >= len(runs):
                if not self.emitter.is_alive():
                    return
                time.sleep(0.01)
                continue
            run = runs[index]
            if run.closed and not run.emitted:  # stopped before its first event
                index += 1
                continue
            if not run.emitted:
                time.sleep(0.01)
                continue
            self._began = time.monotonic()
            try:
                answer = http.get(
                    seq_nums_url(self.container, run.uid),
                    params={"column": "seq_num"},
                    headers={"Accept": "application/json"},
                )
                if answer.status_code == 404:  # run or stream not stored yet
                    self._next_poll()
                    continue
                answer.raise_for_status()
                rows = len(answer.json()["seq_num"])
            except httpx.HTTPError as exc:
                # Tiled restarting or refusing for a moment: its events are readable
                # later, and the wait counts in their latency.
                self.errors.append(repr(exc))
                self._next_poll()
                continue
            self.polls += 1
            end = time.monotonic()
            for seq in range(1, rows + 1):  # rows are seq 1..k, in order
                self.readable.setdefault((run.uid, seq), end)
            if run.closed and rows >= len(run.emitted):
                index += 1
                continue
            self._next_poll()


async def _writer_pending(pod: Any, instruments: list[str]) -> dict[str, int]:
    """Messages each instrument's writer has not acknowledged yet (it acks only after
    Tiled stored them)."""
    from beampod.bus import WRITER_DURABLE, NatsConnection
    from beampod.config import stream_name

    nc = await NatsConnection.from_pod(pod, admin=True, name="bench-facility").connect(
        reconnect=False
    )
    try:
        js = nc.jetstream()
        out = {}
        for inst in instruments:
            info = await js.consumer_info(stream_name(inst), WRITER_DURABLE)
            out[inst] = int(info.num_pending) + int(info.num_ack_pending)
        return out
    finally:
        await nc.close()


def wait_stored(pod: Any, instruments: list[str], timeout: float) -> float:
    """Wait until every writer has stored all it was given; the monotonic time it was seen."""
    from nats.errors import Error as NatsError

    from beampod.errors import BusUnavailableError

    deadline = time.monotonic() + timeout
    pending: dict[str, int] = {}
    while True:
        try:
            pending = asyncio.run(_writer_pending(pod, instruments))
        except (NatsError, OSError, TimeoutError, BusUnavailableError) as exc:
            # A JetStream API call can fail while the cluster moves a leader (seen on
            # a saturated machine: "consumer not found" for a moment), and a connect
            # can be reset while the nodes are starved (N = 25): ask again.
            pending = {"?": 1, **{f"last error: {exc!r}": 1}}
        else:
            if not any(pending.values()):
                return time.monotonic()
        if time.monotonic() > deadline:
            left = {k: v for k, v in pending.items() if v}
            raise SystemExit(f"writers did not store everything within {timeout:.0f} s: {left}")
        time.sleep(0.1)  # polling interval


@dataclass
class Stored:
    runs_emitted: int = 0
    runs_stored: int = 0
    events_emitted: int = 0
    events_stored: int = 0
    lost: int = 0
    duplicates: int = 0


def check_stored(container: Any, emitters: list[Emitter]) -> Stored:
    """Compare each run in Tiled with what was emitted: events missing, rows twice."""
    s = Stored()
    for em in emitters:
        for run in em.runs:
            s.runs_emitted += 1
            s.events_emitted += len(run.emitted)
            try:
                seqs = list(event_table(container, run.uid).read(columns=["seq_num"])["seq_num"])
            except KeyError:
                seqs = []  # run (or its stream) missing: everything lost
            s.runs_stored += bool(seqs) or not run.emitted
            s.events_stored += len(seqs)
            s.lost += len(set(run.emitted) - set(int(q) for q in seqs))
            s.duplicates += len(seqs) - len(set(seqs))
    return s


def kind(service: str) -> str:
    if service.startswith("ioc-"):
        return "ioc"
    if service.startswith("writer"):
        return "writer"
    return service.rstrip("0123456789-") or service  # nats-0, nats-1 -> nats


def cpu_seconds(state: dict[str, Any]) -> dict[str, float]:
    """CPU time (s) used so far by each service's process tree and the supervisor, from
    ``beampod status --json`` (PostgreSQL's backends count as its children)."""
    from _common import tree_cpu_s

    res = state["resources"]
    pids = {n: u["pid"] for n, u in res["services"].items()}
    out = {n: tree_cpu_s(pid) if pid else 0.0 for n, pid in pids.items()}
    out["supervisor"] = tree_cpu_s(res["supervisor"]["pid"])
    for name, pid in pids.items():  # the supervisor's tree holds every service's
        out["supervisor"] -= out[name] if pid else 0.0
    return out


def cpu_by_kind(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """Share of a core each kind of service used between two :func:`cpu_seconds`."""
    by_kind: dict[str, float] = {}
    for name, cpu in after.items():
        k = kind(name)
        by_kind[k] = by_kind.get(k, 0.0) + (cpu - before.get(name, 0.0)) / seconds
    return dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))


def _pss_mb(pid: int, *, tree: bool = True) -> float:
    """PSS of ``pid`` and (``tree``) its descendants, as status counts a service's RSS."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid), *(psutil.Process(pid).children(True) if tree else ())]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            for line in Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass  # the process ended meanwhile
    return total / 1024


def memory_of(state: dict[str, Any]) -> dict[str, Any]:
    """Resident memory of a running pod (``beampod status --json``): RSS and PSS in
    total and per kind of service (ioc, writer, nats, tiled, ...)."""
    res = state["resources"]
    rss = {n: u["rss_mb"] for n, u in res["services"].items()}
    rss["supervisor"] = res["supervisor"]["rss_mb"]
    pss = {n: _pss_mb(u["pid"]) for n, u in res["services"].items()}
    pss["supervisor"] = _pss_mb(res["supervisor"]["pid"], tree=False)  # not its services
    by_kind: dict[str, dict[str, float]] = {}
    for name in rss:
        k = by_kind.setdefault(kind(name), {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0})
        k["rss_mb"] += rss[name]
        k["pss_mb"] += pss[name]
        k["processes"] += 1
    return {
        "rss_mb": sum(rss.values()),
        "pss_mb": sum(pss.values()),
        "machine_used_mb": machine_used_mb(),
        "services": len(res["services"]),
        "by_kind": by_kind,
    }


def machine_used_mb() -> float | None:
    """The machine's memory in use, MemTotal - MemAvailable (``/proc/meminfo``): what
    every process holds, each shared page once, and no page cache the kernel could
    reclaim. A sum of RSS counts a shared page in each process that maps it (PostgreSQL's
    shared buffers in every backend, the pages a queue server's processes share since
    their fork); PSS divides it among them; this counts it once, like PSS, but for the
    whole machine (anything else running moves it too)."""
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) for line in fh}
        return (info["MemTotal"] - info["MemAvailable"]) / 1024
    except (OSError, KeyError, IndexError, ValueError):
        return None
