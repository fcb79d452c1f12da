"""``beampod agent``: is the adaptive agent answering, and the bluesky-pods demo in a shell."""

from __future__ import annotations

import argparse
import asyncio
import json

from beampod.cli._common import add_instrument_option, pod_of
from beampod.errors import PodNotRunningError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="the adaptive agent service: ping, demo")
    asub = p.add_subparsers(dest="agent_cmd", required=True, metavar="ACTION")
    ping = asub.add_parser("ping", help="ask the agent for its status over the bus")
    add_instrument_option(ping)
    ping.add_argument("--timeout", type=float, default=2.0)
    ping.set_defaults(func=cmd_ping)
    demo = asub.add_parser(
        "demo",
        help="the bluesky-pods adaptive demo with ophyd.sim det/motor "
        "(17 runs stepping the motor by 1.5)",
    )
    demo.add_argument("--transport", choices=("nats", "redis"), default=None)
    add_instrument_option(demo)
    demo.set_defaults(func=cmd_demo)


def cmd_ping(args: argparse.Namespace) -> int:
    from beampod.adaptive import loop_settings, ping_agent
    from beampod.bus import NatsConnection

    pod = pod_of(args)
    inst = args.instrument or pod.config.instrument_name
    name = loop_settings(pod, inst).name
    status = asyncio.run(
        ping_agent(
            NatsConnection.from_pod(pod, inst, role="publisher"), inst, name, timeout=args.timeout
        )
    )
    if status is None:
        raise PodNotRunningError(
            f"agent {name!r} of instrument {inst!r} did not answer "
            f"within {args.timeout:g} s (is the pod up?)"
        )
    print(json.dumps(status, indent=2, sort_keys=True))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    from beampod.adaptive import adaptive_plan, make_brains

    pod = pod_of(args)
    re = RunEngine({}, call_returns_result=True)
    inst = args.instrument or pod.config.instrument_name
    pod.config.instrument(inst)  # an unknown name: one line, exit 2
    to_brains, from_brains = make_brains(pod, inst, reply_transport=args.transport)
    try:
        result = re(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    finally:
        from_brains.close()
    outcome = getattr(result, "plan_result", None)
    if outcome is None:  # the plan was interrupted before it returned
        return 1
    print(
        f"{len(outcome.points)} runs at motor = "
        + ", ".join(f"{p['motor']:g}" for p in outcome.points)
    )
    print(f"agent stopped: {outcome.reason}")
    return 0
