"""The data path, side by side in one run against a real pod (issue 3 "Measure").

1. RunEngine speed, ``count([det], N)`` of ophyd.sim devices, in five configurations,
   each repetition interleaved with a bare run of the same N so machine drift hits
   both alike:
     bare                       RunEngine({}) with nothing subscribed
     publisher, writer stopped  + the pod's DurablePublisher, with the writer service
                                  stopped (only NATS takes the documents meanwhile)
     publisher                  + the pod's DurablePublisher, whole pod running (the
                                  writer stores the runs into Tiled on the same machine)
     tiledwriter(batch=1)       + bluesky-tiled-plugins' TiledWriter, batch_size=1,
                                  straight into the pod's Tiled
     tiledwriter(default)       + TiledWriter with its default batch_size (10,000)
   Printed: events/s per repetition, median ratio to bare (target: publisher >= 0.95).

2. Event emitted -> stored and readable through Tiled, at full RunEngine speed
   (publisher path), per event:
     acked  time the writer's durable consumer's ack floor (polled every 10 ms on the
            server) covered the event's message - time the RunEngine emitted it; the
            writer acks only after Tiled stored the batch;
     tiled  end of the first poll of a Tiled client (reader key, reading the run's event
            table) that returned the row - emit time (an upper bound: the poll takes
            tens of ms and loads the server too; its durations are printed).
     in the stream  JetStream's timestamp of the event's message - emit time (wall
            clocks of one machine): the publisher's share of the latency.
   Also checked: no Tiled poll started after an event was acked misses it.
   Target p50 <= 200 ms, p99 <= 1 s.

Starts its own pod (``beampod init --free-ports`` + ``up -d`` in a temp home) and stops
it, unless ``--home`` names a running pod.

    python bench/bench_datapath.py [--events 1000] [--reps 5] [--tw1-events 100]
                                   [--latency-events 2000] [--latency-reps 3]
                                   [--reader-pause 0.05] [--home RUNNING_POD_HOME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _breakdown import Breakdown
from _common import (
    WorkerThread,
    load_average,
    machine,
    median_interval,
    percentile,
    service_cpu_s,
    summary,
)
from _placement import MODES
from _placement import apply as apply_placement


def beampod(home: Path, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise SystemExit(f"beampod {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _rate(RE: Any, events: int) -> float:
    from bluesky.plans import count
    from ophyd.sim import det

    t0 = time.perf_counter()
    RE(count([det], events))
    return events / (time.perf_counter() - t0)


def _tiled_container(pod: Any, key: str) -> Any:
    from beampod.store._client import connect
    from beampod.store._layout import tiled_url

    return connect(tiled_url(pod), key)[pod.config.instrument_name]


def speed(pod: Any, args: argparse.Namespace) -> dict[str, list[float]]:
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter

    from beampod.bus import DurablePublisher

    writer_key = pod.secrets.tiled_writer_key.get_secret_value()
    bare_RE = RunEngine({}, context_managers=[])
    configs: dict[str, tuple[Any, int]] = {}
    pub = DurablePublisher.from_pod(pod)
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(pub)
    configs["publisher"] = (RE, args.events)
    if not args.skip_tiledwriter:
        RE = RunEngine({}, context_managers=[])
        RE.subscribe(TiledWriter(_tiled_container(pod, writer_key), batch_size=1))
        configs["tiledwriter(batch=1)"] = (RE, args.tw1_events)
        RE = RunEngine({}, context_managers=[])
        RE.subscribe(TiledWriter(_tiled_container(pod, writer_key)))
        configs["tiledwriter(default)"] = (RE, args.events)

    # Warm-up: imports, connections, first Tiled nodes.
    _rate(bare_RE, 100)
    for RE, _ in configs.values():
        _rate(RE, 20)
    assert pub.flush(60), pub.status()

    rates: dict[str, list[float]] = {"bare": []}
    ratios: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    breakdown = Breakdown(pod.home.root)

    def measured(name: str, RE: Any, n: int) -> float:
        return breakdown.measure(name, lambda: _rate(RE, n), n, pub, RE)

    modes = _modes(args)

    def pairs(phase: dict[str, tuple[Any, int]], label: str) -> None:
        for rep in range(args.reps):
            # Both placements in every repetition, their order alternated.
            for mode in modes if rep % 2 == 0 else modes[::-1]:
                pairs_once(phase, label, rep, mode)

    def pairs_once(phase: dict[str, tuple[Any, int]], label: str, rep: int, mode: str) -> None:
        if mode:
            apply_placement(pod.home.root, mode)
        tag = f" [{mode}]" if len(modes) > 1 else ""
        line = [f"{label} rep {rep + 1}{tag}:"]
        for name0, (RE, n) in phase.items():
            name = name0 + tag
            # Alternate the order of each pair so warm-up or drift favours neither.
            bare = f"bare ({label}){tag}"
            if rep % 2:
                r, b = measured(name, RE, n), measured(bare, bare_RE, n)
            else:
                b, r = measured(bare, bare_RE, n), measured(name, RE, n)
            sizes[name] = n
            rates["bare"].append(b)
            rates.setdefault(name, []).append(r)
            ratios.setdefault(name, []).append(r / b)
            line.append(f"{name} {r:5.0f} ev/s (bare {b:5.0f}, x{r / b:.3f})")
        print("  ".join(line), flush=True)

    # Phase 1: the publisher alone (writer service stopped: nothing else in the pod
    # competes for the CPU while the RunEngine runs; the backlog waits in JetStream).
    home = pod.home.root
    beampod(home, "service", "stop", "writer")
    pairs({"publisher, writer stopped": configs["publisher"]}, "[writer stopped]")
    beampod(home, "service", "start", "writer")
    t0 = time.monotonic()
    while not asyncio.run(_writer_idle(pod)):
        if time.monotonic() - t0 > 600:
            raise SystemExit("the writer did not catch up within 600 s")
        time.sleep(0.2)  # polling interval
    print(f"writer restarted and caught up in {time.monotonic() - t0:.1f} s", flush=True)
    # Phase 2: the whole pod running (the writer stores the publisher's runs meanwhile).
    pairs(configs, "[pod running]")
    assert pub.flush(120), pub.status()
    st = pub.close()
    print(
        f"\npublisher after the speed runs: acked {st.acked}, spooled {st.spooled}, "
        f"rejected {st.rejected}, duplicates {st.duplicates}"
    )
    print(
        "\nRunEngine events/s, count([det], N); ratio = config / bare run of the same N "
        "measured next to it"
    )
    print(
        f"  {'config':28} {'N':>6} {'median ev/s':>12} {'ratio median':>13} "
        f"{'ratio min':>10} {'ratio max':>10} {'median, 90 % interval':>22}"
    )
    print(f"  {'bare':28} {'':>6} {statistics.median(rates['bare']):12.0f}")
    for name, rs in ratios.items():
        lo, hi = median_interval(rs)
        print(
            f"  {name:28} {sizes[name]:6d} {statistics.median(rates[name]):12.0f} "
            f"{statistics.median(rs):13.3f} {min(rs):10.3f} {max(rs):10.3f} "
            f"{f'{lo:.3f}-{hi:.3f}':>22}"
        )
    print("  target: publisher ratio >= 0.97")
    breakdown.print()
    return ratios


def _modes(args: argparse.Namespace) -> tuple[str, ...]:
    """The placements to measure: ("",) = as the pod is (pod.background_cpus)."""
    if args.placement == "both":
        return MODES[:2]
    if args.placement == "pod":
        return ("",)
    modes = tuple(args.placement.split(","))
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"--placement: unknown {', '.join(sorted(unknown))} (have {MODES})")
    return modes


async def _writer_idle(pod: Any) -> bool:
    """The writer's durable consumer has nothing pending and nothing unacknowledged."""
    from beampod.bus import NatsConnection
    from beampod.config import stream_name
    from beampod.writer._loop import DURABLE

    nc = await NatsConnection.from_pod(pod, admin=True, name="bench").connect(reconnect=False)
    try:
        info = await nc.jetstream().consumer_info(stream_name(pod.config.instrument_name), DURABLE)
        return info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await nc.close()


