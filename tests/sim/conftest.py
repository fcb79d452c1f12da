from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sim._iocfix import RunningIocs, running_iocs


@pytest.fixture(scope="module")
def demo_iocs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIocs]:
    """All five IOCs of the demo config, running on free ports, one process each
    (``per_ioc``: what each family's process loads is its own; the pod's default, one
    process for all, is tests/sim/test_ioc_group.py's and the pod tests')."""
    with running_iocs(tmp_path_factory.mktemp("sim-pod"), processes="per_ioc") as iocs:
        yield iocs
