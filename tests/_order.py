"""The order in which the two xdist workers take test files: slowest first.

``--dist loadfile`` hands out whole files, one to each worker that runs out of work.
If a long file comes last, one worker runs it alone while the other idles; handed out
longest first, the files left at the end are short and both workers finish together
(longest-processing-time-first scheduling). xdist's own order (``--loadscope-reorder``,
most tests first) puts the pod files, which have few tests, last: ``addopts`` turns it
off (``--no-loadscope-reorder``) and ``pytest_collection_modifyitems`` in
``tests/conftest.py`` sorts the collection with ``slowest_first``.

``SLOWEST_FILES`` is measured, not guessed: the files with the most wall time in a whole
run, longest first (docs/testing.md says how to measure it again). A file not listed
keeps its place in the collection after these; a stale list costs time, never a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Wall time per file in a whole run on a loaded 2-core machine (load 7-40), 2 Dec 2026.
SLOWEST_FILES: tuple[str, ...] = (
    "tests/datapath/test_faults.py",  # 854 s
    "tests/test_pod.py",  # 410 s
    "tests/datapath/test_dead_runengine.py",  # 373 s
    "tests/datapath/test_identity.py",  # 351 s
    "tests/facility/test_facility_faults.py",  # 335 s
    "tests/transports/test_kafka_pod.py",  # 305 s
    "tests/datapath/test_health_probes.py",  # 255 s
    "tests/facility/test_facility_pod.py",  # 254 s
    "tests/test_data_cli.py",  # 234 s
    "tests/queue/test_queue_pod.py",  # 223 s
    "tests/cluster/test_nats_cluster.py",  # 189 s
    "tests/facility/test_facility_queues.py",  # 182 s
    "tests/transports/test_zmq_pod.py",  # 146 s
    "tests/session/test_db.py",  # 140 s
    "tests/datapath/test_bad_input.py",  # 132 s
    "tests/session/test_session.py",  # 106 s
    "tests/datapath/test_refused.py",  # 69 s
    "tests/instrument/test_facility_scaffold.py",  # 67 s
    "tests/deploy/test_ansible_apply.py",  # 64 s
    "tests/web/test_browser.py",  # 63 s
    "tests/deploy/test_render.py",  # 62 s
    "tests/queue/test_queue_clients.py",  # 54 s
    "tests/store/test_postgres.py",  # 53 s
    "tests/datapath/test_postgres_pod.py",  # 49 s
    "tests/envs/test_pack.py",  # 49 s
    "tests/store/test_catalog.py",  # 47 s
    "tests/store/test_sink.py",  # 47 s
    "tests/bus/test_contract.py",  # 44 s
    "tests/config/test_connect.py",  # 44 s
    "tests/session/test_bsui.py",  # 42 s
)


def slowest_first(items: list[pytest.Item], root: Path) -> list[pytest.Item]:
    """``items`` with the listed files first (in list order); each file's tests, and the
    files not listed, keep their order (the sort is stable)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    last = len(rank)

    def key(item: pytest.Item) -> int:
        try:
            name = item.path.relative_to(root).as_posix()
        except ValueError:
            return last
        return rank.get(name, last)

    return sorted(items, key=key)


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


if __name__ == "__main__":
    import sys

    for seconds, name in _files_by_time(sys.argv[1])[:40]:
        print(f'    "{name}",  # {seconds:.0f} s')
