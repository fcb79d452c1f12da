"""Faults of a facility's central services while every instrument runs (issue 10, "Prove").

One module-scoped facility of three instruments on the scaffold's central services: a
3-node NATS JetStream cluster (every stream with 3 replicas) and PostgreSQL behind one
Tiled (``tests/facility/_facility.py: fault_config``). It is not the isolation tests'
facility (``test_facility_pod.py``): that one runs one NATS node, and these faults kill
nodes, stop the database and fill a stream, which the isolation tests must not see.
Runs come from session processes (``tests/datapath/_emitter.py``, one per instrument,
``make_run_engine(pod, instrument)``): DurablePublisher (spool) -> the cluster ->
the writers -> Tiled, compared document by document with what each RunEngine emitted.
bl01 and bl02 are stored by one writer pool (``writer-pool-1``, ``pod.writer_pool_size:
2``), bl03 by its own ``writer-bl03``: every fault hits both kinds of writer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beampod.bus import NatsConnection, nats_nodes
from beampod.config import LoadedPod, PodHome, load_pod, stream_name
from tests.conftest import beampod_in_process, call_passed
from tests.datapath._helpers import (
    STORE_POLL_S,
    Emitter,
    assert_stored_exactly,
    finish_and_assert_stored,
    run_lookup,
    service,
    stop_emitters,
    stored_events,
    wait_for,
    wait_pod_ready,
    wait_service_ready,
    wait_stored,
)
from tests.facility._facility import facility_up, fault_config, make_facility_with, run_cli

pytestmark = [pytest.mark.pod, pytest.mark.slow, pytest.mark.timeout(600)]

INSTRUMENTS = ("bl01", "bl02", "bl03")
WRITER_POOL_SIZE = 2  # bl01 + bl02 in writer-pool-1, bl03 alone in writer-bl03
MAX_BYTES_GB = 0.002  # each instrument's documents stream: ~2.1 MB (the flood's target)
PG_OUTAGE_S = 30.0  # the outage: PostgreSQL unavailable for 30 s mid-run


@pytest.fixture(scope="module")
def facility() -> Iterator[LoadedPod]:
    def edit(cfg: dict[str, Any]) -> None:
        fault_config(cfg, max_bytes_gb=MAX_BYTES_GB)
        cfg.setdefault("pod", {})["writer_pool_size"] = WRITER_POOL_SIZE

    def make(root: Path) -> None:
        make_facility_with(root, len(INSTRUMENTS), edit)

    with facility_up("beampod-facfaults-", make) as root:
        yield load_pod(PodHome(root))


@pytest.fixture
def emitters(request: pytest.FixtureRequest) -> Iterator[list[Emitter]]:
    """Session processes made by a test; none may outlive a test that passed (one that
    failed midway leaves them to this teardown, which kills them either way)."""
    made: list[Emitter] = []
    yield made
    stop_emitters(made, call_passed(request))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="beampod-facfaults-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _everything_ready(pod: LoadedPod) -> dict[str, Any]:
    return wait_pod_ready(pod, 120.0)["services"]  # polled in-process, then `status`


def _run_on_each(pod: LoadedPod, workdir: Path, tag: str) -> dict[str, Emitter]:
    """An open-ended run on every instrument at once, each with some events stored."""
    ems = {
        inst: Emitter(
            pod, workdir, min_events=30, delay=0.03, tag=f"{tag}-{inst}", instrument=inst
        ).start()
        for inst in INSTRUMENTS
    }
    for em in ems.values():
        wait_stored(pod, em, rows=5, deadline_s=120)
    return ems


def _finish_and_assert_stored(pod: LoadedPod, ems: dict[str, Emitter]) -> None:
    """End every run at once (an open-ended run grows while another is checked), then
    compare each instrument's store with what its RunEngine emitted."""
    for em in ems.values():
        em.finish()
    for inst, em in ems.items():
        emitted, report = em.result(deadline_s=120)
        assert report["delivered"], (inst, report)
        try:
            assert_stored_exactly(pod, emitted, deadline_s=180, instrument=inst)
        except AssertionError as exc:
            # The facility's home goes with its fixture: what its writer and Tiled
            # logged is what tells why, so it goes into the failure.
            tails = "\n".join(
                f"--- the last lines of {name}.log ---\n{_log_tail(pod, name)}"
                for name in (_writer(pod, inst), "tiled")
            )
            raise AssertionError(f"{exc}\n{tails}") from exc
        # A fault is not a flood: no writer may report documents the stream discarded.
        log = (pod.home.logs_dir / f"{_writer(pod, inst)}.log").read_text(errors="replace")
        assert "they are lost" not in log, log[-2000:]


