"""The agent service: ``python -m beampod.adaptive [--instrument NAME ...]``.

The pod home comes from ``BEAMPOD_HOME`` (set by the supervisor) or ``--home``.
Credentials never come from argv: the supervisor starts one process per instrument and
gives it only that instrument's ``agent`` password in its environment
(``BEAMPOD_AGENT_PASSWORD``), or one process per pool of instruments
(``pod.agent_pool_size``) with its members' passwords (``BEAMPOD_AGENT_PASSWORDS``), and
the process then never reads the pod's secrets file; run by hand without either, the
process reads the 0600 secrets file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from beampod._servicelog import configure_service_logging
from beampod.config import (
    AGENT_PASSWORD_ENV,
    AGENT_PASSWORDS_ENV,
    PodHome,
    load_agent_pod,
    load_pod,
)
from beampod.errors import BeampodError

#: nats-py imports aiohttp at module level for websocket (``ws://``) servers only; the
#: agent connects over ``nats://``. Deferred, it loads if a websocket URL is ever used
#: (or an agent class uses aiohttp) instead of in every agent (ADR 0013).
DEFERRED_IMPORTS = ("aiohttp",)


def main(argv: list[str] | None = None) -> int:
    from beampod._lazy import defer_imports

    defer_imports(DEFERRED_IMPORTS)
    parser = argparse.ArgumentParser(prog="python -m beampod.adaptive")
    parser.add_argument("--home", default=None, help="pod home (default: $BEAMPOD_HOME)")
    parser.add_argument(
        "--instrument",
        action="append",
        default=None,
        help="serve only this instrument (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    configure_service_logging()
    from beampod.adaptive._service import serve

    try:
        home = PodHome.resolve(args.home)
        if os.environ.get(AGENT_PASSWORD_ENV) or os.environ.get(AGENT_PASSWORDS_ENV):
            if not args.instrument:
                print("agent: error: agent passwords in the environment need --instrument")
                return 2
            pod = load_agent_pod(home, args.instrument, os.environ)
        else:
            pod = load_pod(home)
        asyncio.run(serve(pod, args.instrument))
    except BeampodError as exc:
        print(f"agent: error: {exc}", flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
