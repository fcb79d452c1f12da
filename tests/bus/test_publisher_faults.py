"""Fault injection for the durable publisher against a real nats-server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from beampod.bus import DurablePublisher, message_id, run_uid_of
from beampod.config import LoadedPod, load_pod

from ._docs import Doc, assert_docs_equal, run_plan
from ._natsproc import NatsProcess
from ._stream import read_stream

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def _ids(docs: list[Doc]) -> list[str]:
    runs: dict[str, str] = {}
    return [message_id(n, d, run_uid_of(n, d, runs)) for n, d in docs]


def _wait(predicate: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def _assert_exactly_once_in_order(pod: LoadedPod, emitted: list[Doc]) -> None:
    stored = read_stream(pod)
    counts = Counter(mid for mid, *_ in stored)
    assert [m for m, c in counts.items() if c > 1] == [], "duplicates in the stream"
    assert [mid for mid, *_ in stored] == _ids(emitted)
    assert_docs_equal([(n, d) for _, n, d, _ in stored], emitted)


def test_bus_down_at_start_spools_then_delivers(
    bus_pod: LoadedPod, nats_proc: NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    pub = DurablePublisher.from_pod(bus_pod, stop_timeout=5.0)
    try:
        stop_took: list[float] = []

        def timed(name: str, doc: dict[str, Any]) -> None:
            t0 = time.monotonic()
            pub(name, doc)
            if name == "stop":
                stop_took.append(time.monotonic() - t0)

        emitted = run_plan(timed, num=20)
        # The stop document did not wait stop_timeout for a bus that is not there: it
        # returned once the run was fsync'd in the spool.
        assert stop_took[0] < 2.0
        st = pub.status()
        assert not st.connected and st.spooled == len(emitted) and st.acked == 0
        assert st.mode == "spooling"
        assert "only in the local spool" in caplog.text
        nats_proc.start()
        assert pub.flush(30.0), pub.status()
        st = pub.status()
        assert st.acked == len(emitted) and st.spooled == 0 and st.mode == "direct"
    finally:
        pub.close()
    _assert_exactly_once_in_order(bus_pod, emitted)
    assert (Path(st.spool_path) / "spool.log").stat().st_size == 0  # drained and emptied


def test_bus_sigkilled_mid_run_loses_nothing(bus_pod: LoadedPod, nats_server: NatsProcess) -> None:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    pub = DurablePublisher.from_pod(bus_pod, ack_timeout=2.0, reconnect_wait=(0.02, 0.2))
    emitted: list[Doc] = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    RE.subscribe(pub)
    runner = threading.Thread(target=RE, args=(count([det], 1500, delay=0.002),))
    try:
        runner.start()
        _wait(lambda: pub.status().acked > 200, 30, "publisher never got going")
        nats_server.kill()
        _wait(lambda: not pub.status().connected, 10, "publisher did not notice")
        _wait(lambda: pub.status().spooled > 50, 30, "nothing spooled while the bus was down")
        nats_server.start(streams=False)  # same store: the stream survived the kill
        runner.join(120)
        assert not runner.is_alive()
        assert pub.flush(60.0), pub.status()
    finally:
        runner.join(120)
        st = pub.close()
    assert st.spooled == 0 and st.acked + st.duplicates >= len(emitted)
    _assert_exactly_once_in_order(bus_pod, emitted)


def test_a_defect_in_the_publishers_thread_loses_nothing_and_publishing_goes_on(
    bus_pod: LoadedPod,
    nats_server: NatsProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected error in the publisher's thread (here: the third batch's publish
    raises, as "deque mutated during iteration" did under load) is logged and handled
    like a lost connection: everything unacknowledged is sent again, in order, and the
    run goes on. It used to end the thread: the publisher closed, the documents in
    memory were lost, and the next document failed the user's run."""
    from beampod.bus._pubio import Engine

    publish_batch = Engine._publish_batch
    calls = [0]

    async def failing_once(self: Engine, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("deque mutated during iteration")
        await publish_batch(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "_publish_batch", failing_once)
    pub = DurablePublisher.from_pod(bus_pod, reconnect_wait=(0.02, 0.2), poll_interval=0.002)
    try:
        emitted = run_plan(pub, num=300)
        assert pub.flush(60.0), pub.status()
    finally:
        st = pub.close()
    assert calls[0] > 3  # it went on after the error
    assert st.spooled == 0 and st.rejected == 0 and st.acked + st.duplicates >= len(emitted)
    assert "publisher error, starting over from the spool" in caplog.text
    _assert_exactly_once_in_order(bus_pod, emitted)


CHILD = textwrap.dedent("""
    import json, os, sys
    from beampod.bus import DurablePublisher, message_id, run_uid_of
    from beampod.config import PodHome, load_pod
    sys.path.insert(0, sys.argv[2])
    from tests.bus._docs import run_plan
    pod = load_pod(PodHome(__import__("pathlib").Path(sys.argv[1])))
    pub = DurablePublisher.from_pod(pod, stop_timeout=5.0)
    emitted = run_plan(pub, num=15)
    st = pub.status()
    runs = {}
    ids = [message_id(n, d, run_uid_of(n, d, runs)) for n, d in emitted]
    print(json.dumps({"ids": ids, "spooled": st.spooled}), flush=True)
    os._exit(0)  # no close(): a crash right after the run
""")


def test_restarted_process_drains_the_spool_first(
    bus_pod: LoadedPod, nats_proc: NatsProcess
) -> None:
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(bus_pod.home.root), str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["spooled"] == len(child["ids"])
    nats_proc.start()
    pub = DurablePublisher.from_pod(load_pod(bus_pod.home))
    try:
        later = run_plan(pub, num=3)  # new documents queue behind the spooled ones
        assert pub.flush(30.0), pub.status()
    finally:
        pub.close()
    stored = [mid for mid, *_ in read_stream(bus_pod)]
    assert stored == child["ids"] + _ids(later)


def test_large_event_page_is_split_under_max_payload(tmp_path: Path) -> None:
    from event_model import compose_run

    from beampod.config import PodHome, init_pod

    home = PodHome(tmp_path / "small")
    init_pod(home, free_ports=True)
    text = home.config_file.read_text().replace(
        "  transport: nats\n", "  transport: nats\n  max_payload_mb: 1\n"
    )
    home.config_file.write_text(text)
    pod = load_pod(home)
    server = NatsProcess(pod)
    server.start()
    try:
        bundle = compose_run()
        desc = bundle.compose_descriptor(
            name="primary", data_keys={"x": {"dtype": "array", "shape": [2000], "source": "sim"}}
        )
        n = 200  # 200 events x 16 kB = 3.2 MB of data: well above max_payload (1 MiB)
        rng = np.random.default_rng(0)
        page: dict[str, Any] = {
            "descriptor": desc.descriptor_doc["uid"],
            "seq_num": list(range(1, n + 1)),
            "time": [float(i) for i in range(n)],
            "uid": [f"e{i}" for i in range(n)],
            "data": {"x": rng.random((n, 2000))},
            "timestamps": {"x": [0.0] * n},
            "filled": {},
        }
        stop = bundle.compose_stop()
        pub = DurablePublisher.from_pod(pod)
        docs: list[tuple[str, Any]] = [  # event-model's TypedDicts and a plain page
            ("start", bundle.start_doc),
            ("descriptor", desc.descriptor_doc),
            ("event_page", page),
            ("event_page", page),
            ("stop", stop),
        ]
        try:
            for name, doc in docs:
                pub(name, doc)
            assert pub.flush(30.0)
            st = pub.status()
        finally:
            pub.close()
        stored = read_stream(pod)
        pages = [(mid, d, size) for mid, name, d, size in stored if name == "event_page"]
        assert len(pages) > 1
        assert all(size < 1024 * 1024 for *_, size in pages)
        # Sending the same page twice stored it once: the pieces' ids are stable.
        assert st.duplicates == len(pages)
        np.testing.assert_array_equal(
            np.concatenate([d["data"]["x"] for _, d, _ in pages]), page["data"]["x"]
        )
        assert [s for d in (x[1] for x in pages) for s in d["seq_num"]] == page["seq_num"]
    finally:
        server.stop()
