"""The edge: nats-server's websocket listener, the read-only way into the bus for other
machines. A real nats-server from the rendered config, real nats-py over ws://: an
instrument's reader reads a run through it and can change nothing; every other user
is refused there; another instrument's reader reads nothing of this one."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import msgpack_numpy
import pytest

from beampod.bus import (
    WRITER_DURABLE,
    DocumentConsumer,
    DurablePublisher,
    Message,
    NatsConnection,
    edge_urls,
    inbox_prefix,
    render_nats_config,
)
from beampod.config import LoadedPod, PodHome, documents_subject, init_pod, load_pod
from beampod.errors import ConfigError
from tests._pods import free_port

from ._docs import assert_docs_equal, run_plan
from ._natsproc import NatsProcess

pytestmark = pytest.mark.timeout(120)

pytest.importorskip("aiohttp", reason="nats-py's websocket transport needs aiohttp")

OTHER = "other"
STREAM = "DEMO_DOCUMENTS"
DENIED = 1.0  # a refused request is dropped by the server: the client times out


def _pod_with(tmp_path: Path, bus_lines: str, other: bool = True) -> LoadedPod:
    """A pod (instruments ``demo`` and, if ``other``, ``other``) with ``bus_lines``
    added to its ``bus:`` section."""
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    text = home.config_file.read_text()
    if other:
        marker = "\n# Document bus"
        text = text.replace(marker, f"  {OTHER}:\n    package: beampod.demo\n{marker}", 1)
    text = text.replace("  cluster_size: 1\n", "  cluster_size: 1\n" + bus_lines, 1)
    home.config_file.write_text(text)
    init_pod(home)
    return load_pod(home)


@pytest.fixture
def edge_pod(tmp_path: Path) -> LoadedPod:
    return _pod_with(tmp_path, f"  edge:\n    websocket_port: {free_port()}\n")


def _wait_listening(url: str, deadline_s: float = 20.0) -> None:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.02)  # poll interval, bounded by the deadline
    raise TimeoutError(f"edge listener {url} not up within {deadline_s}s")


@pytest.fixture
def edge_bus(edge_pod: LoadedPod) -> Iterator[NatsProcess]:
    proc = NatsProcess(edge_pod)
    proc.start()
    try:
        (url,) = edge_urls(edge_pod)
        _wait_listening(url)
        yield proc
    finally:
        proc.stop()


def _creds(pod: LoadedPod, role: Any, inst: str = "demo") -> NatsConnection:
    return NatsConnection.from_pod(pod, inst, role=role, name=f"edge-test-{role}")


async def _ws_connect(pod: LoadedPod, user: str, password: str, **kw: Any) -> Any:
    """Plain nats-py through the edge, as an external consumer writes it."""
    import nats

    return await nats.connect(
        list(edge_urls(pod)),
        user=user,
        password=password,
        allow_reconnect=False,
        connect_timeout=5,
        max_reconnect_attempts=1,
        **kw,
    )


async def _ws_reader(pod: LoadedPod, inst: str = "demo", **kw: Any) -> Any:
    c = _creds(pod, "reader", inst)
    return await _ws_connect(pod, c.user, c.password.get_secret_value(), **kw)


async def _refused(coro: Any) -> bool:
    """True when the server refused (no answer, or a 403), False when it was done."""
    import nats.errors
    import nats.js.errors

    try:
        await coro
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    except nats.js.errors.APIError as exc:
        return exc.code == 403
    return False


def _publish_run(pod: LoadedPod) -> list[tuple[str, dict[str, Any]]]:
    pub = DurablePublisher.from_pod(pod, "demo")
    try:
        emitted = run_plan(pub, num=3)
        assert pub.flush(20)
    finally:
        pub.close()
    return emitted


async def _writer_reads_all(pod: LoadedPod) -> int:
    n = 0
    async with DocumentConsumer(_creds(pod, "writer"), "demo", durable=WRITER_DURABLE) as c:
        while batch := await c.fetch(100, 0.5):
            for m in batch:
                assert isinstance(m, Message)
                await m.ack()
                n += 1
    return n


async def _admin_view(pod: LoadedPod) -> dict[str, Any]:
    nc = await NatsConnection.from_pod(pod, admin=True).connect()
    try:
        js = nc.jetstream()
        stream = await js.stream_info(STREAM)
        durable = await js.consumer_info(STREAM, WRITER_DURABLE)
        return {
            "messages": stream.state.messages,
            "consumers": stream.state.consumer_count,
            "max_age": stream.config.max_age,
            "durable delivered": durable.delivered.stream_seq,
            "durable inactive_threshold": durable.config.inactive_threshold,
            "durable filter": durable.config.filter_subject,
        }
    finally:
        await nc.close()


# -- the rendered config ---------------------------------------------------------------


def test_edge_is_off_unless_configured_and_only_readers_may_use_it(
    tmp_path: Path, edge_pod: LoadedPod
) -> None:
    plain = _pod_with(tmp_path / "plain", "", other=False)
    assert "websocket" not in render_nats_config(plain).replace('"WEBSOCKET"', "")
    assert edge_urls(plain) == ()

    conf = render_nats_config(edge_pod)
    port = edge_urls(edge_pod)[0].rsplit(":", 1)[1]
    assert f'websocket {{\n  listen: "127.0.0.1:{port}"\n  no_tls: true\n}}' in conf
    users = {
        line.split('user: "', 1)[1].split('"', 1)[0]: line
        for line in conf.splitlines()
        if 'user: "' in line and "route" not in line
    }
    # (``system``: nats-server's system account, for node health; never at the edge)
    assert set(users) == {"admin", "system"} | {
        f"{i}-{r}" for i in ("demo", OTHER) for r in ("reader", "publisher", "writer", "agent")
    }
    for user, line in users.items():
        types = json.loads(line.split("allowed_connection_types: ", 1)[1].rstrip("}"))
        want = ["STANDARD", "WEBSOCKET"] if user.endswith("-reader") else ["STANDARD"]
        assert types == want, user


def test_edge_with_tls_serves_wss(tmp_path: Path) -> None:
    pod = _pod_with(
        tmp_path,
        "  edge:\n    websocket_port: 9443\n    bind: 0.0.0.0\n"
        "    tls_cert: tls/edge.pem\n    tls_key: tls/edge.key\n",
        other=False,
    )
    conf = render_nats_config(pod)
    root = pod.home.root
    assert (
        f'  listen: "0.0.0.0:9443"\n  tls {{\n    cert_file: "{root}/tls/edge.pem"\n'
        f'    key_file: "{root}/tls/edge.key"\n  }}' in conf
    )
    assert "no_tls" not in conf
    assert edge_urls(pod) == ("wss://127.0.0.1:9443",)
    assert edge_urls(pod, "beamline.example.org") == ("wss://beamline.example.org:9443",)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "  edge:\n    websocket_port: 9443\n    bind: 0.0.0.0\n",
            "without TLS: set tls_cert and tls_key",
        ),
        ("  edge:\n    websocket_port: 9443\n    tls_cert: a.pem\n", "tls_cert and tls_key go"),
        ("  edge:\n    websocket_port: 9443\n    user: x\n", "user"),
        ("  edge:\n    port: 9443\n", "websocket_port"),
    ],
)
def test_bad_edge_config_is_refused_with_what_to_change(
    tmp_path: Path, lines: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _pod_with(tmp_path, lines, other=False)


def test_edge_port_may_not_be_another_bus_port(tmp_path: Path) -> None:
    pod = _pod_with(tmp_path, "", other=False)
    bus_port = pod.config.bus.port  # type: ignore[union-attr]
    text = pod.home.config_file.read_text().replace(
        "  cluster_size: 1\n", f"  cluster_size: 1\n  edge:\n    websocket_port: {bus_port}\n"
    )
    pod.home.config_file.write_text(text)
    with pytest.raises(ConfigError, match=f"edge.websocket_port {bus_port} is also port"):
        load_pod(pod.home)


def test_plaintext_on_a_reachable_address_only_when_allowed(tmp_path: Path) -> None:
    pod = _pod_with(
        tmp_path,
        "  edge:\n    websocket_port: 9443\n    bind: 0.0.0.0\n    allow_plaintext: true\n",
        other=False,
    )
    assert '  listen: "0.0.0.0:9443"\n  no_tls: true\n' in render_nats_config(pod)
    assert edge_urls(pod) == ("ws://127.0.0.1:9443",)


# -- a real nats-server, real nats-py over ws:// ------------------------------------------


def test_reader_reads_a_run_through_the_edge(edge_pod: LoadedPod, edge_bus: NatsProcess) -> None:
    emitted = _publish_run(edge_pod)

    async def main() -> list[tuple[str, dict[str, Any]]]:
        # The copy-paste consumer of docs/bus.md "The edge", with this pod's values.
        nc = await _ws_reader(edge_pod, inbox_prefix=inbox_prefix("demo"))
        try:
            js = nc.jetstream()
            sub = await js.subscribe(documents_subject("demo"), ordered_consumer=True)
            got = []
            for _ in emitted:
                msg = await sub.next_msg(timeout=10)
                name, doc = msgpack.unpackb(
                    msg.data, object_hook=msgpack_numpy.decode, raw=False, strict_map_key=False
                )
                got.append((name, doc))
            return got
        finally:
            await nc.close()

    assert_docs_equal(asyncio.run(main()), emitted)

    async def live() -> tuple[str, dict[str, Any]]:
        # A plain (core) subscription sees documents as they are published.
        nc = await _ws_reader(edge_pod, inbox_prefix=inbox_prefix("demo"))
        try:
            sub = await nc.subscribe(documents_subject("demo"))
            await nc.flush()
            more = await asyncio.to_thread(_publish_run, edge_pod)
            msg = await sub.next_msg(timeout=10)
            assert msgpack.unpackb(msg.data, raw=False, strict_map_key=False)[0] == more[0][0]
            return more[0]
        finally:
            await nc.close()

    assert asyncio.run(live())[0] == "start"


def test_reader_at_the_edge_can_change_nothing(edge_pod: LoadedPod, edge_bus: NatsProcess) -> None:
    from nats.js.api import ConsumerConfig

    emitted = _publish_run(edge_pod)
    assert asyncio.run(_writer_reads_all(edge_pod)) == len(emitted)
    before = asyncio.run(_admin_view(edge_pod))
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def main() -> dict[str, bool]:
        nc = await _ws_reader(edge_pod, error_cb=on_error)
        try:
            js = nc.jetstream(timeout=DENIED)
            durable_cfg = json.dumps(
                {
                    "stream_name": STREAM,
                    "config": {
                        "durable_name": WRITER_DURABLE,
                        "ack_policy": "explicit",
                        "inactive_threshold": 1_000_000_000,
                    },
                }
            ).encode()
            return {
                "publish documents": await _refused(
                    js.publish(documents_subject("demo"), b"x", timeout=DENIED)
                ),
                "delete stream": await _refused(js.delete_stream(STREAM)),
                "purge stream": await _refused(js.purge_stream(STREAM)),
                "update stream": await _refused(
                    js.update_stream(name=STREAM, subjects=["demo.>"], max_age=1.0)
                ),
                "create stream": await _refused(js.add_stream(name="EVIL", subjects=["evil"])),
                "delete writer's durable": await _refused(
                    js.delete_consumer(STREAM, WRITER_DURABLE)
                ),
                "re-create writer's durable": await _refused(
                    nc.request(
                        f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{WRITER_DURABLE}",
                        durable_cfg,
                        timeout=DENIED,
                    )
                ),
                "named create of writer's durable": await _refused(
                    nc.request(
                        f"$JS.API.CONSUMER.CREATE.{STREAM}.{WRITER_DURABLE}",
                        durable_cfg,
                        timeout=DENIED,
                    )
                ),
                "fetch from writer's durable": await _refused(
                    nc.request(
                        f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{WRITER_DURABLE}",
                        b'{"batch":1}',
                        timeout=DENIED,
                    )
                ),
                "create a durable": await _refused(
                    js.add_consumer(STREAM, ConsumerConfig(durable_name="mine"))
                ),
                "delete a message": await _refused(js.delete_msg(STREAM, 1)),
            }
        finally:
            await nc.close()

    result = asyncio.run(main())
    assert all(result.values()), result
    assert any("permissions violation" in e.lower() for e in errors), errors
    assert asyncio.run(_admin_view(edge_pod)) == before  # stream and durable untouched
    assert before["messages"] == len(emitted) and before["consumers"] == 1


@pytest.mark.parametrize("role", ["publisher", "writer", "agent", "admin"])
def test_only_readers_may_log_in_at_the_edge(
    edge_pod: LoadedPod, edge_bus: NatsProcess, role: str
) -> None:
    import nats.errors

    creds = (
        NatsConnection.from_pod(edge_pod, admin=True) if role == "admin" else _creds(edge_pod, role)
    )
    password = creds.password.get_secret_value()

    async def ordinary() -> bool:
        # The same credentials are good on the ordinary port: the edge alone refuses them.
        nc = await creds.connect()
        try:
            return bool(nc.is_connected)
        finally:
            await nc.close()

    async def through_edge() -> str:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        try:
            nc = await _ws_connect(edge_pod, creds.user, password, error_cb=on_error)
        except (nats.errors.Error, OSError) as exc:
            # nats-py's websocket transport leaves the refused connection's aiohttp
            # response to the garbage collector: released now, while the loop runs,
            # not after asyncio.run closed it (an "Event loop is closed" warning).
            gc.collect()
            return f"{type(exc).__name__}: {exc} {errors}"
        await nc.close()
        return "connected"

    assert asyncio.run(ordinary()) is True
    refused = asyncio.run(through_edge())
    assert refused != "connected"
    assert "authorization violation" in refused.lower(), refused


def test_another_instruments_reader_reads_nothing_of_this_one(
    edge_pod: LoadedPod, edge_bus: NatsProcess
) -> None:
    emitted = _publish_run(edge_pod)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def main() -> dict[str, Any]:
        other = await _ws_reader(edge_pod, OTHER, error_cb=on_error)
        demo = await _ws_reader(edge_pod, "demo", inbox_prefix=inbox_prefix("demo"))
        try:
            js = other.jetstream(timeout=DENIED)
            out: dict[str, Any] = {
                "ordered consumer": await _refused(
                    js.subscribe(documents_subject("demo"), stream=STREAM, ordered_consumer=True)
                ),
                "stream info": await _refused(js.stream_info(STREAM)),
            }
            # Everything it may try to listen on: the subject, demo's reader inbox
            # (refused), and the shared default inbox (allowed, but demo's consumer at
            # the edge uses its own prefix).
            core = await other.subscribe(documents_subject("demo"))
            inbox = await other.subscribe(f"{inbox_prefix('demo')}.>")
            shared = await other.subscribe("_INBOX.>")
            await other.flush()
            more = await asyncio.to_thread(_publish_run, edge_pod)
            sub = await demo.jetstream().subscribe(documents_subject("demo"), ordered_consumer=True)
            for _ in range(len(emitted) + len(more)):
                await sub.next_msg(timeout=10)  # demo's reader got the two runs ...
            await other.flush()  # ... and whatever was sent to `other` meanwhile has arrived
            out["received"] = [s.pending_msgs + s.delivered for s in (core, inbox, shared)]
            return out
        finally:
            await other.close()
            await demo.close()

    result = asyncio.run(main())
    assert result == {"ordered consumer": True, "stream info": True, "received": [0, 0, 0]}
    violations = [e for e in errors if "permissions violation" in e.lower()]
    # (nats-py lower-cases the server's message)
    assert any(documents_subject("demo") in e for e in violations), errors
    assert any(inbox_prefix("demo").lower() in e for e in violations), errors


def test_connect_prints_the_edge_url_for_the_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from beampod.cli._app import main

    def env_of(pod: LoadedPod) -> dict[str, str]:
        assert main(["--home", str(pod.home.root), "connect", "--json"]) == 0
        out: dict[str, str] = json.loads(capsys.readouterr().out)
        return out

    env = env_of(_pod_with(tmp_path, "  edge:\n    websocket_port: 9443\n", other=False))
    assert env["BEAMPOD_NATS_EDGE_URL"] == "ws://127.0.0.1:9443"
    assert env["NATS_USER"] == "demo-reader"  # the one user the edge lets in
    assert "BEAMPOD_NATS_EDGE_URL" not in env_of(_pod_with(tmp_path / "plain", "", other=False))


def test_each_node_of_a_cluster_has_its_own_edge_port(tmp_path: Path) -> None:
    pod = _pod_with(
        tmp_path,
        "  edge:\n    websocket_port: 9443\n  monitor_port: 18222\n",
        other=False,
    )
    text = pod.home.config_file.read_text().replace("cluster_size: 1", "cluster_size: 3")
    pod.home.config_file.write_text(text)
    pod = load_pod(pod.home)
    assert edge_urls(pod) == tuple(f"ws://127.0.0.1:{9443 + i}" for i in range(3))
    for i in range(3):
        assert f'listen: "127.0.0.1:{9443 + i}"\n  no_tls: true' in render_nats_config(pod, i)


def _self_signed(cert: Path, key: Path) -> None:
    """A certificate for 127.0.0.1 (what a site's CA would issue for the edge's name)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "beampod edge test")])
    now = datetime.datetime.now(datetime.UTC)
    crt = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pk, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)


