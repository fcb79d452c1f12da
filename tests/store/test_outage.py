"""Tiled goes away mid-run: the sink says "transient", and the retry stores one copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stamina

from beampod.store import TransientStoreError, open_catalog, open_sink
from tests.store.conftest import generate_run, make_pod, start_tiled, stop_process
from tests.store.helpers import column, items, start_uid, stored_seq_nums

pytestmark = [pytest.mark.pod, pytest.mark.slow]


def test_tiled_restart_mid_run(tmp_path: Path) -> None:
    pod = make_pod(tmp_path)
    docs = generate_run("count", num=10)
    batch = items(docs)
    server = start_tiled(pod)
    try:
        sink = open_sink(pod)
        assert not sink.write_batch(batch[:6]).rejected  # start, desc, events 1-4
        sink.ping()
        stop_process(server.proc)
        with pytest.raises(TransientStoreError):
            sink.write_batch([])  # the health check a consumer polls with
        stamina.set_testing(True, attempts=1)  # fail fast instead of 45 s of retries
        try:
            with pytest.raises(TransientStoreError):
                sink.write_batch(batch[6:])
        finally:
            stamina.set_testing(False)
        server = start_tiled(pod)
        assert sink.write_batch([]).written == 0  # healthy again
        # The consumer retries the same batch with the same sink object.
        retry = sink.write_batch(batch[6:])
        assert not retry.rejected
        run = open_catalog(pod)[start_uid(docs)]
        assert stored_seq_nums(run) == list(range(1, 11))
        np.testing.assert_array_equal(run.primary.read()["det"].values, column(docs, "det"))
        assert run.metadata["stop"]["exit_status"] == "success"
    finally:
        stop_process(server.proc)
