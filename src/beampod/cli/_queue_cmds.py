"""``beampod queue [-i NAME] ...``: an instrument's queue server over its HTTP API
(its control key)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from beampod.cli._common import add_instrument_option, instrument_arg, pod_of, progress, table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("queue", help="the queue server: add plans, start/stop, history")
    add_instrument_option(p, dest="group_instrument")
    qsub = p.add_subparsers(dest="queue_cmd", required=True, metavar="ACTION")

    a = qsub.add_parser("add", help="enqueue a plan expression (parsed safely, never eval'd)")
    a.add_argument("expression", help="e.g. 'scan([pinhole], motor_ph, -10, 10, 25)'")
    a.add_argument("--front", action="store_true", help="put it first instead of last")
    a.set_defaults(func=cmd_add)

    q = qsub.add_parser("list", help="the queue and the running plan")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    h = qsub.add_parser("history", help="finished plans and how they ended")
    h.add_argument("--json", action="store_true")
    h.add_argument("-n", "--last", type=int, default=20, help="show the last N (default 20)")
    h.set_defaults(func=cmd_history)

    for name, helptext in (
        ("start", "start the queue (opens the environment if needed)"),
        ("stop", "stop the queue after the running plan"),
        ("pause", "pause the running plan (at the next checkpoint; --now: immediately)"),
        ("resume", "resume a paused plan"),
        ("abort", "abort the running plan (history: aborted; it returns to the queue front)"),
        ("clear", "remove every plan from the queue (the history stays)"),
        ("status", "the manager's status"),
    ):
        c = qsub.add_parser(name, help=helptext)
        if name == "pause":
            c.add_argument("--now", action="store_true", help="pause immediately")
        if name == "status":
            c.add_argument("--json", action="store_true")
        c.set_defaults(func=cmd_control, action=name)

    e = qsub.add_parser("env", help="open or close the worker environment")
    e.add_argument("env_action", choices=["open", "close"])
    e.add_argument("--timeout", type=float, default=120.0)
    e.set_defaults(func=cmd_env)
    for action in qsub.choices.values():
        add_instrument_option(action)


def _client(args: argparse.Namespace) -> Any:
    from beampod.queue import QueueClient

    # The instrument's own queue server and keys; an instrument without a queue, or an
    # unknown name, is a one-line usage error.
    return QueueClient(pod_of(args), instrument=instrument_arg(args))


def cmd_add(args: argparse.Namespace) -> int:
    with _client(args) as q:
        item = q.add(args.expression, pos="front" if args.front else None)
        status = q.status()
    print(
        f"queued {_describe(item)} as {item['item_uid']} "
        f"({status['items_in_queue']} in queue, manager {status['manager_state']})"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as q:
        items, running = q.queue()
    if args.json:
        print(json.dumps({"running_item": running, "items": items}, indent=2))
        return 0
    rows = []
    if running:
        rows.append(["running", _describe(running), running.get("item_uid", "")])
    rows += [[str(i), _describe(it), it.get("item_uid", "")] for i, it in enumerate(items)]
    print(table(rows, ["pos", "plan", "uid"]) if rows else "the queue is empty")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _client(args) as q:
        items = q.history()[-args.last :] if args.last > 0 else q.history()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    rows = []
    for it in items:
        res = it.get("result", {})
        rows.append(
            [
                _describe(it),
                str(res.get("exit_status", "")),
                ",".join(u[:8] for u in res.get("run_uids", [])),
                str(res.get("msg", "")).splitlines()[0][:60] if res.get("msg") else "",
            ]
        )
    print(table(rows, ["plan", "exit", "runs", "message"]) if rows else "no history")
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    action = args.action
    with _client(args) as q:
        if action == "start":
            q.start(progress=progress)
        elif action == "stop":
            q.call("queue_stop")
        elif action == "pause":
            q.call("re_pause", "immediate" if args.now else "deferred")
        elif action == "resume":
            q.call("re_resume")
        elif action == "abort":
            q.abort(progress=progress)
        elif action == "clear":
            q.call("queue_clear")
        status = q.status()
    if action == "status" and args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"manager {status['manager_state']}, RE {status['re_state']}, "
        f"{status['items_in_queue']} queued, {status['items_in_history']} in history, "
        f"environment {'open' if status['worker_environment_exists'] else 'closed'}"
        + (", stop pending" if status.get("queue_stop_pending") else "")
        + (", autostart on" if status.get("queue_autostart_enabled") else "")
    )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    with _client(args) as q:
        if args.env_action == "open":
            changed = q.open_environment(timeout_s=args.timeout, progress=progress)
            print("environment opened" if changed else "environment was already open")
        else:
            changed = q.close_environment(timeout_s=args.timeout, progress=progress)
            print("environment closed" if changed else "environment was already closed")
    return 0


def _describe(item: dict[str, Any]) -> str:
    args = ", ".join(json.dumps(a) for a in item.get("args", []))
    kwargs = ", ".join(f"{k}={json.dumps(v)}" for k, v in (item.get("kwargs") or {}).items())
    return f"{item.get('name', '?')}({', '.join(x for x in (args, kwargs) if x)})"
