"""Who may do what on the bus: one NATS user per instrument and role.

Users are ``<instrument>-<role>`` in the pod's one account (plus ``admin``). Each role
may touch exactly the subjects its job needs; managing streams and durables (create,
update, delete streams; delete consumers) is the admin's alone. docs/bus.md "Users and
roles" lists what each role may do and why.
"""

from __future__ import annotations

from beampod.config import (
    BUS_ROLES,
    BusRole,
    dead_letter_subject,
    documents_subject,
    stream_name,
)
from beampod.errors import UsageError

__all__ = [
    "ADMIN_INBOX_PREFIX",
    "ADMIN_USER",
    "BUS_ROLES",
    "EDGE_ROLES",
    "STANDARD_ONLY",
    "WRITER_DURABLE",
    "BusRole",
    "bus_user",
    "check_role",
    "dead_letter_stream_name",
    "edge_connection_types",
    "inbox_prefix",
    "role_permissions",
]

ADMIN_USER = "admin"
# The admin's replies (stream management, dead-letter reads) go to an inbox no other
# user may subscribe to.
ADMIN_INBOX_PREFIX = "_INBOX_admin"
# The writer's durable consumer: the one durable the writer role may create and use.
WRITER_DURABLE = "beampod-writer"

_API = "$JS.API"

Permissions = dict[str, dict[str, list[str]]]


# nats-server's connection types: ordinary NATS clients, and the websocket listener that
# is the pod's edge (docs/bus.md "The edge").
STANDARD_ONLY = ("STANDARD",)
# The roles that may come in through the edge: reading documents only.
EDGE_ROLES: tuple[BusRole, ...] = ("reader",)


def edge_connection_types(role: BusRole) -> tuple[str, ...]:
    """How ``<instrument>-<role>`` may connect: every role as an ordinary client; only
    the reader through the edge's websocket too. (``admin`` is ordinary-only.)"""
    return ("STANDARD", "WEBSOCKET") if check_role(role) in EDGE_ROLES else STANDARD_ONLY


def dead_letter_stream_name(instrument: str) -> str:
    """Dead letters live in their own stream so they outlive document retention."""
    return f"{instrument.upper()}_DEADLETTER"


def check_role(role: str) -> BusRole:
    if role not in BUS_ROLES:
        raise UsageError(f"unknown bus role {role!r}: choose one of {', '.join(BUS_ROLES)}")
    return role


def bus_user(instrument: str, role: BusRole) -> str:
    """NATS user name of an instrument's role, e.g. ``demo-writer``."""
    return f"{instrument}-{role}"


def inbox_prefix(instrument: str, role: BusRole = "reader") -> str:
    """Private reply inbox of one user: only that user may subscribe to it, so nobody
    else reads its JetStream acks or API replies. (A reader may also use nats-py's
    default ``_INBOX``, see :func:`role_permissions`.)"""
    return f"_INBOX_{instrument}_{role}"


def role_permissions(instrument: str, role: BusRole) -> Permissions:
    """The publish/subscribe allow-lists of ``<instrument>-<role>``.

    - ``publisher`` (the session's RunEngine): publish the documents subject and read
      its JetStream acks; the plan side of adaptive request/reply (publish requests and
      pings, read replies).
    - ``writer``: its own durable ``beampod-writer`` on its own documents stream only
      (info, create, fetch, ack, and delete to re-create it at its ack floor), publish
      dead letters.
    - ``reader`` (live views, ``beampod tail``, external consumers): subscribe to the
      documents subject, create ephemeral (ordered) consumers on its own documents stream,
      flow control of those; replies on ``_INBOX.>`` so plain nats-py works unchanged;
      ask an agent for its status (publish pings, read the answers on
      ``<instrument>.adaptive.<agent>.reply.status.>``, never the plans' replies).
    - ``agent``: the agent side of adaptive request/reply (read requests and pings,
      publish replies).
    """
    role = check_role(role)
    stream = stream_name(instrument)
    docs = documents_subject(instrument)
    own_inbox = f"{inbox_prefix(instrument, role)}.>"
    adaptive = f"{instrument}.adaptive.*"
    publish: list[str]
    subscribe: list[str]
    if role == "publisher":
        publish = [docs, f"{adaptive}.request", f"{adaptive}.ping"]
        subscribe = [own_inbox, f"{adaptive}.reply.>"]
    elif role == "agent":
        publish = [f"{adaptive}.reply.>"]
        subscribe = [own_inbox, f"{adaptive}.request", f"{adaptive}.ping"]
    elif role == "writer":
        durable = WRITER_DURABLE
        publish = [
            dead_letter_subject(instrument),
            # Its stream's first kept seq: a gap in delivery is a discard or a loss.
            f"{_API}.STREAM.INFO.{stream}",
            f"{_API}.CONSUMER.INFO.{stream}.{durable}",
            f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{_API}.CONSUMER.CREATE.{stream}.{durable}",
            f"{_API}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{_API}.CONSUMER.DELETE.{stream}.{durable}",
            f"{_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
        subscribe = [own_inbox]
    else:  # reader
        publish = [
            f"{_API}.INFO",
            f"{_API}.STREAM.NAMES",
            f"{_API}.STREAM.INFO.{stream}",
            f"{_API}.CONSUMER.CREATE.{stream}",
            f"$JS.FC.{stream}.>",
            f"{adaptive}.ping",
        ]
        subscribe = [docs, own_inbox, "_INBOX.>", f"{adaptive}.reply.status.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}
