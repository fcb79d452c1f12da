"""A session process for the data-path fault tests: runs one plan of ophyd.sim devices
through ``make_run_engine(pod)`` (so every document goes through the pod's real durable
publisher, spool included) and records exactly what the RunEngine emitted.

    python tests/datapath/_emitter.py --home HOME --record OUT.pickle
        [--min-events N] [--delay S] [--until FILE] [--flush S] [--tag TAG] [--hold-after N]
        [--hold-file FILE] [--instrument NAME]

The plan moves ``motor`` and reads ``det`` and ``motor`` once per step, printing
``uid <start uid>`` first and ``event <n>`` after each event so the test can inject its
fault at a known point. It stops after ``--min-events`` events, and (with ``--until``)
not before FILE exists. The recorded ``(name, doc)`` pairs are pickled to OUT after the
run; the process then exits normally, so the publisher's atexit close delivers what it
can and spools the rest. Each document is also appended to OUT.stream as it is emitted
(for a process the test kills); ``--hold-after N`` waits until the first N events are
acknowledged by the bus or safe in the spool, prints ``holding N spooled=S`` and idles in
the middle of the run until killed; with ``--hold-file FILE`` it holds only once FILE
exists and three more events were emitted after it (a fault the test injects first, however
long that takes on a loaded machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--min-events", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--until")
    ap.add_argument(
        "--flush", type=float, default=0.0, help="after the run, wait up to S seconds for every ack"
    )
    ap.add_argument("--tag", default="datapath")
    ap.add_argument("--instrument", help="a facility's instrument (default: the default one)")
    ap.add_argument(
        "--hold-after",
        type=int,
        help="after event N: wait until every document is acked or spooled, print "
        "'holding N spooled=S', then idle until killed",
    )
    ap.add_argument(
        "--hold-file",
        help="with --hold-after: hold only once FILE exists and 3 more events were emitted "
        "after it appeared (the test creates FILE once its fault is in place)",
    )
    args = ap.parse_args()

    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp
    from bluesky.utils import Msg
    from ophyd.sim import det, motor

    from beampod.bus import DurablePublisher
    from beampod.config import PodHome, load_pod
    from beampod.session import make_run_engine

    pod = load_pod(PodHome.resolve(args.home))
    RE = make_run_engine(pod, args.instrument)
    emitted: list[tuple[str, dict[str, Any]]] = []

    def record(name: str, doc: dict[str, Any]) -> None:
        emitted.append((name, copy.deepcopy(doc)))
        if name == "start":
            print(f"uid {doc['uid']}", flush=True)

    # Also streamed as each document is emitted (one pickle each), so a test that
    # SIGKILLs this process still knows what the RunEngine had emitted.
    stream = open(args.record + ".stream", "wb")  # noqa: SIM115 - lives as long as the process

    def record_now(name: str, doc: dict[str, Any]) -> None:
        pickle.dump((name, copy.deepcopy(doc)), stream)
        stream.flush()

    RE.subscribe(record)
    RE.subscribe(record_now)
    until = Path(args.until) if args.until else None
    hold_file = Path(args.hold_file) if args.hold_file else None
    after_hold_file = 0  # events emitted since hold_file appeared

    def may_hold(i: int) -> bool:
        nonlocal after_hold_file
        if args.hold_after is None or i < args.hold_after:
            return False
        if hold_file is None:
            return True
        if hold_file.exists():
            after_hold_file += 1
        return after_hold_file >= 3

    @bpp.run_decorator(md={"purpose": args.tag})
    def plan() -> Generator[Msg, Any, None]:
        i = 0
        while True:
            yield from bps.mv(motor, -5.0 + 0.01 * i)
            yield from bps.trigger_and_read([det, motor])
            i += 1
            print(f"event {i}", flush=True)
            if may_hold(i):
                pub = RE.publisher
                assert isinstance(pub, DurablePublisher), pub
                # Every document so far acknowledged by the bus or, with the bus down,
                # fsync'd in the spool: nothing is left only in this process's memory.
                deadline = time.monotonic() + 60.0
                while (st := pub.status()).queued or st.in_flight:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"documents still in memory: {st}")
                    yield from bps.sleep(0.02)
                print(f"holding {i} spooled={st.spooled}", flush=True)
                while True:
                    yield from bps.sleep(0.1)
            if i >= args.min_events and (until is None or until.exists()):
                return
            yield from bps.sleep(args.delay)

    RE(plan())
    publisher = RE.publisher
    assert publisher is not None  # any transport's publisher (NATS, Kafka, 0MQ)
    delivered = publisher.flush(args.flush) if args.flush else False
    status = cast(Any, publisher).status()  # every transport's publisher reports one
    with open(args.record, "wb") as fh:
        pickle.dump(emitted, fh)
    uid = next(d["uid"] for n, d in emitted if n == "start")
    print(
        "result "
        + json.dumps(
            {"uid": uid, "delivered": delivered, "status": {k: v for k, v in vars(status).items()}}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
