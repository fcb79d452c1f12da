"""The order in which the xdist workers take test files: slowest first.

``--dist loadfile`` hands out whole files, one to each worker that runs out of work.
If a long file comes last, one worker runs it alone while the others idle; handed out
longest first, the files left at the end are short and the workers finish together
(longest-processing-time-first scheduling). xdist's own order (``--loadscope-reorder``,
most tests first) puts the pod files, which have few tests, last: ``addopts`` turns it
off (``--no-loadscope-reorder``) and ``pytest_collection_modifyitems`` in
``tests/conftest.py`` sorts the collection with ``slowest_first``.

``SLOWEST_FILES`` is measured, not guessed: the files with the most wall time in a whole
run, longest first, the files of a shared-fixture group together where the group's total
ranks (docs/testing.md says how to measure it again). A file not listed
keeps its place in the collection after these; a stale list costs time, never a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Wall time per file in a whole run on a 2-core machine (3 workers), 7 Dec 2026; a
# shared-fixture group's files together, ranked by the group's total.
SLOWEST_FILES: tuple[str, ...] = (
    "tests/datapath/test_faults.py",  # 87 s (group pg_pod: 127 s)
    "tests/datapath/test_dead_runengine.py",  # 14 s (group pg_pod: 127 s)
    "tests/datapath/test_identity.py",  # 14 s (group pg_pod: 127 s)
    "tests/datapath/test_bad_input.py",  # 11 s (group pg_pod: 127 s)
    "tests/datapath/test_postgres_pod.py",  # 1 s (group pg_pod: 127 s)
    "tests/queue/test_queue_pod.py",  # 54 s (group qpod: 109 s)
    "tests/queue/test_queue_clients.py",  # 25 s (group qpod: 109 s)
    "tests/queue/test_queue_data_path.py",  # 19 s (group qpod: 109 s)
    "tests/queue/test_queue_access.py",  # 11 s (group qpod: 109 s)
    "tests/datapath/test_health_probes.py",  # 92 s
    "tests/transports/test_kafka_pod.py",  # 90 s
    "tests/facility/test_facility_faults.py",  # 72 s
    "tests/session/test_session.py",  # 55 s (group session_iocs: 63 s)
    "tests/session/test_bsui.py",  # 8 s (group session_iocs: 63 s)
    "tests/services/test_head_start.py",  # 54 s
    "tests/cluster/test_nats_cluster.py",  # 44 s
    "tests/bus/test_contract.py",  # 38 s (group kafka_bootstrap: 43 s)
    "tests/bus/test_kafka_progress.py",  # 5 s (group kafka_bootstrap: 43 s)
    "tests/store/test_writer_reorder.py",  # 13 s (group tiled_server: 39 s)
    "tests/store/test_postgres.py",  # 10 s (group tiled_server: 39 s)
    "tests/store/test_catalog.py",  # 6 s (group tiled_server: 39 s)
    "tests/store/test_writer_imports.py",  # 5 s (group tiled_server: 39 s)
    "tests/store/test_sink.py",  # 4 s (group tiled_server: 39 s)
    "tests/store/test_clients.py",  # 1 s (group tiled_server: 39 s)
    "tests/store/test_server.py",  # 1 s (group tiled_server: 39 s)
    "tests/facility/test_facility_queues.py",  # 38 s
    "tests/services/test_cpu_placement.py",  # 35 s
    "tests/test_data_cli.py",  # 31 s
    "tests/queue/test_queue_watchdog.py",  # 31 s
    "tests/test_pod.py",  # 29 s
    "tests/deploy/test_ansible_apply.py",  # 29 s
    "tests/facility/test_facility_pod.py",  # 28 s
    "tests/envs/test_runtime.py",  # 14 s (group built: 27 s)
    "tests/envs/test_pack.py",  # 5 s (group built: 27 s)
    "tests/envs/test_overlays.py",  # 5 s (group built: 27 s)
    "tests/envs/test_cycles.py",  # 3 s (group built: 27 s)
    "tests/session/test_db.py",  # 24 s
    "tests/facility/test_writer_pool.py",  # 23 s
    "tests/bus/test_roles.py",  # 20 s
    "tests/bus/test_edge.py",  # 19 s
)


# Files that share a package-scoped server of their directory's conftest.py. A
# package-scoped fixture stops as soon as a worker runs a test outside its package, so
# files of one package handed to a worker between others' restart it: the PostgreSQL
# pod was started up to four times in a whole run. Each group is one unit of work for
# xdist (``SharedFixtureScheduling``), run back to back on one worker, and sorted
# together (also with ``-n 0``): its server starts once per run. A file missing here
# still runs; it may only start its package's server once more.
SHARED_FIXTURE_GROUPS: dict[str, tuple[str, ...]] = {
    # pg_pod (tests/datapath/conftest.py), through healthy_pod(s); test_health_probes.py
    # and test_refused.py do not use it and stay units of their own.
    "pg_pod": (
        "tests/datapath/test_faults.py",
        "tests/datapath/test_dead_runengine.py",
        "tests/datapath/test_identity.py",
        "tests/datapath/test_bad_input.py",
        "tests/datapath/test_postgres_pod.py",
    ),
    # qpod, locked_pod (tests/queue/conftest.py): queue pods.
    "qpod": (
        "tests/queue/test_queue_pod.py",
        "tests/queue/test_queue_clients.py",
        "tests/queue/test_queue_access.py",
        "tests/queue/test_queue_data_path.py",
    ),
    # tiled_server, pg_server (tests/store/conftest.py).
    "tiled_server": (
        "tests/store/test_postgres.py",
        "tests/store/test_catalog.py",
        "tests/store/test_sink.py",
        "tests/store/test_clients.py",
        "tests/store/test_server.py",
        "tests/store/test_writer_imports.py",
        "tests/store/test_writer_reorder.py",
    ),
    # session_iocs (tests/session/conftest.py).
    "session_iocs": ("tests/session/test_session.py", "tests/session/test_bsui.py"),
    # built (tests/envs/conftest.py): a facility with a built cycle environment.
    "built": (
        "tests/envs/test_pack.py",
        "tests/envs/test_cycles.py",
        "tests/envs/test_overlays.py",
        "tests/envs/test_runtime.py",
    ),
    # kafka_bootstrap (tests/bus/conftest.py): a Tansu broker.
    "kafka_bootstrap": ("tests/bus/test_contract.py", "tests/bus/test_kafka_progress.py"),
}


def group_of(name: str) -> str | None:
    """The shared-fixture group of test file ``name`` (relative, posix), if any."""
    for group, files in SHARED_FIXTURE_GROUPS.items():
        if name in files:
            return group
    return None


def _ranks() -> dict[str, tuple[int, int]]:
    """Sort key per listed file: (its group's rank, its own rank). A group ranks as its
    slowest listed member (its first in ``SLOWEST_FILES``), so its files come together."""
    own = {name: i for i, name in enumerate(SLOWEST_FILES)}
    last = len(own)
    ranks = {name: (i, i) for name, i in own.items()}
    for g, files in enumerate(SHARED_FIXTURE_GROUPS.values()):
        group_rank = min((own.get(f, last) for f in files), default=last)
        if group_rank == last:  # no member measured: together, after everything else
            group_rank = last + 1 + g
        for f in files:
            ranks[f] = (group_rank, own.get(f, last))
    return ranks


def slowest_first(items: list[pytest.Item], root: Path) -> list[pytest.Item]:
    """``items`` with the listed files first (in list order), the files of a shared-fixture
    group next to each other; each file's tests, and the files not listed, keep their
    order (the sort is stable)."""
    ranks = _ranks()
    last = (len(SLOWEST_FILES), len(SLOWEST_FILES))

    def key(item: pytest.Item) -> tuple[int, int]:
        try:
            name = item.path.relative_to(root).as_posix()
        except ValueError:
            return last
        return ranks.get(name, last)

    return sorted(items, key=key)


def make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile``, except that a shared-fixture group is one unit of work."""
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            name = nodeid.split("::", 1)[0]
            return f"group:{group}" if (group := group_of(name)) else name

    return SharedFixtureScheduling(config, log)


def _files_by_time(junit_xml: str) -> list[tuple[float, str]]:
    """Wall time per test file (setup, call and teardown of its tests) from a junit
    report: ``python tests/_order.py REPORT.xml``."""
    import xml.etree.ElementTree as ET

    per: dict[str, float] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        parts = (case.get("classname") or "").split(".")
        while parts and parts[-1][:1].isupper():  # a test class, not the module
            parts.pop()
        name = "/".join(parts) + ".py"
        per[name] = per.get(name, 0.0) + float(case.get("time") or 0.0)
    return sorted(((t, n) for n, t in per.items()), reverse=True)


def _listing(junit_xml: str) -> list[tuple[float, float, str]]:
    """``(unit's time, file's time, file)``, the units (a shared-fixture group, or a
    file of its own) longest first, a group's files together: the order
    ``SLOWEST_FILES`` wants, since xdist hands out a group as one unit."""
    per = _files_by_time(junit_xml)
    units: dict[str, float] = {}
    for seconds, name in per:
        unit = group_of(name) or name
        units[unit] = units.get(unit, 0.0) + seconds
    rows = [(units[group_of(n) or n], t, n) for t, n in per]
    return sorted(rows, key=lambda r: (-r[0], group_of(r[2]) or r[2], -r[1]))


if __name__ == "__main__":
    import sys

    for unit, seconds, name in _listing(sys.argv[1])[:40]:
        group = group_of(name)
        note = f" (group {group}: {unit:.0f} s)" if group else ""
        print(f'    "{name}",  # {seconds:.0f} s{note}')
