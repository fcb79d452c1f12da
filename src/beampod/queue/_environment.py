"""Talking to the RE Manager directly over its encrypted 0MQ control channel.

The supervisor uses this before the HTTP API exists: the ``queue`` readiness probe and
opening the worker environment when the pod comes up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from beampod.config import LoadedPod, QueueServer
from beampod.errors import BeampodError
from beampod.queue._files import control_address, server_of

#: How often opening the environment asks the manager whether it is done: the pod's
#: start waits for the answer (the manager itself now learns it within 0.05 s,
#: ``_lean.OPENING_POLL_S``). ~20 status requests for an open of one second.
STATUS_POLL_S = 0.05


def zmq_client(pod: LoadedPod, server: QueueServer | None = None, *, timeout_s: float = 2.0) -> Any:
    from bluesky_queueserver_api.zmq import REManagerAPI

    server = server_of(pod, server)
    return REManagerAPI(
        zmq_control_addr=control_address(pod, server),
        zmq_public_key=server.zmq_public_key,
        timeout_recv=timeout_s,
        timeout_send=timeout_s,
    )


async def manager_answers(
    pod: LoadedPod, server: QueueServer | None = None, *, timeout_s: float = 1.0
) -> bool:
    """Readiness: the manager answers ``status`` over the encrypted control channel.

    A raw 0MQ request rather than REManagerAPI: the library logs a traceback for every
    timed-out request, which would fill ``beampod up``'s output while the manager starts.
    """
    import json

    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = _control_socket(ctx, pod, server)
    try:
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


def _request(
    pod: LoadedPod,
    server: QueueServer | None,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """One request to the manager over the encrypted control channel (raw 0MQ, like
    :func:`manager_answers`: REManagerAPI would load httpx, rich and jsonschema into the
    supervisor, ~13 MB, for a start-up step)."""
    import json

    import zmq

    ctx = zmq.Context()
    sock = _control_socket(ctx, pod, server)
    try:
        sock.send(json.dumps({"method": method, "params": params or {}}).encode())
        if not sock.poll(int(timeout_s * 1000)):
            raise BeampodError(
                f"the queue manager did not answer {method!r} within {timeout_s:g} s"
            )
        reply = json.loads(sock.recv())
    except (zmq.ZMQError, ValueError) as exc:
        raise BeampodError(f"the queue manager refused or did not answer: {exc}") from exc
    finally:
        sock.close(linger=0)
        ctx.term()
    if not isinstance(reply, dict):
        raise BeampodError(f"the queue manager answered {method!r} with {reply!r}")
    return reply


def open_environment(
    pod: LoadedPod,
    server: QueueServer | None = None,
    *,
    timeout_s: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Open the worker environment unless it is open; return once it is, or raise.

    Idempotent, so it is safe as a ``prepare`` step that runs before every start.
    """
    say = progress or (lambda _msg: None)
    status = _request(pod, server, "status")
    if status.get("worker_environment_exists"):
        return
    if status.get("manager_state") != "creating_environment":
        say("opening the queue worker environment (loading the instrument)")
        reply = _request(pod, server, "environment_open")
        if not reply.get("success"):
            raise BeampodError(
                f"the queue manager refused to open the environment: {reply.get('msg')}"
            )
    started = time.monotonic()
    reported = started
    while time.monotonic() < started + timeout_s:
        status = _request(pod, server, "status")
        if status.get("manager_state") != "creating_environment":
            break
        if time.monotonic() - reported >= 5.0:
            reported = time.monotonic()
            say(f"still opening the environment ({reported - started:.0f} s)")
        time.sleep(STATUS_POLL_S)  # polling interval of the manager's status
    if not _request(pod, server, "status").get("worker_environment_exists"):
        raise BeampodError(
            "the queue worker environment did not open (the instrument package failed "
            f"to load or a device is missing); see `beampod logs "
            f"{server_of(pod, server).manager_service}`"
        )


def _control_socket(ctx: Any, pod: LoadedPod, server: QueueServer | None) -> Any:
    """A REQ socket to the manager's control channel, CURVE-encrypted with a fresh
    client key pair (the manager accepts any client that knows its public key)."""
    import zmq

    sock = ctx.socket(zmq.REQ)
    public, secret = zmq.curve_keypair()
    server = server_of(pod, server)
    sock.curve_serverkey = server.zmq_public_key.encode()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.linger = 0
    sock.connect(control_address(pod, server))
    return sock
