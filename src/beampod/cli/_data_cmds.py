"""The data path seen from the command line: runs, tail, dead letters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import sys
from collections.abc import Callable
from typing import Any

from beampod.cli._common import add_instrument_option, instrument_arg, pod_of, table
from beampod.config import documents_subject


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="recent runs stored in Tiled")
    p.add_argument("--limit", type=int, default=20)
    add_instrument_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("tail", help="print documents as they pass on the bus")
    p.add_argument("--from-start", action="store_true", help="replay the stream from its start")
    add_instrument_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document per line")
    p.add_argument(
        "--table",
        action="store_true",
        help="show runs as LiveTables (bluesky's BestEffortCallback), like the session",
    )
    p.add_argument("-n", "--max", type=int, default=0, help="stop after N documents")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("dlq", help="dead letters: messages the writer could not store")
    add_instrument_option(p, dest="group_instrument")
    dsub = p.add_subparsers(dest="dlq_cmd", required=True, metavar="ACTION")
    q = dsub.add_parser("list", help="list dead letters with their reasons")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_dlq_list)
    q = dsub.add_parser("show", help="one dead letter in full")
    q.add_argument("seq", type=int)
    q.set_defaults(func=cmd_dlq_show)
    q = dsub.add_parser("replay", help="send a dead letter to the writer again")
    q.add_argument("seq", type=int, nargs="+")
    q.set_defaults(func=cmd_dlq_replay)
    for q in dsub.choices.values():
        add_instrument_option(q)


def _when(t: datetime.datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def cmd_runs(args: argparse.Namespace) -> int:
    from beampod.store import lean_client_imports

    if getattr(args, "whole_process", False):
        # Listing reads metadata only: no dataframe or array library (~2-3 s of CPU).
        # Not in a caller's Python, whose own code may import them.
        lean_client_imports()
    from beampod.store import list_runs

    runs = list_runs(pod_of(args), args.instrument, limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "uid": r.uid,
                        "scan_id": r.scan_id,
                        "plan_name": r.plan_name,
                        "start_time": r.start_time.isoformat() if r.start_time else None,
                        "num_events": r.num_events,
                        "exit_status": r.exit_status,
                        "stop_num_events": r.stop_num_events,
                        "mismatch": r.mismatch,
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return 0
    if not runs:
        print("no runs stored yet")
        return 0
    rows = [
        [
            r.uid[:8],
            str(r.scan_id if r.scan_id is not None else "-"),
            r.plan_name or "-",
            _when(r.start_time),
            str(r.num_events),
            (r.exit_status or "open") + ("!" if r.mismatch else ""),
        ]
        for r in runs
    ]
    print(table(rows, ["uid", "scan_id", "plan", "start", "events", "exit_status"]))
    if any(r.mismatch for r in runs):
        print(
            "! the stop document claims another number of events than are stored "
            "(`beampod runs --json`: stop_num_events; `beampod dlq list` says why)"
        )
    return 0


def _summary(name: str, doc: dict) -> str:
    if name == "start":
        return (
            f"start      uid={doc.get('uid', '')[:8]} scan_id={doc.get('scan_id')} "
            f"plan={doc.get('plan_name')}"
        )
    if name == "descriptor":
        return f"descriptor stream={doc.get('name')} keys={sorted(doc.get('data_keys', {}))}"
    if name == "event":
        data = ", ".join(f"{k}={v}" for k, v in sorted(doc.get("data", {}).items()))
        return f"event      seq={doc.get('seq_num')} {data}"
    if name == "event_page":
        return f"event_page seq={doc.get('seq_num', [None])[0]}..+{len(doc.get('seq_num', []))}"
    if name == "stop":
        return (
            f"stop       uid={doc.get('run_start', '')[:8]} "
            f"exit_status={doc.get('exit_status')} events={doc.get('num_events')}"
        )
    return f"{name:<10} {doc.get('uid') or doc.get('datum_id') or ''}"


class _Enough(Exception):
    """``tail -n N`` has seen its N messages."""


def cmd_tail(args: argparse.Namespace) -> int:
    from beampod.bus import NatsConnection, tail

    pod = pod_of(args)
    instrument = args.instrument or pod.config.instrument_name
    table_cb = _live_table() if args.table else None

    def show(name: str, doc: dict[str, Any]) -> None:
        if table_cb is not None:
            table_cb(name, doc)
        elif args.json:
            print(json.dumps([name, doc], default=_jsonable), flush=True)
        else:
            print(_summary(name, doc), flush=True)

    if pod.config.bus.transport != "nats":
        from beampod.cli._transport_cmds import tail_other

        return tail_other(args, pod, instrument, show)
    conn = NatsConnection.from_pod(pod, instrument, role="reader", name="beampod-tail")

    seen = 0

    def counted() -> None:
        # -n counts stream messages: documents and the ones that are not documents.
        nonlocal seen
        seen += 1
        if args.max and seen >= args.max:
            raise _Enough

    def skipped(seq: int, reason: str) -> None:
        print(f"skipped stream message {seq}: {reason}", file=sys.stderr, flush=True)
        counted()

    async def go() -> None:
        with contextlib.suppress(_Enough):
            async for name, doc in tail(
                conn, instrument, from_start=args.from_start, on_ready=ready, on_skip=skipped
            ):
                show(name, doc)
                counted()

    def ready() -> None:
        # On stderr, so that stdout stays pure documents (JSON lines); printed once the
        # consumer exists, so a script can wait for it before starting a run.
        where = "from the start" if args.from_start else "from now"
        print(
            f"following {documents_subject(instrument)} {where} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    asyncio.run(go())
    return 0


def _live_table() -> Callable[[str, dict[str, Any]], Any]:
    """The session's BestEffortCallback, headless: one LiveTable per run from the bus."""
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    from bluesky.callbacks.best_effort import BestEffortCallback

    bec = BestEffortCallback()
    bec.disable_plots()
    return bec


