"""nats-server config, stream plans and the service spec: no sockets unless stated."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import time

from beampod.bus import plan_streams, render_nats_config, role_permissions
from beampod.bus._kafka import consumer_config, producer_config
from beampod.config import LoadedPod, StreamSettings
from beampod.services._svc_nats import nats_specs


def test_config_has_users_limits_and_jetstream(bus_pod: LoadedPod) -> None:
    text = render_nats_config(bus_pod)
    bus = bus_pod.config.bus
    assert f'listen: "127.0.0.1:{bus.port}"' in text  # type: ignore[union-attr]
    # No HTTP monitoring: it would answer /connz, /varz, /jsz to anyone, without a key.
    assert bus.monitor_port is None  # type: ignore[union-attr]
    assert "\nhttp:" not in text
    assert f"max_payload: {8 * 1024 * 1024}" in text
    assert str(bus_pod.home.data_dir / "nats") in text
    assert bus_pod.secrets.bus_admin_password.get_secret_value() in text
    demo = bus_pod.secrets.instruments["demo"]
    for role in ("reader", "publisher", "writer", "agent"):
        assert f'user: "demo-{role}"' in text
        assert demo.bus_role_password(role).get_secret_value() in text


def test_role_permissions_are_limited_to_their_own_job() -> None:
    everyone = [role_permissions("demo", r) for r in ("reader", "publisher", "writer", "agent")]
    for perms in everyone:
        pub = perms["publish"]["allow"]
        assert not any("STREAM.CREATE" in p or "STREAM.UPDATE" in p for p in pub), pub
        assert not any("STREAM.DELETE" in p or "STREAM.PURGE" in p for p in pub), pub
        assert not any(p.startswith(("other.", "$JS.API.>", ">")) for p in pub), pub
    reader, publisher, writer, agent = everyone
    assert "demo.bluesky.runengine.documents" in publisher["publish"]["allow"]
    for perms in (reader, writer, agent):
        assert "demo.bluesky.runengine.documents" not in perms["publish"]["allow"]
    assert reader["subscribe"]["allow"] == [
        "demo.bluesky.runengine.documents",
        "_INBOX_demo_reader.>",
        "_INBOX.>",
        "demo.adaptive.*.reply.status.>",
    ]
    # A reader may ask an agent for its status, never act as a plan or as the agent.
    assert "demo.adaptive.*.ping" in reader["publish"]["allow"]
    assert not any("request" in p or "reply" in p for p in reader["publish"]["allow"])
    # Deleting a consumer: only the writer, only its own durable.
    deletes = [p for perms in everyone for p in perms["publish"]["allow"] if ".DELETE." in p]
    assert deletes == ["$JS.API.CONSUMER.DELETE.DEMO_DOCUMENTS.beampod-writer"]


def test_stream_plan_follows_settings() -> None:
    s = StreamSettings(max_age_days=2, max_bytes_gb=1, duplicate_window_s=120, replicas=3)
    docs, dead = plan_streams("demo", s, 1024)
    assert docs.name == "DEMO_DOCUMENTS" and docs.subjects == ("demo.bluesky.runengine.documents",)
    assert docs.max_age_s == 2 * 86400 and docs.max_bytes == 1024**3
    assert docs.duplicate_window_s == 120 and docs.replicas == 3 and docs.max_msg_size == 1024
    assert dead.subjects == ("demo.bluesky.runengine.deadletter",)
    assert dead.max_age_s >= docs.max_age_s


def test_kafka_producer_is_idempotent_and_acks_all() -> None:
    cfg = producer_config("broker:9092")
    assert cfg["enable.idempotence"] is True and cfg["acks"] == "all"
    assert consumer_config("b", "g")["enable.auto.commit"] is False


def test_service_spec_keeps_secrets_out_of_argv_and_writes_0600(bus_pod: LoadedPod) -> None:
    [spec] = nats_specs(bus_pod)
    secret = bus_pod.secrets.bus_admin_password.get_secret_value()
    assert not any(secret in a for a in spec.argv)
    assert spec.prepare is not None
    spec.prepare()
    conf = spec.argv[-1]
    mode = stat.S_IMODE(__import__("os").stat(conf).st_mode)
    assert mode == 0o600
    ports = {c.port for c in spec.ports}
    bus = bus_pod.config.bus
    assert ports == {bus.port}  # type: ignore[union-attr]


def test_service_spec_starts_and_its_probe_ensures_streams(bus_pod: LoadedPod) -> None:
    """Real process from the spec's argv; readiness polled with a deadline."""
    [spec] = nats_specs(bus_pod)
    assert spec.prepare is not None
    spec.prepare()
    proc = subprocess.Popen(spec.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        async def until_ready() -> float:
            t0 = time.monotonic()
            while not await spec.probe.ready():
                assert proc.poll() is None, "nats-server exited"
                assert time.monotonic() - t0 < spec.ready_timeout
                await asyncio.sleep(0.02)
            return time.monotonic() - t0

        took = asyncio.run(until_ready())
        assert took < 10
        from beampod.bus import ensure_streams_sync

        assert set(ensure_streams_sync(bus_pod).values()) == {"unchanged"}
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.poll() is not None


def test_replicas_above_one_need_a_cluster(bus_pod: LoadedPod) -> None:
    import dataclasses

    import pytest

    from beampod.errors import ConfigError

    bus = bus_pod.config.bus
    stream = bus.stream.model_copy(update={"replicas": 3})  # type: ignore[union-attr]
    config = bus_pod.config.model_copy(update={"bus": bus.model_copy(update={"stream": stream})})
    with pytest.raises(ConfigError, match="replicas"):
        nats_specs(dataclasses.replace(bus_pod, config=config))
