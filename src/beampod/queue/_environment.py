"""Talking to the RE Manager directly over its encrypted 0MQ control channel.

The supervisor uses this before the HTTP API exists: the ``queue`` readiness probe and
opening the worker environment when the pod comes up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from beampod.config import LoadedPod
from beampod.errors import BeampodError
from beampod.queue._files import control_address


def zmq_client(pod: LoadedPod, *, timeout_s: float = 2.0) -> Any:
    from bluesky_queueserver_api.zmq import REManagerAPI

    return REManagerAPI(
        zmq_control_addr=control_address(pod),
        zmq_public_key=pod.secrets.queue_zmq_public_key,
        timeout_recv=timeout_s,
        timeout_send=timeout_s,
    )


async def manager_answers(pod: LoadedPod, *, timeout_s: float = 1.0) -> bool:
    """Readiness: the manager answers ``status`` over the encrypted control channel.

    A raw 0MQ request rather than REManagerAPI: the library logs a traceback for every
    timed-out request, which would fill ``beampod up``'s output while the manager starts.
    """
    import json

    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.REQ)
    try:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = pod.secrets.queue_zmq_public_key.encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.linger = 0
        sock.connect(control_address(pod))
        await sock.send(json.dumps({"method": "status", "params": {}}).encode())
        if not await sock.poll(int(timeout_s * 1000)):
            return False
        status = json.loads(await sock.recv())
    except (zmq.ZMQError, ValueError):
        return False
    finally:
        sock.close(linger=0)
        ctx.term()
    return isinstance(status, dict) and status.get("manager_state") not in (None, "initializing")


def open_environment(
    pod: LoadedPod, *, timeout_s: float = 120.0, progress: Callable[[str], None] | None = None
) -> None:
    """Open the worker environment unless it is open; return once it is, or raise.

    Idempotent, so it is safe as a ``prepare`` step that runs before every start.
    """
    say = progress or (lambda _msg: None)
    rm = zmq_client(pod, timeout_s=5.0)
    try:
        status = rm.status()
        if status["worker_environment_exists"]:
            return
        if status["manager_state"] != "creating_environment":
            say("opening the queue worker environment (loading the instrument)")
            rm.environment_open()
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            try:
                # The library's own status-polling wait, in steps so we can report.
                rm.wait_for_condition(
                    lambda st: st["manager_state"] != "creating_environment", timeout=5.0
                )
                break
            except rm.WaitTimeoutError:
                say(f"still opening the environment ({time.monotonic() - started:.0f} s)")
        status = rm.status(reload=True)
        if not status["worker_environment_exists"]:
            raise BeampodError(
                "the queue worker environment did not open (the instrument package failed "
                "to load or a device is missing); see `beampod logs queue`"
            )
    except (rm.RequestTimeoutError, rm.RequestFailedError) as exc:
        raise BeampodError(f"the queue manager refused or did not answer: {exc}") from exc
    finally:
        rm.close()
