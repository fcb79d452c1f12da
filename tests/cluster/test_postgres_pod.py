"""The same document-by-document round trip with Tiled on PostgreSQL (issue 3, item 7).

One pod with ``store: {backend: postgres}`` (embedded: the pgserver wheel's binaries run
as the ``postgres`` service), started with ``beampod up -d``. Runs come from a session
process using ``make_run_engine(pod)`` (``tests/datapath/_emitter.py``), and what it
emitted is compared with what Tiled holds (``assert_stored_exactly``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beampod.config import LoadedPod, PostgresStore
from tests.cluster.conftest import started_pod
from tests.datapath._helpers import Emitter, assert_stored_exactly, kill_writer_mid_run, status

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_config(cfg: dict[str, Any]) -> None:
    cfg["store"] = {"backend": "postgres", "port": _free_port()}


@pytest.fixture(scope="module")
def pg_pod() -> Iterator[LoadedPod]:
    yield from started_pod(_postgres_config, prefix="beampod-pgpod-")


def test_catalog_is_on_the_embedded_postgres(pg_pod: LoadedPod) -> None:
    assert isinstance(pg_pod.config.store, PostgresStore)
    services = status(pg_pod)["services"]
    assert services["postgres"]["state"] == "ready", services["postgres"]
    assert services["tiled"]["state"] == "ready"
    assert (pg_pod.home.data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()
    assert not (pg_pod.home.data_dir / "tiled" / "catalog.db").exists()


def test_run_stored_document_by_document(pg_pod: LoadedPod, emitters: list[Emitter],
                                         workdir: Path) -> None:
    em = Emitter(pg_pod, workdir, min_events=40, delay=0.01, open_ended=False,
                 flush_s=30, tag="pg-roundtrip").start()
    emitters.append(em)
    emitted, report = em.result()
    assert report["delivered"], report
    assert_stored_exactly(pg_pod, emitted)


def test_writer_sigkilled_mid_run_stores_one_copy(pg_pod: LoadedPod, emitters: list[Emitter],
                                                  workdir: Path) -> None:
    em = Emitter(pg_pod, workdir, min_events=40, delay=0.02, tag="pg-writer-kill").start()
    emitters.append(em)
    kill_writer_mid_run(pg_pod, em)
