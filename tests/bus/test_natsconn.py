"""What a command facing a down bus says (``NatsConnection.connect``): one line naming
the address, the reason and what to check; never an empty reason."""

from __future__ import annotations

import asyncio
import re

import pytest
from pydantic import SecretStr

from beampod.bus import NatsConnection
from beampod.errors import BusUnavailableError
from tests._pods import free_ports


def _nobody_listens() -> NatsConnection:
    (port,) = free_ports(1)  # released: nothing listens on it
    return NatsConnection((f"nats://127.0.0.1:{port}",), "demo-reader", SecretStr("x"))


@pytest.mark.parametrize(
    ("reconnect", "reason"),
    [
        # The publisher's way: two attempts, then nats-py gives up.
        (False, r"NoServersError: nats: no servers available for connection"),
        # Everyone else's: nats-py would retry forever; the connect is bounded.
        (True, r"no connection within 5 s"),
    ],
    ids=["no-servers", "bounded"],
)
def test_a_down_bus_is_named_with_its_reason(reconnect: bool, reason: str) -> None:
    conn = _nobody_listens()
    with pytest.raises(BusUnavailableError) as info:
        asyncio.run(conn.connect(connect_timeout=0.5, reconnect=reconnect))
    message = str(info.value)
    expected = rf"^cannot connect to NATS at {re.escape(conn.servers[0])}: {reason}; "
    assert re.match(expected + r"is the pod up\? \(`beampod status`\)$", message), message
