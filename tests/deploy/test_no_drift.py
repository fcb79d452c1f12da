"""One source of truth: the units run exactly what `beampod up` runs (pod_services)."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr

from beampod.config import InstrumentSecrets, LoadedPod, PodConfig, PodHome, Secrets
from beampod.deploy import parse_exec
from beampod.services import pod_services

HOME = "/var/lib/beampod/bl"
ENVS = "/opt/beampod/environments"


def _unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_every_unit_runs_the_pod_services_command(
    rendered: Path, facility_config: PodConfig
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
    specs = {s.name: s for s in pod_services(pod)}
    units = {p: p.read_text() for p in rendered.glob("hosts/*/systemd/*.service")}
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
            if key == "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER":
                assert key not in env
            else:
                assert env[key] == value, (path.name, key)
        assert env["BEAMPOD_HOME"] == HOME
        requires = " ".join(_unit_values(text, "Requires")).split()
        required[name] = ({service_of[(path.parent, r)] for r in requires}, path.parent)
    # Requires= is depends_on restricted to the unit's own host, nothing more or less.
    host_of = {name: d for name, (_, d) in required.items()}
    for name, (deps, host_dir) in required.items():
        assert deps == {d for d in specs[name].depends_on if host_of[d] == host_dir}, name
    assert seen == set(specs)
