"""The order of the test files (tests/_order.py): shared-fixture groups exist and run
back to back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests._order import SHARED_FIXTURE_GROUPS, SLOWEST_FILES, group_of, slowest_first

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_file_exists() -> None:
    listed = [*SLOWEST_FILES, *(f for files in SHARED_FIXTURE_GROUPS.values() for f in files)]
    assert [f for f in listed if not (ROOT / f).is_file()] == []
    members = [f for files in SHARED_FIXTURE_GROUPS.values() for f in files]
    assert len(members) == len(set(members)), "a file in two groups"


def test_a_groups_files_come_together_and_the_rest_keep_their_order() -> None:
    names = [
        "tests/datapath/test_faults.py",
        "tests/test_pod.py",
        "tests/a_unit_test.py",
        "tests/datapath/test_postgres_pod.py",
        "tests/queue/test_queue_access.py",
        "tests/datapath/test_identity.py",
        "tests/b_unit_test.py",
        "tests/queue/test_queue_pod.py",
    ]
    items = cast(list[pytest.Item], [SimpleNamespace(path=ROOT / n) for n in names])
    order = [cast(Any, i).path.relative_to(ROOT).as_posix() for i in slowest_first(items, ROOT)]
    assert order == [
        "tests/datapath/test_faults.py",
        "tests/datapath/test_identity.py",
        "tests/datapath/test_postgres_pod.py",
        "tests/queue/test_queue_pod.py",
        "tests/queue/test_queue_access.py",
        "tests/test_pod.py",
        "tests/a_unit_test.py",
        "tests/b_unit_test.py",
    ]
    assert group_of("tests/datapath/test_health_probes.py") is None
    assert group_of("tests/datapath/test_identity.py") == "pg_pod"


def test_the_listing_ranks_a_group_by_its_total(tmp_path: Path) -> None:
    """A group of short files whose sum is the longest unit comes first, together."""
    from tests._order import _listing

    cases = [
        ("tests.datapath.test_faults", 50.0),  # group pg_pod: 50 + 40 = 90 s
        ("tests.datapath.test_identity", 40.0),
        ("tests.test_pod", 60.0),  # a file of its own: 60 s
        ("tests.session.test_db", 70.0),
    ]
    xml = "".join(f'<testcase classname="{c}" name="t" time="{t}"/>' for c, t in cases)
    report = tmp_path / "suite.xml"
    report.write_text(f"<testsuites><testsuite>{xml}</testsuite></testsuites>")
    assert [name for _, _, name in _listing(str(report))] == [
        "tests/datapath/test_faults.py",
        "tests/datapath/test_identity.py",
        "tests/session/test_db.py",
        "tests/test_pod.py",
    ]
