"""NATS accounts of a pod's bus: who shares a JetStream with whom.

- ``BEAMPOD``: the documents streams, the dead letters and the writer's durable; the
  admin and every instrument's publisher, writer and agent.
- ``READERS_<instrument>``, one per instrument: its reader only. nats-server lets the
  ephemeral consumer-create request that plain nats-py ordered consumers send carry any
  consumer name in its payload, where permissions cannot look; a reader in the
  documents' own account could re-configure (and expire) the writer's durable that way.
  So a reader's JetStream is its own account's: a stream of the same name and subject
  that stores what the ``BEAMPOD`` account exports of the instrument's documents
  subject, and in which no durable exists. The reader's agent pings cross the same way
  (both directions are exports of subjects, not services, so nobody's reply permissions
  change).
- ``SYS``: nats-server's system account, user ``system``, for node health requests
  (``$SYS.REQ.SERVER.<id>.HEALTHZ``), so no HTTP monitoring port is needed.

docs/bus.md "Users and roles" describes the model.
"""

from __future__ import annotations

import json

from beampod.config import documents_subject

__all__ = [
    "MAIN_ACCOUNT",
    "SYSTEM_ACCOUNT",
    "SYSTEM_USER",
    "readers_account",
    "readers_api_prefix",
    "render_accounts",
]

MAIN_ACCOUNT = "BEAMPOD"
SYSTEM_ACCOUNT = "SYS"
SYSTEM_USER = "system"


def readers_account(instrument: str) -> str:
    return f"READERS_{instrument}"


def readers_api_prefix(instrument: str) -> str:
    """The JetStream API of an instrument's readers' account as the admin (in
    ``BEAMPOD``) reaches it, e.g. to create the readers' stream."""
    return f"$JS.{readers_account(instrument)}.API"


def _q(value: str) -> str:
    return json.dumps(value)


def _status_replies(instrument: str) -> str:
    # An agent's answers to status pings (beampod.web status_reply_subject).
    return f"{instrument}.adaptive.*.reply.status.>"


def _pings(instrument: str) -> str:
    return f"{instrument}.adaptive.*.ping"


def _account(
    name: str, users: list[str], exports: list[str], imports: list[str], jetstream: bool
) -> str:
    lines = [f"  {_q(name)}: {{"]
    if jetstream:
        lines.append("    jetstream: enabled")
    lines.append("    users = [")
    lines.extend(f"  {u}" for u in users)
    lines.append("    ]")
    for key, items in (("exports", exports), ("imports", imports)):
        if items:
            lines.append(f"    {key} = [")
            lines.extend(f"      {item}" for item in items)
            lines.append("    ]")
    lines.append("  }")
    return "\n".join(lines)


def render_accounts(
    main_users: list[str], reader_users: dict[str, list[str]], system_user: str
) -> str:
    """The ``accounts`` block and ``system_account`` of the server config.

    ``main_users`` and ``reader_users`` (per instrument) are rendered user entries;
    ``system_user`` the system account's one user entry."""
    main_exports: list[str] = []
    main_imports: list[str] = []
    blocks: list[str] = []
    for inst, users in reader_users.items():
        acct = readers_account(inst)
        docs = documents_subject(inst)
        main_exports += [
            f"{{stream: {_q(docs)}, accounts: [{_q(acct)}]}}",
            f"{{stream: {_q(_status_replies(inst))}, accounts: [{_q(acct)}]}}",
        ]
        main_imports += [
            f"{{stream: {{account: {_q(acct)}, subject: {_q(_pings(inst))}}}}}",
            # The admin manages the readers' stream through this prefix.
            f"{{service: {{account: {_q(acct)}, subject: {_q('$JS.API.>')}}}, "
            f"to: {_q(readers_api_prefix(inst) + '.>')}}}",
        ]
        blocks.append(
            _account(
                acct,
                users,
                exports=[
                    f"{{stream: {_q(_pings(inst))}, accounts: [{_q(MAIN_ACCOUNT)}]}}",
                    f"{{service: {_q('$JS.API.>')}, accounts: [{_q(MAIN_ACCOUNT)}]}}",
                ],
                imports=[
                    f"{{stream: {{account: {_q(MAIN_ACCOUNT)}, subject: {_q(docs)}}}}}",
                    f"{{stream: {{account: {_q(MAIN_ACCOUNT)}, "
                    f"subject: {_q(_status_replies(inst))}}}}}",
                ],
                jetstream=True,
            )
        )
    main = _account(MAIN_ACCOUNT, main_users, main_exports, main_imports, jetstream=True)
    system = _account(SYSTEM_ACCOUNT, [system_user], [], [], jetstream=False)
    body = "\n".join([main, *blocks, system])
    return f"accounts {{\n{body}\n}}\nsystem_account: {_q(SYSTEM_ACCOUNT)}\n"