class _Reader(WorkerThread):
    """Polls the run's event table in Tiled (a plain Tiled client, reader key), pausing
    ``pause`` s between polls; records (poll start, poll end, rows seen) per poll."""

    def __init__(self, pod: Any, uid_box: list[str], n: int, pause: float) -> None:
        super().__init__()
        self.pod, self.uid_box, self.n, self.pause = pod, uid_box, n, pause
        self.polls: list[tuple[float, float, int]] = []

    def _run(self) -> None:
        from tiled.client.container import Container

        cont = _tiled_container(self.pod, self.pod.secrets.tiled_reader_key.get_secret_value())
        deadline = time.monotonic() + 300
        table = None
        seen = 0
        while seen < self.n and time.monotonic() < deadline:
            t0 = time.monotonic()
            if table is None:
                if not self.uid_box:
                    time.sleep(0.001)
                    continue
                try:
                    run = Container.__getitem__(cont, self.uid_box[0])
                    stream = run.base["primary"] if hasattr(run, "base") else run["primary"]
                    stream = stream.base if hasattr(stream, "base") else stream
                    table = stream["internal"]
                except KeyError:  # run or stream not created yet
                    time.sleep(0.005)
                    continue
            seqs = table.read(columns=["seq_num"])["seq_num"]
            # Rows are seq_num 1..k in order (the data-path tests prove it).
            seen = len(seqs)
            self.polls.append((t0, time.monotonic(), seen))
            time.sleep(self.pause)


