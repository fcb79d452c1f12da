"""Is this IOC serving? One Channel Access read, spoken with the standard library.

The supervisor asks this of every IOC every few seconds for as long as the pod runs.
caproto (see :mod:`beampod.sim._ca_probe`) would answer it just as well, but importing
it loads numpy: ~20 MB resident in a process that otherwise needs neither. The
protocol needed for one read is small (EPICS "Channel Access Protocol Specification"):
a UDP search to ``host:port``, then on TCP a version, host and client name, channel
creation and one ``READ_NOTIFY``; every message is a 16-byte big-endian header and a
payload padded to 8 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import random
import socket
import struct

from beampod.errors import BeampodError

_HEADER = struct.Struct(">HHHHII")  # command, payload size, data type, count, p1, p2
_VERSION = 13  # minor protocol version, as EPICS base 3.14+ and caproto speak
_CMD_VERSION, _CMD_SEARCH, _CMD_ERROR, _CMD_READ_NOTIFY = 0, 6, 11, 15
_CMD_CREATE_CHAN, _CMD_CLIENT_NAME, _CMD_HOST_NAME, _CMD_CREATE_CH_FAIL = 18, 20, 21, 26
_CMD_SERVER_DISCONN = 27
_DONT_REPLY = 5  # a search only servers that have the PV answer
_ANY_ADDRESS = 0xFFFFFFFF  # "reply came from my address" in a search response


class CaProbeError(BeampodError):
    """The IOC did not answer the search or the read in time, or answered with an error."""


def _message(
    command: int, payload: bytes = b"", dtype: int = 0, count: int = 0, p1: int = 0, p2: int = 0
) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 8)
    return _HEADER.pack(command, len(padded), dtype, count, p1, p2) + padded


def _string(text: str) -> bytes:
    return text.encode() + b"\0"


class _Search(asyncio.DatagramProtocol):
    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.found: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        offset = 0
        while offset + _HEADER.size <= len(data):
            command, size, dtype, _count, p1, p2 = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size + size
            if command == _CMD_SEARCH and p2 == self.cid and not self.found.done():
                ip = addr[0] if p1 == _ANY_ADDRESS else socket.inet_ntoa(struct.pack(">I", p1))
                self.found.set_result((ip, dtype))  # the data type field holds the TCP port


async def search(host: str, port: int, pv: str, timeout: float) -> tuple[str, int]:
    """Send a CA search for ``pv`` to ``host:port`` (UDP); return the server's TCP address."""
    loop = asyncio.get_running_loop()
    cid = random.randint(0, 65535)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Search(cid), local_addr=(host, 0), family=socket.AF_INET
    )
    try:
        transport.sendto(
            _message(_CMD_VERSION, count=_VERSION)
            + _message(_CMD_SEARCH, _string(pv), _DONT_REPLY, _VERSION, cid, cid),
            (host, port),
        )
        try:
            return await asyncio.wait_for(asyncio.shield(protocol.found), timeout)
        except TimeoutError:
            raise CaProbeError(
                f"no answer to a search for {pv!r} at {host}:{port} within {timeout:g} s"
            ) from None
    finally:
        transport.close()


async def _next(reader: asyncio.StreamReader) -> tuple[int, int, int, int, int, bytes]:
    command, size, dtype, count, p1, p2 = _HEADER.unpack(await reader.readexactly(16))
    if size == 0xFFFF and count == 0:  # extended header: sizes as two 32-bit words
        size, count = struct.unpack(">II", await reader.readexactly(8))
    return command, dtype, count, p1, p2, await reader.readexactly(size)


async def _read(address: tuple[str, int], pv: str) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    cid, ioid = random.randint(0, 65535), random.randint(0, 65535)
    try:
        writer.write(
            _message(_CMD_VERSION, count=_VERSION)
            + _message(_CMD_HOST_NAME, _string(socket.gethostname()))
            + _message(_CMD_CLIENT_NAME, _string(getpass.getuser()))
            + _message(_CMD_CREATE_CHAN, _string(pv), p1=cid, p2=_VERSION)
        )
        await writer.drain()
        while True:
            command, dtype, count, p1, p2, payload = await _next(reader)
            if command == _CMD_CREATE_CHAN and p1 == cid:
                sid = p2
                break
            if command in (_CMD_CREATE_CH_FAIL, _CMD_ERROR, _CMD_SERVER_DISCONN):
                raise CaProbeError(f"channel {pv!r} refused (command {command})")
        writer.write(_message(_CMD_READ_NOTIFY, dtype=dtype, count=count, p1=sid, p2=ioid))
        await writer.drain()
        while True:
            command, _dtype, _count, status, p2, payload = await _next(reader)
            if command == _CMD_READ_NOTIFY and p2 == ioid:
                if not status & 1:  # the severity's success bit (ECA_NORMAL is 1)
                    raise CaProbeError(f"read of {pv!r} failed with CA status {status}")
                return payload
            if command in (_CMD_ERROR, _CMD_SERVER_DISCONN):
                raise CaProbeError(f"read of {pv!r} failed (command {command})")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_raw(host: str, port: int, pv: str, timeout: float = 1.0) -> bytes:
    """Search for ``pv`` at ``host:port`` and read it once in its native type; returns
    the payload as sent (big-endian, padded). Raises :class:`CaProbeError`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    address = await search(host, port, pv, timeout)
    try:
        return await asyncio.wait_for(_read(address, pv), max(deadline - loop.time(), 0.05))
    except TimeoutError:
        raise CaProbeError(
            f"no reply for {pv!r} from {address[0]}:{address[1]} within {timeout:g} s"
        ) from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise CaProbeError(f"cannot read {pv!r} at {address[0]}:{address[1]}: {exc}") from exc
