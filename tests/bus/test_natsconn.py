"""What a command facing a down bus says (``NatsConnection.connect``): one line naming
the address, the reason and what to check; never an empty reason."""

from __future__ import annotations

import asyncio
import re
import socket
import threading

import pytest
from pydantic import SecretStr

from beampod.bus import NatsConnection
from beampod.errors import BusUnavailableError
from tests._pods import free_ports


def _nobody_listens() -> NatsConnection:
    (port,) = free_ports(1)  # released: nothing listens on it
    return NatsConnection((f"nats://127.0.0.1:{port}",), "demo-reader", SecretStr("x"))


def test_a_bus_nobody_listens_on_is_named_at_once() -> None:
    """A refused port is not retried until the bound (nats-py would, for 5 s and more):
    ``beampod tail`` or ``dlq list`` on a stopped pod says so at once."""
    conn = _nobody_listens()
    with pytest.raises(BusUnavailableError) as info:
        asyncio.run(conn.connect(connect_timeout=0.5))
    expected = (
        f"cannot connect to NATS at {conn.servers[0]}: nothing listens there (Connection "
        "refused); is the pod up? (`beampod status`)"
    )
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("reconnect", "server", "reason"),
    [
        # The publisher's way: two attempts, then nats-py gives up.
        (False, "hangs up", r"Error: nats: empty response from server when expecting INFO message"),
        # Everyone else's: nats-py would retry forever; the connect is bounded.
        (True, "never answers", r"no connection within 5 s"),
    ],
    ids=["no-servers", "bounded"],
)
def test_a_bus_that_does_not_speak_nats_is_named_with_its_reason(
    reconnect: bool, server: str, reason: str
) -> None:
    """Something accepts the connection and then hangs up, or never says a word (a
    hung server, the wrong port): each way of connecting ends with its own reason,
    never an empty one."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes
        port = listener.getsockname()[1]
        if server == "hangs up":
            threading.Thread(target=_hang_up_on_everyone, args=(listener,), daemon=True).start()
        conn = NatsConnection((f"nats://127.0.0.1:{port}",), "demo-reader", SecretStr("x"))
        with pytest.raises(BusUnavailableError) as info:
            asyncio.run(conn.connect(connect_timeout=0.5, reconnect=reconnect))
    message = str(info.value)
    expected = rf"^cannot connect to NATS at {re.escape(conn.servers[0])}: {reason}; "
    assert re.match(expected + r"is the pod up\? \(`beampod status`\)$", message), message


def _hang_up_on_everyone(listener: socket.socket) -> None:
    """Accept and close each connection until the listener is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        client.close()