class _AckWatcher(WorkerThread):
    """Polls the writer's durable consumer every ``interval`` s: the ack floor says how
    many messages the writer has stored in Tiled (it acks only after write_batch)."""

    def __init__(self, pod: Any, interval: float = 0.01) -> None:
        super().__init__()
        self.pod, self.interval = pod, interval
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        from beampod.bus import NatsConnection
        from beampod.config import stream_name
        from beampod.writer._loop import DURABLE

        nc = await NatsConnection.from_pod(self.pod, admin=True, name="bench-acks").connect(
            reconnect=False
        )
        try:
            js = nc.jetstream()
            stream = stream_name(self.pod.config.instrument_name)
            while not self.stop.is_set():
                info = await js.consumer_info(stream, DURABLE)
                self.samples.append((time.monotonic(), int(info.ack_floor.stream_seq)))
                await asyncio.sleep(self.interval)
        finally:
            await nc.close()


async def _stream_last_seq(pod: Any) -> int:
    from beampod.bus import NatsConnection
    from beampod.config import stream_name

    nc = await NatsConnection.from_pod(pod, admin=True, name="bench").connect(reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream_name(pod.config.instrument_name))
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def _stream_times(pod: Any, first: int, seqs: list[int]) -> dict[int, float]:
    """Epoch time the stream stored each event message (``first`` + seq_num - 1 is its
    stream sequence: the run's messages are start, descriptor, events, stop)."""
    from beampod.bus import NatsConnection
    from beampod.config import stream_name

    nc = await NatsConnection.from_pod(pod, admin=True, name="bench").connect(reconnect=False)
    out: dict[int, float] = {}
    try:
        js, stream = nc.jetstream(), stream_name(pod.config.instrument_name)
        for s in seqs:
            msg = await js.get_msg(stream, first + s - 1)
            if msg.time is not None:
                out[s] = msg.time.timestamp()
    finally:
        await nc.close()
    return out


def _first_time(samples: list[tuple[float, int]], count: int) -> float | None:
    """First sample time at which the counter reached ``count``."""
    for t, c in samples:
        if c >= count:
            return t
    return None


