"""A minimal asyncio Channel Access read aimed at one IOC's port, for readiness probes.

Why not caproto's or pyepics' clients: both take their address list from the process
environment (and caproto's sync client spawns a repeater), but the supervisor probes
IOCs of several pods from one process. This speaks the protocol with caproto's sans-I/O
core against an explicit ``host:port``: a UDP search (the path every CA client takes)
and then a TCP read from the server that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import random
import socket
from typing import Any

import caproto as ca


class CaProbeError(RuntimeError):
    """The IOC did not answer the search or the read in time, or answered with an error."""


class _SearchProtocol(asyncio.DatagramProtocol):
    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.found: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self.broadcaster = ca.Broadcaster(our_role=ca.CLIENT)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            commands = self.broadcaster.recv(data, addr)
            self.broadcaster.process_commands(commands)
        except ca.CaprotoError:
            return  # not a CA reply to us; keep waiting
        for command in commands:
            if (isinstance(command, ca.SearchResponse) and command.cid == self.cid
                    and not self.found.done()):
                self.found.set_result(ca.extract_address(command))


async def search(host: str, port: int, pv: str, timeout: float) -> tuple[str, int]:
    """Send a CA search for ``pv`` to ``host:port`` (UDP); return the server's TCP address."""
    loop = asyncio.get_running_loop()
    cid = random.randint(0, 65535)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _SearchProtocol(cid), local_addr=(host, 0), family=socket.AF_INET
    )
    try:
        payload = protocol.broadcaster.send(
            ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION),
            ca.SearchRequest(pv, cid, ca.DEFAULT_PROTOCOL_VERSION),
        )
        transport.sendto(payload, (host, port))
        try:
            return await asyncio.wait_for(asyncio.shield(protocol.found), timeout)
        except TimeoutError:
            raise CaProbeError(f"no answer to a search for {pv!r} at {host}:{port} "
                               f"within {timeout:g} s") from None
    finally:
        transport.close()


async def read(host: str, port: int, pv: str, timeout: float = 1.0) -> Any:
    """Search for ``pv`` at ``host:port`` and read it once; returns the value (numpy array)."""
    deadline = asyncio.get_running_loop().time() + timeout
    address = await search(host, port, pv, timeout)
    remaining = max(deadline - asyncio.get_running_loop().time(), 0.05)
    try:
        return await asyncio.wait_for(_tcp_read(address, pv), remaining)
    except TimeoutError:
        raise CaProbeError(f"no read reply for {pv!r} from {address[0]}:{address[1]} "
                           f"within {timeout:g} s") from None
    except OSError as exc:
        raise CaProbeError(f"cannot read {pv!r} from {address[0]}:{address[1]}: {exc}") from exc


async def _tcp_read(address: tuple[str, int], pv: str) -> Any:
    reader, writer = await asyncio.open_connection(*address)
    circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=address, priority=0)
    chan = ca.ClientChannel(pv, circuit)

    async def send(*commands: Any) -> None:
        for command in commands:
            writer.write(b"".join(circuit.send(command)))
        await writer.drain()

    async def replies() -> list[Any]:
        data = await reader.read(65536)
        if not data:
            raise CaProbeError(f"{address[0]}:{address[1]} closed the connection")
        commands, _ = circuit.recv(data)
        for command in commands:
            circuit.process_command(command)
        return list(commands)

    try:
        await send(
            ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
            chan.host_name(socket.gethostname()),
            chan.client_name(getpass.getuser()),
            chan.create(),
        )
        while chan.states[ca.CLIENT] is not ca.CONNECTED:
            for command in await replies():
                if isinstance(command, (ca.ErrorResponse, ca.CreateChFailResponse)):
                    raise CaProbeError(f"channel {pv!r} refused: {command}")
        request = chan.read()
        await send(request)
        while True:
            for command in await replies():
                if isinstance(command, ca.ReadNotifyResponse) and command.ioid == request.ioid:
                    return command.data
                if isinstance(command, ca.ErrorResponse):
                    raise CaProbeError(f"read of {pv!r} failed: {command}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def read_sync(host: str, port: int, pv: str, timeout: float = 1.0) -> Any:
    """:func:`read` for synchronous callers (tests, scripts)."""
    return asyncio.run(read(host, port, pv, timeout))
