"""One source of truth: the units run exactly what `beampod up` runs (pod_services)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from beampod.config import (
    HOST_ENV,
    InstrumentSecrets,
    LoadedPod,
    PodConfig,
    PodHome,
    Secrets,
    effective_hosts,
    load_config,
)
from beampod.deploy import DeployOptions, parse_exec, render
from beampod.services import ServiceSpec, service_instrument, up_services

HOME = "/var/lib/beampod/bl"
ENVS = "/opt/beampod/environments"


def _up_on_every_host(pod: LoadedPod, monkeypatch: pytest.MonkeyPatch) -> dict[str, ServiceSpec]:
    """What ``beampod up --host H`` runs on each host H, by service name."""
    out: dict[str, ServiceSpec] = {}
    for host in effective_hosts(pod.config):
        monkeypatch.setenv(HOST_ENV, host)
        out |= {s.name: s for s in up_services(pod)}
    monkeypatch.delenv(HOST_ENV)
    return out


def _unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_every_unit_runs_the_pod_services_command(
    rendered: Path, facility_config: PodConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = facility_config
    pod = LoadedPod(
        home=PodHome(Path(HOME)),
        config=cfg,
        secrets=Secrets(
            queue_zmq_private_key=SecretStr("k"),
            instruments={n: InstrumentSecrets() for n in cfg.instruments},
        ),
    )
    specs = _up_on_every_host(pod, monkeypatch)  # what `beampod up --host H` runs on H
    units = {
        p: p.read_text()
        for p in rendered.glob("hosts/*/systemd/*.service")
        if p.name != "beampod-logs.service"  # the log timer's, not a pod service
    }
    assert len(units) == len(specs)
    seen: set[str] = set()
    service_of = {
        (p.parent, p.name): parse_exec(_unit_values(t, "ExecStartPre")[0])[-1]
        for p, t in units.items()
    }
    required: dict[str, tuple[set[str], Path]] = {}
    for path, text in units.items():
        (pre,) = _unit_values(text, "ExecStartPre")
        name = parse_exec(pre)[-1]  # `... prepare --home HOME <service>`
        seen.add(name)
        spec = specs[name]
        inst = next((i for i in cfg.instruments if f"-{i}-" in path.name), None)
        cycle = cfg.instruments[inst or cfg.instrument_name].cycle
        python = f"{ENVS}/{cycle}/bin/python"
        exe = spec.argv[0]
        if exe == sys.executable:
            expected = (python, *spec.argv[1:])
        else:  # nats-server, redis-server: the same path inside the cycle environment
            assert exe.startswith(sys.prefix + "/"), exe
            expected = (f"{ENVS}/{cycle}/{exe[len(sys.prefix) + 1 :]}", *spec.argv[1:])
        (start,) = _unit_values(text, "ExecStart")
        assert parse_exec(start) == expected, path.name
        env = dict(parse_exec(v)[0].split("=", 1) for v in _unit_values(text, "Environment"))
        for key, value in spec.env.items():
            # Secrets (the queue's private key, an agent's bus password) are in the
            # host's 0600 EnvironmentFile=, never in the unit.
            if "PRIVATE_KEY" in key or "PASSWORD" in key:
                assert key not in env and value not in text, (path.name, key)
            else:
                assert env[key] == value, (path.name, key)
        assert env["BEAMPOD_HOME"] == HOME
        assert env[HOST_ENV] == path.parent.parent.name  # hosts/<host>/systemd/
        requires = " ".join(_unit_values(text, "Requires")).split()
        required[name] = ({service_of[(path.parent, r)] for r in requires}, path.parent)
    # Requires= is depends_on restricted to the unit's own host, nothing more or less.
    host_of = {name: d for name, (_, d) in required.items()}
    for name, (deps, host_dir) in required.items():
        assert deps == {d for d in specs[name].depends_on if host_of[d] == host_dir}, name
    assert seen == set(specs)


def _beampod_cycle(root: Path, cycle: str) -> None:
    """A stand-in for a built cycle that contains beampod: ``bin/python`` (this
    interpreter) and a manifest listing beampod -- all ``up`` reads to choose it."""
    env = root / cycle
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    (env / "beampod-manifest.json").write_text(
        json.dumps({"cycle": cycle, "packages": {"beampod": "0", "bluesky": "1"}, "files": {}})
    )


def test_units_run_what_up_runs_with_built_cycles_and_overlays(
    facility: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every cycle built (and containing beampod) and every overlay present, `up`
    runs each instrument's services with its cycle's interpreter and its overlay: the
    units run the same argv and PYTHONPATH, with the config's roots."""
    local_envs, local_overlays = tmp_path / "envs", tmp_path / "overlays"
    text = facility.read_text().replace(
        "environments:\n",
        f"environments:\n  root: {local_envs}\n  overlays: {local_overlays}\n",
        1,
    )
    assert str(local_envs) in text
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    cfg = load_config(config_file)
    for cycle in cfg.environments.cycles:
        _beampod_cycle(local_envs, cycle)
    for name in cfg.instruments:
        (local_overlays / name).mkdir(parents=True)
    pod = LoadedPod(
        home=PodHome(Path(HOME)),
        config=cfg,
        secrets=Secrets(
            queue_zmq_private_key=SecretStr("k"),
            instruments={n: InstrumentSecrets() for n in cfg.instruments},
        ),
    )
    up = _up_on_every_host(pod, monkeypatch)
    rendered = render(cfg, config_file.read_bytes(), ("systemd",), DeployOptions())
    inherited = os.environ.get("PYTHONPATH")
    checked = 0
    for rel, data in rendered.items():
        if "/beampod-logs." in rel:  # the log timer's units, not pod services
            continue
        unit = data.decode()
        name = parse_exec(_unit_values(unit, "ExecStartPre")[0])[-1]
        spec = up[name]
        env = dict(parse_exec(v)[0].split("=", 1) for v in _unit_values(unit, "Environment"))
        inst = service_instrument(cfg, name)
        if inst is None:
            assert "PYTHONPATH" not in env and "PYTHONPATH" not in spec.env, rel
            continue
        checked += 1
        # The config's roots, on the hosts as here.
        (start,) = _unit_values(unit, "ExecStart")
        assert parse_exec(start) == spec.argv, rel
        assert spec.argv[0] == f"{local_envs}/{cfg.instruments[inst].cycle}/bin/python"
        local_path = spec.env["PYTHONPATH"].split(os.pathsep)
        assert local_path[0] == env["PYTHONPATH"] == f"{local_overlays}/{inst}", rel
        assert local_path[1:] == [p for p in (inherited or "").split(os.pathsep) if p]
    assert checked == len([n for n in up if service_instrument(cfg, n) is not None]) > 10