def latency(pod: Any, args: argparse.Namespace) -> dict[str, float]:
    # Imported here, before the reader thread imports the same modules through tiled's
    # client (two threads importing one package at once can deadlock on its lock).
    import bluesky_tiled_plugins.clients.catalog_of_bluesky_runs
    import bluesky_tiled_plugins.writing  # noqa: F401
    from bluesky import RunEngine

    from beampod.bus import DurablePublisher

    pub = DurablePublisher.from_pod(pod)
    RE = RunEngine({}, context_managers=[])
    emitted: dict[int, float] = {}
    emitted_wall: dict[int, float] = {}
    uid_box: list[str] = []

    def stamp(name: str, doc: dict[str, Any]) -> None:
        if name == "event":
            emitted[doc["seq_num"]] = time.monotonic()
            emitted_wall[doc["seq_num"]] = time.time()
        elif name == "start":
            uid_box.append(doc["uid"])

    RE.subscribe(stamp)  # before the publisher: stamps the moment of emission
    RE.subscribe(pub)
    _rate(RE, 20)  # warm-up
    assert pub.flush(60)
    modes = _modes(args)
    # Per placement: acked, in the stream, readable in Tiled (ms), service CPU (s).
    agg: dict[str, tuple[list[float], list[float], list[float], dict[str, float]]] = {
        m: ([], [], [], {}) for m in modes
    }
    print(
        f"\nevent emitted -> stored and readable through Tiled (publisher -> NATS -> writer "
        f"-> Tiled), count([det], {args.latency_events}) at full speed, "
        f"{args.latency_reps} runs"
    )
    print(
        "  'acked': the writer acknowledged the event's message, which it does only after "
        "Tiled stored it (consumer ack floor polled every 10 ms)"
    )
    print(
        f"  'tiled': a Tiled client polling the run's event table (pause "
        f"{args.reader_pause * 1000:.0f} ms between polls) first returned the row; upper "
        "bound: end of that poll"
    )
    schedule = [
        (rep, mode)
        for rep in range(args.latency_reps)
        for mode in (modes if rep % 2 == 0 else modes[::-1])
    ]
    for rep, mode in schedule:
        if mode:
            apply_placement(pod.home.root, mode)
        acked_all, stored_all, tiled_all, cpu_all = agg[mode]
        emitted.clear()
        uid_box.clear()
        base = asyncio.run(_stream_last_seq(pod))  # the run's messages follow: start,
        acks = _AckWatcher(pod)  # descriptor, events, stop
        reader = _Reader(pod, uid_box, args.latency_events, args.reader_pause)
        acks.start()
        reader.start()
        cpu0 = service_cpu_s(pod.home.root)
        rate = _rate(RE, args.latency_events)
        reader.join(300)
        # Until the writer has acknowledged the whole run (start .. stop).
        t_end = time.monotonic() + 120
        while (
            (not acks.samples or acks.samples[-1][1] < base + args.latency_events + 3)
            and time.monotonic() < t_end
            and acks.is_alive()
        ):
            time.sleep(0.05)
        cpu1 = service_cpu_s(pod.home.root)
        acks.stop.set()
        acks.join(30)
        for name, c in cpu1.items():
            cpu_all[name] = cpu_all.get(name, 0.0) + c - cpu0.get(name, c)
        for th in (reader, acks):
            if th.error is not None:
                raise th.error
        acked, tiled, inconsistent = [], [], 0
        for s in sorted(emitted):
            t_ack = _first_time(acks.samples, base + 2 + s)
            if t_ack is not None:
                acked.append((t_ack - emitted[s]) * 1000)
            t_seen = next((end for _, end, k in reader.polls if k >= s), None)
            if t_seen is not None:
                tiled.append((t_seen - emitted[s]) * 1000)
        # Acknowledged => readable: a poll that started after an event's ack must return it.
        for t0, _, k in reader.polls:
            acked_before = max((c for t, c in acks.samples if t <= t0), default=0) - base - 2
            inconsistent += acked_before > k
        acked_all += acked
        # Where the time goes: emitted -> in the stream (the publisher's interval and
        # NATS), from the stream's own timestamp of each event's message.
        in_stream = asyncio.run(_stream_times(pod, base + 3, sorted(emitted)))
        stored = [
            (in_stream[s] - emitted_wall[s]) * 1000 for s in sorted(emitted) if s in in_stream
        ]
        stored_all += stored
        tiled_all += tiled
        durations = [(end - t0) * 1000 for t0, end, _ in reader.polls]
        print(
            f"  run {rep + 1}{f' [{mode}]' if len(modes) > 1 else ''}: RunEngine "
            f"{rate:.0f} ev/s\n"
            f"    in the stream: {summary(stored)}\n"
            f"    acked: {summary(acked)}\n"
            f"    tiled: {summary(tiled)}\n"
            f"    tiled, second half of the run: {summary(tiled[len(tiled) // 2 :])}\n"
            f"    Tiled poll duration: {summary(durations)}; polls that missed an acked "
            f"event: {inconsistent}",
            flush=True,
        )
    pub.close()
    out: dict[str, float] = {}
    for mode in modes:
        res = _latency_summary(args, *agg[mode], f"[{mode}] " if len(modes) > 1 else "")
        out |= {f"{k}_{mode}" if len(modes) > 1 else k: v for k, v in res.items()}
    return out


