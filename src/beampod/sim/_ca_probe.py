"""A minimal asyncio Channel Access client aimed at one IOC's port (probes, tests).

Why not caproto's or pyepics' clients: both take their address list from the process
environment (and caproto's sync client spawns a repeater), but the supervisor probes
IOCs of several pods from one process. This speaks the protocol with caproto's sans-I/O
core against an explicit ``host:port``: a UDP search (the path every CA client takes;
the same search as the raw probe in ``_ca_wire``) and then a TCP read or write from the
server that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
from typing import Any

import caproto as ca

from beampod.sim._ca_wire import CaProbeError, search


async def read(host: str, port: int, pv: str, timeout: float = 1.0) -> Any:
    """Search for ``pv`` at ``host:port`` and read it once; returns the value (numpy array)."""
    return await _with_channel(host, port, pv, timeout, _read_on)


async def write(host: str, port: int, pv: str, value: Any, timeout: float = 5.0) -> None:
    """Search for ``pv`` at ``host:port`` and write ``value`` with put-completion: returns
    when the IOC has finished processing the put (for a motor: when it has arrived)."""

    async def action(session: _Session) -> None:
        data = value if isinstance(value, list | tuple) else [value]
        request = session.chan.write(data, notify=True)
        await session.send(request)
        while True:
            for command in await session.replies():
                if isinstance(command, ca.WriteNotifyResponse) and command.ioid == request.ioid:
                    if command.status.success != 1:
                        raise CaProbeError(
                            f"write of {value!r} to {pv!r} failed: {command.status.description}"
                        )
                    return
                if isinstance(command, ca.ErrorResponse):
                    raise CaProbeError(
                        f"write of {value!r} to {pv!r} failed: {_text(command.error_message)}"
                    )

    await _with_channel(host, port, pv, timeout, action)


async def _with_channel(host: str, port: int, pv: str, timeout: float, action: Any) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    address = await search(host, port, pv, timeout)
    remaining = max(deadline - loop.time(), 0.05)
    try:
        return await asyncio.wait_for(_session(address, pv, action), remaining)
    except TimeoutError:
        raise CaProbeError(
            f"no reply for {pv!r} from {address[0]}:{address[1]} within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise CaProbeError(f"cannot reach {pv!r} at {address[0]}:{address[1]}: {exc}") from exc
    except ca.CaprotoError as exc:
        # A protocol-level surprise (garbled reply, wrong state): not ready, say why.
        raise CaProbeError(
            f"CA protocol error talking to {address[0]}:{address[1]} about {pv!r}: {exc}"
        ) from exc


class _Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: tuple[str, int],
        pv: str,
    ) -> None:
        self.reader, self.writer, self.address = reader, writer, address
        self.circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=address, priority=0)
        self.chan = ca.ClientChannel(pv, self.circuit)

    async def send(self, *commands: Any) -> None:
        for command in commands:
            self.writer.write(b"".join(self.circuit.send(command)))
        await self.writer.drain()

    async def replies(self) -> list[Any]:
        data = await self.reader.read(65536)
        if not data:
            raise CaProbeError(f"{self.address[0]}:{self.address[1]} closed the connection")
        commands, _ = self.circuit.recv(data)
        for command in commands:
            self.circuit.process_command(command)
        return list(commands)


async def _session(address: tuple[str, int], pv: str, action: Any) -> Any:
    reader, writer = await asyncio.open_connection(*address)
    session = _Session(reader, writer, address, pv)
    try:
        await session.send(
            ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
            session.chan.host_name(socket.gethostname()),
            session.chan.client_name(getpass.getuser()),
            session.chan.create(),
        )
        while session.chan.states[ca.CLIENT] is not ca.CONNECTED:
            for command in await session.replies():
                if isinstance(command, ca.ErrorResponse | ca.CreateChFailResponse):
                    raise CaProbeError(f"channel {pv!r} refused: {command}")
        return await action(session)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_on(session: _Session) -> Any:
    request = session.chan.read()
    await session.send(request)
    while True:
        for command in await session.replies():
            if isinstance(command, ca.ReadNotifyResponse) and command.ioid == request.ioid:
                return command.data
            if isinstance(command, ca.ErrorResponse):
                raise CaProbeError(
                    f"read of {session.chan.name!r} failed: {_text(command.error_message)}"
                )


def _text(message: Any) -> str:
    if isinstance(message, bytes | bytearray):
        return bytes(message).rstrip(b"\0").decode(errors="replace")
    return str(message)


def read_sync(host: str, port: int, pv: str, timeout: float = 1.0) -> Any:
    """:func:`read` for synchronous callers (tests, scripts)."""
    return asyncio.run(read(host, port, pv, timeout))


def write_sync(host: str, port: int, pv: str, value: Any, timeout: float = 5.0) -> None:
    """:func:`write` for synchronous callers (tests, scripts)."""
    asyncio.run(write(host, port, pv, value, timeout))
