"""The whole pod with Tiled on the embedded PostgreSQL (issue 3, item 7): ``pg_pod``
(``tests/datapath/conftest.py``). The data-path suite -- round trips, every fault,
bad input -- runs on it too (parametrized over both backends)."""

from __future__ import annotations

import pytest

from beampod.config import LoadedPod, PostgresStore
from tests.datapath._helpers import status

pytestmark = [pytest.mark.pod, pytest.mark.slow]


def test_catalog_is_on_the_embedded_postgres(pg_pod: LoadedPod) -> None:
    assert isinstance(pg_pod.config.store, PostgresStore)
    services = status(pg_pod)["services"]
    assert services["postgres"]["state"] == "ready", services["postgres"]
    assert services["tiled"]["state"] == "ready"
    assert (pg_pod.home.data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()
    assert not (pg_pod.home.data_dir / "tiled" / "catalog.db").exists()