def _latency_summary(
    args: argparse.Namespace,
    acked_all: list[float],
    stored_all: list[float],
    tiled_all: list[float],
    cpu_all: dict[str, float],
    tag: str,
) -> dict[str, float]:
    # What storing a live run costs the machine (the CPU the RunEngine competes with):
    # the same whatever the load, unlike the ratios.
    n_events = args.latency_events * args.latency_reps
    per_event = {k: v / n_events * 1e6 for k, v in cpu_all.items()}
    store = per_event.get("writer", 0.0) + per_event.get("tiled", 0.0)
    rest = sum(v for k, v in per_event.items() if k not in ("writer", "tiled", "nats"))
    print(
        f"  {tag}service CPU per live event (us; the reader's polls included): writer "
        f"{per_event.get('writer', 0.0):.0f}, Tiled {per_event.get('tiled', 0.0):.0f}, NATS "
        f"{per_event.get('nats', 0.0):.0f}, the rest of the pod {rest:.0f}"
    )
    print(
        f"  {tag}all runs, in the stream: p50 {percentile(stored_all, 50):.0f} ms, p99 "
        f"{percentile(stored_all, 99):.0f} ms; acked: p50 {percentile(acked_all, 50):.0f} ms, p99 "
        f"{percentile(acked_all, 99):.0f} ms; tiled: p50 {percentile(tiled_all, 50):.0f} ms, "
        f"p99 {percentile(tiled_all, 99):.0f} ms (target p50 <= 200, p99 <= 1000)"
    )
    return {
        "in_stream_p50_ms": percentile(stored_all, 50),
        "acked_p50_ms": percentile(acked_all, 50),
        "acked_p99_ms": percentile(acked_all, 99),
        "readable_p50_ms": percentile(tiled_all, 50),
        "readable_p99_ms": percentile(tiled_all, 99),
        "store_cpu_us_per_event": store,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument(
        "--tw1-events",
        type=int,
        default=100,
        help="events per run with TiledWriter(batch_size=1) (it is slow)",
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--latency-events", type=int, default=2000)
    ap.add_argument("--latency-reps", type=int, default=3)
    ap.add_argument("--reader-pause", type=float, default=0.05)
    ap.add_argument("--home", help="use this running pod instead of starting one")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument(
        "--skip-tiledwriter", action="store_true", help="only bare and the publisher (quicker)"
    )
    ap.add_argument(
        "--placement",
        default="pod",
        help="pod: as pod.background_cpus places the services (this process pins itself "
        "like a session); pinned / unpinned: the 'auto' placement switched on / off in the "
        "running pod; background: only the services pinned, the RunEngine on every CPU; "
        "a comma-separated list (both = pinned,unpinned): alternated in every repetition",
    )
    ap.add_argument("--json", type=Path, help="also write the results here (bench/run_all.py)")
    args = ap.parse_args()

    from beampod.config import PodHome, load_pod
    from beampod.session import pin_to_runengine_cpus

    print(f"machine: {machine()}")
    print(f"load average at start: {load_average()}")
    own = args.home is None
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-dp-")) / "pod"
    if own:
        beampod(home, "init", "--free-ports")
        if args.placement != "pod":
            # The modes place the services themselves: the supervisor must not (nor
            # the writer, which would go back to its background CPUs at every batch).
            cfg = home / "config.yaml"
            data = yaml.safe_load(cfg.read_text())
            data["pod"]["background_cpus"] = "off"
            cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        t0 = time.monotonic()
        beampod(home, "up", "-d")
        print(f"pod up in {time.monotonic() - t0:.1f} s ({home})")
    try:
        pod = load_pod(PodHome.resolve(home))
        if args.placement == "pod":
            cpus = pin_to_runengine_cpus(pod)
            print(f"this process (the RunEngines) pinned to CPUs {sorted(cpus or [])}")
        results: dict[str, Any] = {}
        if not args.skip_speed:
            ratios = speed(pod, args)
            for mode in _modes(args):
                several = len(_modes(args)) > 1
                sfx, tag = (f"_{mode}", f" [{mode}]") if several else ("", "")
                results["ratio_writer_stopped" + sfx] = statistics.median(
                    ratios["publisher, writer stopped" + tag]
                )
                results["ratio_whole_pod" + sfx] = statistics.median(ratios["publisher" + tag])
                results["ratio_whole_pod_interval" + sfx] = median_interval(
                    ratios["publisher" + tag]
                )
        results.update(latency(pod, args))
        if len(_modes(args)) > 1:  # the table's figures: the default's (off: unpinned)
            results |= {
                k.removesuffix("_unpinned"): v
                for k, v in results.items()
                if k.endswith("_unpinned")
            }
        if args.json:
            args.json.write_text(json.dumps(results))
    finally:
        if own:
            beampod(home, "down")
            shutil.rmtree(home.parent, ignore_errors=True)  # the pod's store and stream
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