def _jsonable(value: object) -> object:
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


def _dlq_conn(args: argparse.Namespace):
    from beampod.bus import NatsConnection

    pod = pod_of(args)
    instrument = instrument_arg(args) or pod.config.instrument_name
    # Dead letters are an operator's tool: the admin user reads every instrument's.
    return NatsConnection.from_pod(pod, admin=True, name="beampod-dlq"), instrument


def _other_bus(args: argparse.Namespace) -> tuple[Any, str] | None:
    """(pod, instrument) when the bus is not NATS: dead letters live elsewhere."""
    pod = pod_of(args)
    if pod.config.bus.transport == "nats":
        return None
    return pod, instrument_arg(args) or pod.config.instrument_name


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from beampod.bus import list_dead_letters
    from beampod.cli import _transport_cmds as other

    if (on := _other_bus(args)) is not None:
        letters = other.dlq_list_other(*on, limit=args.limit)
        instrument = on[1]
    else:
        conn, instrument = _dlq_conn(args)
        letters = asyncio.run(list_dead_letters(conn, instrument, limit=args.limit))
    if args.json:
        print(other.letters_json(letters))
        return 0
    if not letters:
        print(f"no dead letters for {instrument}")
        return 0
    rows = [[str(d.seq), _when(d.time), d.describe()[:40], d.reason[:70]] for d in letters]
    print(table(rows, ["seq", "time", "message", "reason"]))
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from beampod.bus import DecodeError, decode, get_dead_letter
    from beampod.cli._transport_cmds import dlq_get_other

    if (on := _other_bus(args)) is not None:
        d = dlq_get_other(*on, args.seq)
    else:
        conn, instrument = _dlq_conn(args)
        d = asyncio.run(get_dead_letter(conn, instrument, args.seq))
    print(
        f"seq:      {d.seq}\ntime:     {_when(d.time)}\nreason:   {d.reason}\n"
        f"msg id:   {d.msg_id or '-'}\nheaders:  {json.dumps(d.headers)}"
    )
    try:
        name, doc = decode(d.data)
        print(f"document: {name}\n{json.dumps(doc, indent=2, default=_jsonable)}")
    except DecodeError as exc:
        print(f"payload:  {len(d.data)} bytes, not a document ({exc})\n          {d.data[:200]!r}")
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from beampod.bus import replay_dead_letter
    from beampod.cli._transport_cmds import dlq_replay_other

    if (on := _other_bus(args)) is not None:
        return dlq_replay_other(*on, args.seq)
    conn, instrument = _dlq_conn(args)
    for seq in args.seq:
        new_seq = asyncio.run(replay_dead_letter(conn, instrument, seq))
        print(f"dead letter {seq} replayed as documents message {new_seq}")
    return 0
