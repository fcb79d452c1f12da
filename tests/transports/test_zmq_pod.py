"""A pod on ``bus.transport: zmq``: bluesky's 0MQ proxy runs as a service and a writer
subscribed through bluesky's RemoteDispatcher stores every run it sees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beampod.config import LoadedPod
from tests.conftest import beampod_cli, beampod_in_process
from tests.datapath._helpers import status

from ._common import run_scan, tail_during_scan, wait_run_stored

pytestmark = pytest.mark.timeout(400)


def test_zmq_pod_runs_the_proxy_and_a_writer_and_stores_the_scan(zmq_pod: LoadedPod) -> None:
    services = status(zmq_pod)["services"]
    assert services["zmq-proxy"]["state"] == "ready"
    assert services["writer"]["state"] == "ready"
    assert not any(name.startswith("nats") for name in services)
    uid = run_scan(zmq_pod)
    run = wait_run_stored(zmq_pod, uid, 5)
    ds = run["primary"].read()
    np.testing.assert_allclose(np.asarray(ds["motor_ph"]), np.linspace(-1, 1, 5), atol=1e-6)
    assert run.metadata["stop"]["exit_status"] == "success"
    runs = json.loads(beampod_in_process(zmq_pod.home.root, "runs", "--json").stdout)
    assert [r["num_events"] for r in runs if r["uid"] == uid] == [5]


def test_tail_follows_the_proxy(zmq_pod: LoadedPod) -> None:
    uid, docs = tail_during_scan(zmq_pod, 8)
    assert [n for n, _ in docs] == ["start", "descriptor"] + ["event"] * 5 + ["stop"]
    assert docs[0][1]["uid"] == uid and docs[-1][1]["run_start"] == uid
    wait_run_stored(zmq_pod, uid, 5)  # the writer stored it too


def test_tail_from_start_and_dlq_say_0mq_keeps_nothing(zmq_pod: LoadedPod) -> None:
    proc = beampod_cli(zmq_pod.home.root, "tail", "--from-start", check=False)
    assert proc.returncode != 0
    assert "0MQ keeps nothing to replay" in proc.stderr
    assert "Traceback" not in proc.stderr
    for args in (("dlq", "list"), ("dlq", "show", "1"), ("dlq", "replay", "1")):
        proc = beampod_cli(zmq_pod.home.root, *args, check=False)
        assert proc.returncode != 0, args
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .endswith("use the nats or kafka transport to keep dead letters")
        ), proc.stderr
        assert "Traceback" not in proc.stderr