def test_reader_reads_through_a_tls_edge(tmp_path: Path) -> None:
    import ssl

    pod = _pod_with(
        tmp_path,
        f"  edge:\n    websocket_port: {free_port()}\n"
        "    tls_cert: tls/edge.pem\n    tls_key: tls/edge.key\n",
        other=False,
    )
    cert = pod.home.root / "tls" / "edge.pem"
    _self_signed(cert, pod.home.root / "tls" / "edge.key")
    (url,) = edge_urls(pod)
    assert url.startswith("wss://127.0.0.1:")
    proc = NatsProcess(pod)
    proc.start()
    try:
        _wait_listening(url)
        emitted = _publish_run(pod)
        tls = ssl.create_default_context(cafile=str(cert))

        async def main() -> list[tuple[str, dict[str, Any]]]:
            nc = await _ws_reader(pod, tls=tls, inbox_prefix=inbox_prefix("demo"))
            try:
                sub = await nc.jetstream().subscribe(
                    documents_subject("demo"), ordered_consumer=True
                )
                got = []
                for _ in emitted:
                    msg = await sub.next_msg(timeout=10)
                    got.append(
                        msgpack.unpackb(
                            msg.data,
                            object_hook=msgpack_numpy.decode,
                            raw=False,
                            strict_map_key=False,
                        )
                    )
                return [(n, d) for n, d in got]
            finally:
                await nc.close()

        assert_docs_equal(asyncio.run(main()), emitted)
    finally:
        proc.stop()
