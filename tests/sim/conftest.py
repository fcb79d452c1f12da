from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sim._iocfix import RunningIocs, running_iocs


@pytest.fixture(scope="module")
def demo_iocs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIocs]:
    """All five IOCs of the demo config, running on free ports."""
    with running_iocs(tmp_path_factory.mktemp("sim-pod")) as iocs:
        yield iocs
