"""The facility benches share the options that shape a scaffolded facility: a bench
that builds its facility with ``make_and_start`` must give it every one it reads
(bench_idle.py once crashed when bench_facility.py gained ``--event-page-ms``)."""

from __future__ import annotations

import argparse

from tests._bench import bench_module


def test_bench_idle_gives_make_and_start_every_facility_option() -> None:
    with bench_module("bench_facility") as facility:
        shaped = argparse.ArgumentParser()
        facility.add_facility_shape(shaped)
        wanted = {a.dest for a in shaped._actions} - {"help"}
    assert {"event_page_ms", "fork_services", "ioc_processes", "writer_pool_size"} <= wanted
    with bench_module("bench_idle") as idle:
        args = idle.parser().parse_args(
            ["--sizes", "3", "--event-page-ms", "400", "--fork-services", "off"]
        )
    assert wanted <= set(vars(args)), wanted - set(vars(args))
    assert args.event_page_ms == 400 and args.fork_services == "off"
