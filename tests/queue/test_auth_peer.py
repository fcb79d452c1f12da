"""beampod.auth: the owner of a loopback connection, from /proc/net/tcp and tcp6."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from beampod.auth import parse_proc_net_tcp, peer_uid
from tests.queue.conftest import AS_NOBODY

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:EA60 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:D431 0100007F:EA60 01 00000000:00000000 00:00000000 00000000 65534        0 2 1
   2: 0100007F:EA60 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
# ::1 port 47000 -> ::1 port 60000 (uid 1000), and a v4-mapped 127.0.0.1:47001 (uid 1001)
TCP6 = """\
  sl  local_address                         remote_address                        st ...   uid
   0: 00000000000000000000000001000000:B798 00000000000000000000000001000000:EA60 01 00000000:00000000 00:00000000 00000000  1000        0 4 1
   1: 0000000000000000FFFF00000100007F:B799 0000000000000000FFFF00000100007F:EA60 01 00000000:00000000 00:00000000 00000000  1001        0 5 1
"""  # noqa: E501


def test_parser_ipv4_picks_the_client_end() -> None:
    assert parse_proc_net_tcp(TCP, ("127.0.0.1", 0xD431), ("127.0.0.1", 60000)) == 65534
    # The server's own end (local = server) is not the client's.
    assert parse_proc_net_tcp(TCP, ("127.0.0.1", 60000), ("127.0.0.1", 0xD431)) == 0
    assert parse_proc_net_tcp(TCP, ("127.0.0.1", 1), ("127.0.0.1", 60000)) is None


def test_parser_ipv6_and_v4_mapped() -> None:
    assert parse_proc_net_tcp(TCP6, ("::1", 47000), ("::1", 60000)) == 1000
    for client in ("127.0.0.1", "::ffff:127.0.0.1"):
        assert parse_proc_net_tcp(TCP6, (client, 47001), ("127.0.0.1", 60000)) == 1001
    assert parse_proc_net_tcp(TCP6, ("::1", 47001), ("::1", 60000)) is None


def test_parser_big_endian_layout() -> None:
    text = TCP.replace("0100007F", "7F000001")
    assert (
        parse_proc_net_tcp(text, ("127.0.0.1", 0xD431), ("127.0.0.1", 60000), byteorder="big")
        == 65534
    )


def test_parser_skips_garbage() -> None:
    assert (
        parse_proc_net_tcp(
            "x\n 0: zz:1 yy:2 01 a b c notanint\n",
            ("127.0.0.1", 1),
            (
                "127.0.0.1",
                2,
            ),
        )
        is None
    )


def test_peer_uid_of_real_sockets_ipv4_and_ipv6() -> None:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as srv:
            srv.bind((host, 0))
            srv.listen()
            with socket.create_connection(srv.getsockname()[:2]) as cli:
                conn, addr = srv.accept()
                with conn:
                    assert peer_uid(addr[:2], conn.getsockname()[:2]) == os.getuid()
                    assert cli is not None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as 'nobody'")
def test_peer_uid_of_another_users_socket() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        code = (
            f"import socket,sys; s=socket.create_connection(('127.0.0.1', {port})); "
            "sys.stdin.read(1)"
        )
        proc = subprocess.Popen(
            [*AS_NOBODY, sys.executable, "-I", "-c", code],
            stdin=subprocess.PIPE,
        )
        try:
            conn, addr = srv.accept()
            with conn:
                assert peer_uid(addr, conn.getsockname()) == nobody
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
