"""``beampod connect``: the environment external clients need to reach the pod.

One variable per line, named the way each client already reads it (EPICS CA clients,
``qserver`` / bluesky-queueserver-api, the ``nats`` CLI, tiled's ``TILED_API_KEY``), so
``eval "$(beampod connect --shell)"`` makes caproto-get, pyepics, qserver, tiled and
nats-py work against this pod. Secrets are those of the asked role only; the
human-readable form masks them unless ``--show-secrets``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
from dataclasses import dataclass

from beampod.cli._common import add_instrument_option, pod_of
from beampod.config import (
    LoadedPod,
    NatsBus,
    QueueServer,
    documents_subject,
    queue_servers,
    stream_name,
)

ROLES = ("reader", "control")
MASK = "********"


@dataclass(frozen=True)
class Var:
    name: str
    value: str
    secret: bool
    what: str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "connect",
        help="print the environment external clients need (CA, qserver, tiled, NATS)",
        description="Print what external clients need to reach this pod. "
        '`eval "$(beampod connect --shell)"` exports it into a shell.',
    )
    add_instrument_option(p)
    p.add_argument(
        "--role",
        choices=ROLES,
        default="reader",
        help="reader: read-only keys (default); control: also the queue's control keys",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--shell", action="store_true", help="eval-able `export NAME=value` lines")
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument(
        "--show-secrets", action="store_true", help="human-readable form: do not mask secrets"
    )
    p.set_defaults(func=cmd_connect)


def connection_env(pod: LoadedPod, instrument: str, role: str) -> list[Var]:
    """Every variable for ``role`` (``reader`` or ``control``) of ``instrument``."""
    from beampod.instrument import ca_client_env
    from beampod.store import tiled_url

    pod.config.instrument(instrument)  # a clear error for an unknown instrument
    s = pod.secrets
    # In a facility each instrument's clients get its own Tiled reader key, which
    # reaches its container only, so the address is that container's: the server's
    # root (what ``from_uri`` reads first) refuses the key. A one-instrument pod keeps
    # the pod-wide key and the root address (the same container under it).
    facility = len(pod.config.instruments) > 1
    tiled_key = s.for_instrument(instrument).tiled_reader_key if facility else s.tiled_reader_key
    tiled_uri = f"{tiled_url(pod)}/api/v1/metadata/{instrument}" if facility else tiled_url(pod)
    out = [Var("BEAMPOD_INSTRUMENT", instrument, False, "instrument")]
    out += [
        Var(k, v, False, "Channel Access (caproto, pyepics, any CA client)")
        for k, v in ca_client_env(pod.config).items()
    ]
    out += [
        Var("TILED_URI", tiled_uri, False, "Tiled: from_uri(TILED_URI)"),
        Var("TILED_API_KEY", tiled_key.get_secret_value(), True, "Tiled read-only key"),
    ]
    # The instrument's own queue server, when it has one (docs/queue.md).
    server = queue_servers(pod).get(instrument)
    if server is not None:
        out += _queue_vars(pod, server, role)
    if isinstance(pod.config.bus, NatsBus):
        from beampod.bus import NatsConnection

        conn = NatsConnection.from_pod(pod, instrument, role="reader")
        out += [
            Var("NATS_URL", ",".join(conn.servers), False, "NATS servers (nats CLI, nats-py)"),
            Var("NATS_USER", conn.user, False, "NATS read-only user"),
            Var("NATS_PASSWORD", conn.password.get_secret_value(), True, "NATS reader password"),
            Var("BEAMPOD_NATS_SUBJECT", documents_subject(instrument), False, "documents"),
            Var("BEAMPOD_NATS_STREAM", stream_name(instrument), False, "JetStream stream"),
            Var(
                "BEAMPOD_NATS_INBOX_PREFIX",
                conn.inbox_prefix,
                False,
                "private reply inbox (nats.connect(inbox_prefix=...))",
            ),
        ]
        out += _edge_vars(pod)
    return out


def _edge_vars(pod: LoadedPod) -> list[Var]:
    """The edge's websocket URL(s), when the pod has an edge (docs/bus.md "The edge"):
    the same reader credentials log in there, from other machines."""
    from beampod.bus import edge_urls

    bus = pod.config.bus
    if not isinstance(bus, NatsBus) or bus.edge is None:
        return []
    # A wildcard bind: the name other machines know this one by.
    host = socket.getfqdn() if bus.edge.bind in ("0.0.0.0", "::", "", "*") else None
    urls = ",".join(edge_urls(pod, host))
    return [Var("BEAMPOD_NATS_EDGE_URL", urls, False, "read-only edge for other machines")]


def cmd_connect(args: argparse.Namespace) -> int:
    pod = pod_of(args)
    instrument = args.instrument or pod.config.instrument_name
    env = connection_env(pod, instrument, args.role)
    if args.shell:
        for v in env:
            print(f"export {v.name}={shlex.quote(v.value)}")
    elif args.json:
        print(json.dumps({v.name: v.value for v in env}, indent=2))
    else:
        width = max(len(v.name) for v in env)
        print(f"# pod {pod.home.root}, instrument {instrument}, role {args.role}")
        for v in env:
            value = MASK if v.secret and not args.show_secrets else v.value
            print(f"{v.name:<{width}}  {value}    # {v.what}")
        if not args.show_secrets and any(v.secret for v in env):
            print('# secrets masked: --show-secrets, or eval "$(beampod connect --shell)"')
    return 0


def _queue_vars(pod: LoadedPod, server: QueueServer, role: str) -> list[Var]:
    """The queue server's variables: its HTTP API with the role's key, 0MQ addresses."""
    from beampod.queue import control_address, http_uri, info_address

    out = [Var("QSERVER_HTTP_SERVER_URI", http_uri(pod, server), False, "queue HTTP API")]
    if role == "control":
        out += [
            Var(
                "QSERVER_HTTP_SERVER_API_KEY",
                server.control_key.get_secret_value(),
                True,
                "queue HTTP control key",
            ),
            Var(
                "QSERVER_ZMQ_CONTROL_ADDRESS",
                control_address(pod, server),
                False,
                "qserver control",
            ),
            # Whoever has the server's CURVE public key can drive the queue over 0MQ.
            Var("QSERVER_ZMQ_PUBLIC_KEY", server.zmq_public_key, True, "qserver CURVE key"),
        ]
    else:
        out.append(
            Var(
                "QSERVER_HTTP_SERVER_API_KEY",
                server.observer_key.get_secret_value(),
                True,
                "queue HTTP observer key (read status)",
            )
        )
    out.append(
        Var("QSERVER_ZMQ_INFO_ADDRESS", info_address(pod, server), False, "qserver console output")
    )
    return out
