"""``beampod connect``: with its environment, the real clients people use reach the
running pod (caproto-get, pyepics, tiled, nats-py), and secrets appear only when asked."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import beampod_cli

from beampod.config import LoadedPod

pytestmark = pytest.mark.timeout(300)

BIN = Path(sys.executable).parent


def _shell(pod: LoadedPod, script: str, *connect_args: str) -> subprocess.CompletedProcess[str]:
    """``eval "$(beampod connect --shell)"``, then ``script``, in a clean bash."""
    cli = f"{sys.executable} -m beampod --home {pod.home.root} connect --shell"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPICS_", "TILED_", "NATS"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", f'set -e; eval "$({cli} {" ".join(connect_args)})"; {script}'],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_shell_env_lets_caproto_get_and_pyepics_read_a_pv(pod: LoadedPod) -> None:
    out = _shell(pod, "caproto-get mini:edge:mtr.DMOV")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "[1]", out.stdout  # "mini:edge:mtr.DMOV  [1]"
    pytest.importorskip("epics")
    code = "import epics; v = epics.caget('mini:edge:mtr.DMOV', timeout=10); print('value', v)"
    out = _shell(pod, f"{sys.executable} -c {shlex.quote(code)}")
    assert out.returncode == 0, out.stderr
    assert "value 1" in out.stdout, out.stdout + out.stderr


def test_shell_env_lets_tiled_list_the_instrument(pod: LoadedPod) -> None:
    code = textwrap.dedent(
        """
        import os
        from tiled.client import from_uri
        c = from_uri(os.environ["TILED_URI"], api_key=os.environ["TILED_API_KEY"])
        print("containers", sorted(c))
        """
    )
    out = _shell(pod, f"{sys.executable} -c {shlex.quote(code)}")
    assert out.returncode == 0, out.stderr
    assert "'demo'" in out.stdout, out.stdout


def test_shell_env_lets_plain_nats_py_receive_documents(pod: LoadedPod) -> None:
    """A subscriber that knows nothing of beampod: nats-py with the printed reader
    credentials, an ordered consumer from the start of the stream."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from beampod.bus import DurablePublisher

    publisher = DurablePublisher.from_pod(pod)
    try:
        engine = RunEngine({})
        engine.subscribe(publisher)
        engine(count([det], 2))
        assert publisher.flush(30)
    finally:
        publisher.close()
    code = textwrap.dedent(
        """
        import asyncio, os, msgpack, nats
        async def main():
            nc = await nats.connect(
                os.environ["NATS_URL"].split(","),
                user=os.environ["NATS_USER"],
                password=os.environ["NATS_PASSWORD"],
            )
            js = nc.jetstream()
            sub = await js.subscribe(os.environ["BEAMPOD_NATS_SUBJECT"], ordered_consumer=True)
            names = []
            while "stop" not in names:
                msg = await sub.next_msg(timeout=10)
                names.append(msgpack.unpackb(msg.data, strict_map_key=False)[0])
            print("got", names[0], names[-1])
            await nc.close()
        asyncio.run(main())
        """
    )
    out = _shell(pod, f"{sys.executable} -c {shlex.quote(code)}")
    assert out.returncode == 0, out.stderr
    assert "got start stop" in out.stdout, out.stdout


def test_secrets_only_for_the_asked_role_and_masked_unless_asked(pod: LoadedPod) -> None:
    s = pod.secrets
    demo = s.instruments["demo"]
    reader = json.loads(beampod_cli(pod.home.root, "connect", "--json").stdout)
    assert reader["TILED_API_KEY"] == s.tiled_reader_key.get_secret_value()
    assert reader["NATS_USER"] == "demo-reader"
    assert reader["NATS_PASSWORD"] == demo.reader_password.get_secret_value()
    assert reader["QSERVER_HTTP_SERVER_API_KEY"] == s.queue_observer_key.get_secret_value()
    assert "QSERVER_ZMQ_PUBLIC_KEY" not in reader
    assert reader["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    control = json.loads(
        beampod_cli(pod.home.root, "connect", "--role", "control", "--json").stdout
    )
    assert control["QSERVER_HTTP_SERVER_API_KEY"] == s.queue_control_key.get_secret_value()
    assert control["QSERVER_ZMQ_PUBLIC_KEY"] == s.queue_zmq_public_key
    assert control["QSERVER_ZMQ_CONTROL_ADDRESS"].startswith("tcp://127.0.0.1:")

    human = beampod_cli(pod.home.root, "connect", "--role", "control").stdout
    never = [
        s.tiled_writer_key,
        s.tiled_admin_key,
        s.bus_admin_password,
        s.redis_password,
        s.postgres_password,
        demo.publisher_password,
        demo.writer_password,
    ]
    shown = [
        s.tiled_reader_key,
        s.queue_control_key,
        s.queue_observer_key,
        demo.reader_password,
    ]
    for secret in never + shown:
        assert secret.get_secret_value() not in human
    assert "********" in human and "EPICS_CA_ADDR_LIST" in human
    unmasked = beampod_cli(pod.home.root, "connect", "--show-secrets").stdout
    assert demo.reader_password.get_secret_value() in unmasked
    everything = unmasked + json.dumps(control)
    for secret in never:
        assert secret.get_secret_value() not in everything


def test_unknown_instrument_is_one_readable_error(pod: LoadedPod) -> None:
    out = beampod_cli(pod.home.root, "connect", "-i", "nope", check=False)
    assert out.returncode != 0 and "no instrument 'nope'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_session_finds_the_pods_ca_repeater(pod: LoadedPod) -> None:
    """pyepics (libca) registers with the pod's repeater instead of trying to start a
    caRepeater executable that does not exist."""
    out = beampod_cli(pod.home.root, "run", "count([pinhole], 1)", timeout=240)
    assert out.stdout.strip(), out.stdout  # the run uid
    for line in out.stderr.splitlines():
        assert "repeater" not in line.lower(), out.stderr
