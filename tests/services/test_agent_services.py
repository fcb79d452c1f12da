"""One agent service per instrument (or per pool of instruments, ADR 0025), each given
only its own instruments' credentials (no pod running: the service specs and what the
agent process loads). The running processes: tests/facility/test_facility_queues.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from tests.web._homes import pod_home, two_instruments

from beampod.config import (
    AGENT_PASSWORD_ENV,
    AGENT_PASSWORDS_ENV,
    AGENT_REDIS_PASSWORD_ENV,
    InstrumentSecrets,
    LoadedPod,
    Secrets,
    agent_service_name,
    load_agent_pod,
)
from beampod.errors import ConfigError
from beampod.services import pod_services, service_instrument


def _secret_values(secrets: Secrets | InstrumentSecrets) -> list[str]:
    out = []
    for name in type(secrets).model_fields:
        value = getattr(secrets, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out


def _facility(root: Path) -> LoadedPod:
    return pod_home(root, instruments=two_instruments(), agent={"enabled": True})


def test_a_facility_runs_an_agent_per_instrument_with_its_password_only(tmp_path: Path) -> None:
    pod = _facility(tmp_path / "f")
    specs = {s.name: s for s in pod_services(pod)}
    assert "agent" not in specs
    for inst, other in (("bl01", "bl02"), ("bl02", "bl01")):
        spec = specs[f"agent-{inst}"]
        assert spec.argv[-2:] == ("--instrument", inst)
        assert spec.instrument == inst == service_instrument(pod.config, spec.name)
        own = pod.secrets.for_instrument(inst).agent_password.get_secret_value()
        assert spec.env == {AGENT_PASSWORD_ENV: own}  # no Redis: its user reaches every key
        everything_else = [
            *_secret_values(pod.secrets),
            *_secret_values(pod.secrets.for_instrument(other)),
            *(v for v in _secret_values(pod.secrets.for_instrument(inst)) if v != own),
        ]
        assert not set(everything_else) & set(spec.env.values())
        assert not any(own in a for a in spec.argv)


def test_the_agent_process_never_reads_the_secrets_file(tmp_path: Path) -> None:
    pod = _facility(tmp_path / "f")
    own = pod.secrets.for_instrument("bl02").agent_password.get_secret_value()
    pod.home.secrets_file.unlink()  # what it holds is not there to read
    seen = load_agent_pod(pod.home, "bl02", {AGENT_PASSWORD_ENV: own})
    assert list(seen.secrets.instruments) == ["bl02"]
    assert _secret_values(seen.secrets.for_instrument("bl02")) == [own]
    assert _secret_values(seen.secrets) == []
    assert seen.config == pod.config


def test_a_pod_of_one_instrument_keeps_its_agent_service(tmp_path: Path) -> None:
    pod = pod_home(tmp_path / "one", agent={"enabled": True})
    specs = {s.name: s for s in pod_services(pod)}
    assert "agent" in specs and not [n for n in specs if n.startswith("agent-")]
    inst = pod.config.instrument_name
    assert specs["agent"].env == {
        AGENT_PASSWORD_ENV: pod.secrets.for_instrument(inst).agent_password.get_secret_value(),
        # The bluesky-pods demo's Redis replies: the pod's Redis is this instrument's.
        AGENT_REDIS_PASSWORD_ENV: pod.secrets.redis_password.get_secret_value(),
    }


def test_only_the_background_services_yield_the_cpu(tmp_path: Path) -> None:
    """Storing and serving (writers, Tiled, console) run at pod.background_nice; what a
    scan waits on (IOCs, queue worker, agents, the bus) at normal priority."""
    pod = _facility(tmp_path / "f")
    nice = {s.name: s.nice for s in pod_services(pod)}
    background = {"writer-bl01", "writer-bl02", "tiled", "web"}
    assert background <= set(nice)
    assert {n for n, v in nice.items() if v} == background
    assert {nice[n] for n in background} == {pod.config.pod.background_nice} == {5}


def _three(root: Path, pool: int) -> LoadedPod:
    instruments = {
        name: {"package": "beampod.demo", "iocs": [{"family": "simple", "prefix": f"{name}:"}]}
        for name in ("bl01", "bl02", "bl03")
    }
    return pod_home(
        root, instruments=instruments, agent={"enabled": True}, pod={"agent_pool_size": pool}
    )


def test_an_agent_pool_serves_its_members_with_their_passwords_only(tmp_path: Path) -> None:
    pod = _three(tmp_path / "f", pool=2)
    specs = {s.name: s for s in pod_services(pod)}
    agents = sorted(n for n in specs if n.startswith("agent"))
    assert agents == ["agent-bl03", "agent-pool-1"]  # config order, 2 at a time
    pool = specs["agent-pool-1"]
    assert pool.argv[-4:] == ("--instrument", "bl01", "--instrument", "bl02")
    assert pool.instrument is None  # shared: central in `beampod status`
    assert service_instrument(pod.config, "agent-pool-1") == "bl01"  # placed as bl01's
    assert agent_service_name(pod.config, "bl02") == "agent-pool-1"
    own = {
        i: pod.secrets.for_instrument(i).agent_password.get_secret_value() for i in ("bl01", "bl02")
    }
    assert pool.env == {AGENT_PASSWORDS_ENV: json.dumps(own)}
    others = [
        *_secret_values(pod.secrets),
        *_secret_values(pod.secrets.for_instrument("bl03")),
        *(v for i in own for v in _secret_values(pod.secrets.for_instrument(i)) if v != own[i]),
    ]
    assert not [v for v in others if v in pool.env[AGENT_PASSWORDS_ENV]]
    assert not any(p in a for p in own.values() for a in pool.argv)
    # The pool's process, like an agent's own, never reads the secrets file.
    pod.home.secrets_file.unlink()
    seen = load_agent_pod(pod.home, ["bl01", "bl02"], pool.env)
    assert sorted(seen.secrets.instruments) == ["bl01", "bl02"]
    assert {i: _secret_values(seen.secrets.for_instrument(i)) for i in own} == {
        i: [p] for i, p in own.items()
    }
    assert _secret_values(seen.secrets) == []
    with pytest.raises(ConfigError, match="no agent password for bl03"):
        load_agent_pod(pod.home, ["bl01", "bl03"], pool.env)


def test_agent_pool_size_one_keeps_a_process_per_instrument(tmp_path: Path) -> None:
    pod = _three(tmp_path / "f", pool=1)
    names = sorted(s.name for s in pod_services(pod) if s.name.startswith("agent"))
    assert names == ["agent-bl01", "agent-bl02", "agent-bl03"]


def test_a_deployed_agent_pool_keeps_its_passwords_out_of_the_unit(tmp_path: Path) -> None:
    from beampod.deploy._plan import DeployOptions, place

    pod = _three(tmp_path / "f", pool=2)
    placed = {p.spec.name: p for p in place(pod.config, DeployOptions().for_config(pod.config))}
    pool = placed["agent-pool-1"]
    assert (pool.host, pool.instrument) == ("localhost", "bl01")  # its first member's
    assert pool.secret_env == (AGENT_PASSWORDS_ENV,) and pool.env_file
    assert AGENT_PASSWORDS_ENV not in pool.env