async def _admin(pod: LoadedPod, what: Any) -> Any:
    nc = await NatsConnection.from_pod(pod, admin=True, name="facfaults-admin").connect(
        reconnect=False
    )
    try:
        return await what(nc.jetstream(timeout=5.0))
    finally:
        await nc.close()


def _stream_info(pod: LoadedPod, name: str) -> Any:
    return asyncio.run(_admin(pod, lambda js: js.stream_info(name)))


def _replicas_current(pod: LoadedPod) -> bool:
    """Every instrument's documents stream has a leader and three current replicas."""
    want = {n.server_name for n in nats_nodes(pod)}
    for inst in INSTRUMENTS:
        cluster = _stream_info(pod, stream_name(inst)).cluster
        current = {p.name for p in cluster.replicas or [] if p.current and not p.offline}
        if not cluster.leader or current | {cluster.leader} != want:
            return False
    return True


def test_nats_node_sigkilled_mid_run_on_every_instrument(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    """SIGKILL the node leading bl01's documents stream while all three instruments run:
    each publisher fails over, the supervisor restarts the node, it catches up, and every
    run of every instrument is stored exactly once."""
    pod = facility
    wait_for(lambda: _replicas_current(pod), 60.0, "every replica current before")
    ems = _run_on_each(pod, workdir, "node-kill")
    emitters.extend(ems.values())
    leader = _stream_info(pod, stream_name("bl01")).cluster.leader
    victim = next(n.service for n in nats_nodes(pod) if n.server_name == leader)
    before = service(pod, victim)
    os.kill(before["pid"], signal.SIGKILL)
    at_kill = {inst: em.events for inst, em in ems.items()}
    for inst, em in ems.items():  # no RunEngine is held up by the lost node
        em.wait_events(at_kill[inst] + 20, deadline_s=60)
    for em in ems.values():  # and storing goes on, on the two survivors
        wait_stored(pod, em, rows=stored_events(pod, em) + 5, deadline_s=60)
    after = wait_service_ready(pod, victim, not_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1
    wait_for(lambda: _replicas_current(pod), 90.0, f"{victim} rejoined and current")
    _finish_and_assert_stored(pod, ems)
    _everything_ready(pod)


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_postgres_stopped_30s_mid_run_on_every_instrument(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    """``beampod service stop postgres`` for 30 s while all three instruments run (the
    supervisor keeps a service stopped by the operator stopped: the database really is
    gone, its port refuses connections): the RunEngines go on, the documents wait on the
    bus, and after ``service start postgres`` every run is stored exactly once."""
    pod = facility
    home = pod.home.root
    writers = {inst: service(pod, _writer(pod, inst))["pid"] for inst in INSTRUMENTS}
    ems = _run_on_each(pod, workdir, "pg-stop")
    emitters.extend(ems.values())
    beampod_in_process(home, "service", "stop", "postgres")
    t0 = time.monotonic()
    at_stop = {inst: em.events for inst, em in ems.items()}
    try:
        # The outage itself lasts 30 s of plan time; while it lasts the database stays
        # down (not restarted behind the test's back) and the RunEngines keep emitting.
        while time.monotonic() - t0 < PG_OUTAGE_S:
            assert service(pod, "postgres")["state"] == "stopped"
            assert _refuses_connections(pod.config.store.port)  # type: ignore[union-attr]
            time.sleep(1.0)  # sampling interval during the deliberate outage
        for inst, em in ems.items():
            assert em.events >= at_stop[inst] + 20, (inst, at_stop[inst], em.events)
    finally:
        beampod_in_process(home, "service", "start", "postgres")
    wait_service_ready(pod, "postgres")
    for em in ems.values():
        em.wait_events(em.events + 10)
    _finish_and_assert_stored(pod, ems)
    _everything_ready(pod)
    # The writers waited the outage out; none was restarted.
    restarted = [i for i in INSTRUMENTS if service(pod, _writer(pod, i))["pid"] != writers[i]]
    assert not restarted, "\n".join(
        f"{_writer(pod, i)} was restarted; the end of its log:\n{_log_tail(pod, _writer(pod, i))}"
        for i in restarted
    )


def _flood(pod: LoadedPod, instrument: str, bound: int, until_first_seq: int) -> dict[str, Any]:
    """What a runaway plan on ``instrument`` does to the bus: complete runs of big events
    (3 x 300 kB each) through the instrument's real publisher, until the stream has
    discarded everything before ``until_first_seq`` or ``bound`` bytes were sent. Returns
    the publisher's final status and what was sent."""
    from event_model import compose_run

    from beampod.bus import DurablePublisher

    blob = "f" * 300_000
    publisher = DurablePublisher.from_pod(pod, instrument)

    def pub(name: str, doc: Any) -> None:  # event_model's TypedDicts are plain dicts
        publisher(name, dict(doc))

    sent = runs = 0
    try:
        while sent < bound:
            run = compose_run(metadata={"purpose": "flood", "instrument": instrument})
            pub("start", run.start_doc)
            desc = run.compose_descriptor(
                name="primary",
                data_keys={"blob": {"source": "flood", "dtype": "string", "shape": []}},
            )
            pub("descriptor", desc.descriptor_doc)
            for i in range(1, 4):
                now = time.time()
                pub(
                    "event",
                    desc.compose_event(data={"blob": blob}, timestamps={"blob": now}, seq_num=i),
                )
                sent += len(blob)
            pub("stop", run.compose_stop())
            runs += 1
            assert publisher.flush(60), publisher.status()
            if _stream_info(pod, stream_name(instrument)).state.first_seq >= until_first_seq:
                break
        return {
            "status": publisher.status(),
            "sent": sent,
            "runs": runs,
            "last_uid": run.start_doc["uid"],
        }
    finally:
        publisher.close()


def test_one_instrument_flooding_the_bus_does_not_stop_anothers_runs(
    facility: LoadedPod, emitters: list[Emitter], workdir: Path
) -> None:
    """bl03 floods the bus while its writer lags (here: is stopped) and bl02 runs.

    The limit that protects bl02 is per stream: bl03's documents stream holds at most
    ``bus.stream.max_bytes_gb`` (discard old), created by the admin alone, so bl03 can
    neither grow past it nor touch bl02's. bl03's publisher sees nothing (every document
    acknowledged, none spooled or refused); the stream drops bl03's *oldest* documents.
    bl03's run that the writer had not stored yet is among them: when the writer comes
    back it reports the range it lost (log and a dead letter), never skipping it silently.
    """
    from beampod.bus import LOST_SEQS, list_dead_letters

    pod = facility
    home = pod.home.root
    # bl03 has a writer of its own (stopped here); bl02's is the pool it shares with bl01.
    a, b = "bl03", "bl02"
    assert _writer(pod, a) == f"writer-{a}" and _writer(pod, b) == "writer-pool-1"
    limit = int(MAX_BYTES_GB * 1024**3)
    b_first = _stream_info(pod, stream_name(b)).state.first_seq
    em_b = Emitter(pod, workdir, min_events=30, delay=0.03, tag="flood-b", instrument=b).start()
    emitters.append(em_b)
    wait_stored(pod, em_b, rows=5, deadline_s=120)
    beampod_in_process(home, "service", "stop", _writer(pod, a))
    try:
        # A run of bl03 that the bus acknowledged but bl03's writer has not stored, in
        # the stream's messages after this one (its events travel as pages: fewer
        # messages than documents).
        a_run_first = _stream_info(pod, stream_name(a)).state.last_seq + 1
        em_a = Emitter(
            pod,
            workdir,
            min_events=10,
            delay=0.01,
            open_ended=False,
            flush_s=30,
            tag="flood-a",
            instrument=a,
        ).start()
        emitters.append(em_a)
        emitted_a, report_a = em_a.result()
        assert report_a["delivered"], report_a
        a_run_last = _stream_info(pod, stream_name(a)).state.last_seq
        # The scaffold's bus.event_page_ms: the run's events went as pages.
        assert a_run_last - a_run_first + 1 < len(emitted_a), (a_run_first, a_run_last)
        at_flood = stored_events(pod, em_b)
        flood = _flood(pod, a, bound=2 * limit, until_first_seq=a_run_last + 1)
        st = flood["status"]
        # bl03's publisher: everything acknowledged, nothing spooled, nothing refused.
        assert (st.rejected, st.spooled, st.connected) == (0, 0, True), st
        info = _stream_info(pod, stream_name(a))
        assert info.state.bytes <= limit, (info.state.bytes, limit)  # the limit holds
        assert info.state.first_seq > a_run_last, (info.state, a_run_last, flood)
        # bl02 went on storing during the flood; nothing of bl02 was discarded.
        wait_stored(pod, em_b, rows=at_flood + 5, deadline_s=60)
    finally:
        beampod_in_process(home, "service", "start", _writer(pod, a))
    finish_and_assert_stored(pod, em_b)
    assert _stream_info(pod, stream_name(b)).state.first_seq == max(b_first, 1)  # 0: empty
    # bl03's writer is back: the loss of its unstored run is reported, with the range.
    wait_service_ready(pod, _writer(pod, a))
    admin = NatsConnection.from_pod(pod, admin=True, name="facfaults-dlq")
    lost = wait_for(
        lambda: [lt for lt in asyncio.run(list_dead_letters(admin, a)) if LOST_SEQS in lt.headers],
        60.0,
        "bl03's writer reporting what the stream discarded",
    )
    first, last = (int(x) for x in lost[0].headers[LOST_SEQS].split("-"))
    assert first <= a_run_first and last >= a_run_last, (first, last, a_run_first, a_run_last)
    assert f"stream seqs {first}..{last}" in lost[0].reason
    shown = run_cli(home, "dlq", "-i", a, "list").stdout
    assert f"lost: stream seqs {first}-{last}" in shown, shown
    replay = run_cli(home, "dlq", "-i", a, "replay", str(lost[0].seq), check=False)
    assert replay.returncode == 2 and "no document to replay" in replay.stderr, replay
    log = (pod.home.logs_dir / f"{_writer(pod, a)}.log").read_text(errors="replace")
    assert f"stream seqs {first}..{last}" in log and "they are lost" in log
    # bl03's newest runs, still in its stream, are stored: the writer goes on.
    lookup = run_lookup(pod, a)
    wait_for(
        lambda: lookup(flood["last_uid"]).metadata["stop"],
        120.0,
        "bl03's last flood run stored",
        interval=STORE_POLL_S,
    )
    _everything_ready(pod)


def _writer(pod: LoadedPod, inst: str) -> str:
    """The writer service storing ``inst`` (its own, or the pool it is in)."""
    return pod.config.writer_service(inst)


def _log_tail(pod: LoadedPod, name: str, lines: int = 40) -> str:
    """The last lines of a service's log without the per-request noise (what a failed
    assertion needs to say why the service exited)."""
    path = pod.home.logs_dir / f"{name}.log"
    if not path.is_file():
        return f"(no {path})"
    text = path.read_text(errors="replace")
    kept = [ln for ln in text.splitlines() if "HTTP Request:" not in ln]
    return "\n".join(kept[-lines:])
