"""The command-line options the facility benches share: those that shape a scaffolded
facility (``add_facility_shape``, read by ``bench_facility.make_and_start``) and those of
the steady phase's emitters and readers (``add_load_shape``, read by
``bench_facility.load_phase``); bench_idle.py, bench_steady.py and bench_soak.py take
them from here, so a new option reaches every bench that builds or loads a facility."""

from __future__ import annotations

import argparse

#: Instruments a polling reader measures by default: 25 polling at 5 Hz would cost Tiled
#: more CPU than the 25 writers (``sampled``).
POLLED_READERS = 5

#: The ``pod`` settings the benchmarks can set from the command line (``--writer-pool-size``
#: for ``pod.writer_pool_size`` and so on); unset: what the scaffold writes.
POOL_SETTINGS = ("writer_pool_size", "agent_pool_size", "queue_http_pool_size")


def add_load_shape(ap: argparse.ArgumentParser) -> None:
    """The options of the steady phase's emitters and readers (read by ``load_phase``);
    shared with bench_steady.py."""
    ap.add_argument("--rate", type=float, default=20.0, help="events/s per instrument")
    ap.add_argument("--run-events", type=int, default=200, help="events per run")
    ap.add_argument(
        "--reader",
        choices=("live", "poll"),
        default="live",
        help="live: a reader is told of each event's rows by Tiled (a live subscription, "
        "after they are stored); poll: a reader asks Tiled every --reader-period (until "
        "2026-12-07 the only kind)",
    )
    ap.add_argument(
        "--reader-period",
        type=float,
        default=0.2,
        help="--reader poll: s from one Tiled poll's start to the next (each reader)",
    )
    ap.add_argument(
        "--run-phase",
        choices=("spread", "aligned"),
        default="spread",
        help="steady phase: instruments' runs start at moments spread over one run's "
        "duration (independent instruments), or all at once, every run (before "
        "2026-12-06 always aligned)",
    )
    ap.add_argument(
        "--validate-events",
        action="store_true",
        help="the emitters check every event against the event schema, as the bench did "
        "before 2026-12-06 (a RunEngine does not; ~100-250 us of the bench's CPU per event)",
    )
    ap.add_argument(
        "--instrument-services",
        choices=("run", "stop"),
        default="run",
        help="stop: before the load, stop every instrument's IOCs, queue server and agent "
        "(in a facility they run on the instruments' hosts, as the RunEngines the "
        "emitters stand for do; the central services and the writers stay); run: the "
        "whole facility shares this machine during the load",
    )
    ap.add_argument(
        "--readers",
        type=int,
        help="instruments whose readable latency is measured (0: all; default: all "
        f"with --reader live, {POLLED_READERS} with --reader poll)",
    )


def add_facility_shape(ap: argparse.ArgumentParser) -> None:
    """The options that shape the scaffolded facility (read by ``make_and_start``);
    shared with bench_idle.py."""
    ap.add_argument(
        "--writer-pool-size",
        type=int,
        help="pod.writer_pool_size of every facility (default: what the scaffold writes)",
    )
    ap.add_argument(
        "--agent-pool-size",
        type=int,
        help="pod.agent_pool_size of every facility (default: what the scaffold writes)",
    )
    ap.add_argument(
        "--queue-http-pool-size",
        type=int,
        help="pod.queue_http_pool_size of every facility (default: what the scaffold writes)",
    )
    ap.add_argument(
        "--ioc-processes",
        choices=("per_ioc", "per_instrument", "per_host"),
        help="channel_access.ioc_processes of every facility (default: the scaffold's)",
    )
    ap.add_argument(
        "--fork-services",
        choices=("on", "off"),
        help="pod.fork_services of every facility (default: the scaffold's, on)",
    )
    ap.add_argument(
        "--event-page-ms",
        type=int,
        help="bus.event_page_ms of every facility, 0: one message per event (default: "
        "the scaffold's)",
    )
    ap.add_argument(
        "--background-nice",
        type=int,
        help="pod.background_nice of every facility: Tiled's and the writers' priority "
        "(default: the scaffold's, 0 since ADR 43; 5: a pod's, behind the RunEngine's)",
    )
