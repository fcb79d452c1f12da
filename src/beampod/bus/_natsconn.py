"""How a client reaches the bus: the user, password and servers of one role, and the
nats-py connection made from them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from beampod._net import refusal
from beampod.bus._natsconf import MAX_OUTSTANDING_PINGS, PING_INTERVAL_S, nats_bus, nats_nodes
from beampod.bus._roles import (
    ADMIN_INBOX_PREFIX,
    ADMIN_USER,
    BusRole,
    bus_user,
    check_role,
    inbox_prefix,
)
from beampod.config import LoadedPod
from beampod.errors import BusUnavailableError


@dataclass(frozen=True)
class NatsConnection:
    """How a client reaches the bus. ``repr`` hides the password (SecretStr)."""

    servers: tuple[str, ...]
    user: str
    password: SecretStr
    inbox_prefix: str = "_INBOX"
    max_payload: int = 8 * 1024 * 1024
    name: str = field(default="beampod")

    @classmethod
    def from_pod(
        cls,
        pod: LoadedPod,
        instrument: str | None = None,
        *,
        role: BusRole = "reader",
        admin: bool = False,
        name: str = "beampod",
    ) -> NatsConnection:
        """How ``role`` of ``instrument`` (default: the pod's instrument) connects.

        ``role`` is least privilege by default (``reader``: read documents); say
        ``publisher``, ``writer`` or ``agent`` for those jobs, ``admin=True`` only to
        manage streams and durables. See docs/bus.md "Users and roles"."""
        role = check_role(role)
        bus = nats_bus(pod)
        # Every node of a local cluster: nats-py tries the next one when a connection
        # fails, so clients fail over to a surviving node.
        servers = tuple(bus.external_urls) or tuple(n.url for n in nats_nodes(pod))
        max_payload = bus.max_payload_mb * 1024 * 1024
        if admin:
            return cls(
                servers,
                ADMIN_USER,
                pod.secrets.bus_admin_password,
                inbox_prefix=ADMIN_INBOX_PREFIX,
                max_payload=max_payload,
                name=name,
            )
        inst = instrument or pod.config.instrument_name
        pod.config.instrument(inst)  # raises UsageError for an unknown instrument
        return cls(
            servers,
            bus_user(inst, role),
            pod.secrets.for_instrument(inst).bus_role_password(role),
            inbox_prefix=inbox_prefix(inst, role),
            max_payload=max_payload,
            name=name,
        )

    async def connect(
        self, *, connect_timeout: float = 2.0, reconnect: bool = True, **callbacks: Any
    ) -> Any:
        """A nats-py client. ``reconnect=False`` for the publisher, which handles
        reconnection itself so that nothing is silently re-sent out of order."""
        import nats
        from nats.errors import Error as NatsClientError

        refused = await _all_refuse(self.servers)
        if refused is not None:
            # nats-py would retry a refused port until the bound below: say so now.
            raise BusUnavailableError(
                f"cannot connect to NATS at {', '.join(self.servers)}: {refused}; is the pod "
                "up? (`beampod status`)"
            )

        async def _quiet(_exc: Exception) -> None:
            # nats-py logs every failed reconnect attempt through error_cb by default;
            # the owner of the connection reports state itself.
            return None

        # Options as a dict: nats-py annotates its timeouts as int, and they are seconds.
        options: dict[str, Any] = dict(
            servers=list(self.servers),
            user=self.user,
            password=self.password.get_secret_value(),
            name=self.name,
            inbox_prefix=self.inbox_prefix,
            connect_timeout=connect_timeout,
            allow_reconnect=reconnect,
            # nats-py treats 0 as "forever"; 1 means: two attempts, then NoServersError.
            max_reconnect_attempts=-1 if reconnect else 1,
            reconnect_time_wait=0.5 if reconnect else 0.02,
            # A node cut off from the network (not stopped) sends no FIN or RST: only
            # missing PONGs tell. nats-py's default (120 s, 2 outstanding) would leave a
            # client on such a node for minutes; this notices in about 20 s.
            ping_interval=PING_INTERVAL_S,
            max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            **({"error_cb": _quiet} | callbacks),
        )
        nc = nats.NATS()
        client = nc.connect(**options)
        bound = max(5.0, 3 * connect_timeout)
        try:
            # With reconnect on, nats-py retries the *first* connect forever too; bound it
            # so a command facing a down bus fails with a message instead of hanging.
            await asyncio.wait_for(client, bound)
            return nc
        except (OSError, TimeoutError, NatsClientError) as exc:
            # A server that hung up or never answered can leave nats-py's socket open.
            with contextlib.suppress(OSError, NatsClientError):
                await nc.close()
            if isinstance(exc, TimeoutError):
                reason = f"no connection within {bound:.0f} s"
            else:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise BusUnavailableError(
                f"cannot connect to NATS at {', '.join(self.servers)}: {reason}; is the pod "
                "up? (`beampod status`)"
            ) from None


async def _all_refuse(servers: tuple[str, ...]) -> str | None:
    """The reason when every one of ``servers`` refuses a TCP connection (nothing
    listens there), else None, as soon as one answers otherwise: it accepted, or its
    answer is not that clear (a timeout, an unresolvable name), which the client's own
    connect then waits out."""
    from urllib.parse import urlsplit

    def address(url: str) -> tuple[str, int]:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        return parts.hostname or "127.0.0.1", parts.port or 4222

    probes = [asyncio.ensure_future(refusal(*address(url))) for url in servers]
    reason = None
    try:
        for probe in asyncio.as_completed(probes):
            reason = await probe
            if reason is None:
                return None  # one server listens: no need to wait for the others
    finally:
        for probe in probes:
            probe.cancel()
    return None if reason is None else f"nothing listens there ({reason})"
