"""Rendering a 3-host facility: placement, determinism, no secrets, real validators."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from beampod.cli._app import main
from beampod.config import PodConfig
from beampod.deploy import DeployOptions, check, render
from tests.deploy.conftest import TARGETS


def _units(out: Path, host: str) -> set[str]:
    """The host's units of pod services (not the log timer's)."""
    found = {p.name for p in (out / "hosts" / host / "systemd").glob("*.service")}
    return found - {"beampod-logs.service"}


def test_services_are_split_by_host(rendered: Path) -> None:
    central = _units(rendered, "central")
    assert central == {
        f"beampod-{n}.service" for n in ("nats-0", "nats-1", "nats-2", "postgres", "redis", "tiled")
    }
    ws1, ws2 = _units(rendered, "ws1"), _units(rendered, "ws2")
    assert {"beampod-bl01-writer.service", "beampod-bl02-writer.service"} <= ws1
    assert {"beampod-bl01-queue.service", "beampod-bl01-agent.service"} <= ws1
    assert "beampod-bl03-writer.service" in ws2
    assert all(u.startswith("beampod-bl03-") for u in ws2)
    # One unit per instrument serves its five simulated IOCs (channel_access.ioc_processes).
    assert {u for u in ws1 if "-ioc" in u} == {
        "beampod-bl01-ioc.service",
        "beampod-bl02-ioc.service",
    }
    assert {u for u in ws2 if "-ioc" in u} == {"beampod-bl03-ioc.service"}
    bl01_iocs = (rendered / "hosts/ws1/systemd/beampod-bl01-ioc.service").read_text()
    assert bl01_iocs.count("--ioc ") == 5 and "bl01:mini:" in bl01_iocs


def test_unit_uses_the_cycle_environment_and_the_overlay(rendered: Path) -> None:
    bl03 = (rendered / "hosts/ws2/systemd/beampod-bl03-writer.service").read_text()
    assert "ExecStart=/opt/beampod/environments/2026-2/bin/python -m beampod.writer" in bl03
    assert 'Environment="PYTHONPATH=/opt/beampod/overlays/bl03"' in bl03
    for line in ("User=beampod", "Type=exec", "UMask=0077", "Restart=on-failure"):
        assert line in bl03.splitlines()
    tiled = (rendered / "hosts/central/systemd/beampod-tiled.service").read_text()
    assert "Requires=beampod-postgres.service" in tiled
    assert "After=network-online.target beampod-postgres.service" in tiled
    # The writer needs Tiled on another host: said, not ordered.
    assert "# Needs beampod-tiled.service on host central" in bl03


def test_every_host_rotates_its_logs_from_a_timer(rendered: Path) -> None:
    """No supervisor runs under systemd: a timer per host runs ``rotate-logs`` on the
    pod home (by ``pod.logs``) from the host's cycle environment; ansible installs both
    units and starts the timer (the service runs from it)."""
    inventory = yaml.safe_load((rendered / "ansible/inventory.yml").read_text())
    for host, cycle in (("central", "2026-1"), ("ws1", "2026-1"), ("ws2", "2026-2")):
        units = rendered / "hosts" / host / "systemd"
        service = (units / "beampod-logs.service").read_text()
        assert (
            f"ExecStart=/opt/beampod/environments/{cycle}/bin/python -m beampod.deploy "
            "rotate-logs --home /var/lib/beampod/bl\n"
        ) in service
        assert "Type=oneshot" in service and "User=beampod" in service
        timer = (units / "beampod-logs.timer").read_text()
        assert "OnUnitActiveSec=300\n" in timer and "WantedBy=timers.target" in timer
        listed = inventory["all"]["hosts"][host]["beampod_units"]
        assert {"beampod-logs.service", "beampod-logs.timer"} <= set(listed)
    play = (rendered / "ansible/playbook.yml").read_text()
    assert "reject(''equalto'', ''beampod-logs.service'')" in play


def test_rendering_is_deterministic_and_names_no_local_path(
    facility: Path, facility_config: PodConfig
) -> None:
    first = render(facility_config, facility.read_bytes(), TARGETS, DeployOptions())
    second = render(facility_config, facility.read_bytes(), TARGETS, DeployOptions())
    assert first == second
    for rel, data in first.items():
        if rel == "ansible/files/config.yaml":
            continue
        text = data.decode()
        assert sys.prefix not in text, rel
        assert str(facility.parent) not in text, rel
        assert "/tmp" not in text, rel


def test_secrets_stay_out_of_units(rendered: Path) -> None:
    queue = (rendered / "hosts/ws1/systemd/beampod-bl01-queue.service").read_text()
    assert "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER" not in queue
    # bl01's own queue server (a facility names it after its instrument).
    assert "EnvironmentFile=-/var/lib/beampod/bl/run/env/queue-bl01.env" in queue
    compose = yaml.safe_load((rendered / "hosts/ws1/compose.yaml").read_text())
    service = compose["services"]["queue-bl01"]
    assert "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER" not in service["environment"]
    assert service["env_file"] == ["/var/lib/beampod/bl/run/env/queue-bl01.env"]
    inventory = (rendered / "ansible/inventory.yml").read_text()
    assert "secret" not in inventory.lower()


def test_compose_runs_the_same_commands_on_the_host_network(rendered: Path) -> None:
    compose = yaml.safe_load((rendered / "hosts/central/compose.yaml").read_text())
    tiled = compose["services"]["tiled"]
    assert tiled["network_mode"] == "host"
    assert tiled["command"][:3] == [
        "/opt/beampod/environments/2026-1/bin/python",
        "-m",
        "beampod.store.server",
    ]
    assert tiled["depends_on"] == {"postgres": {"condition": "service_started"}}


def test_real_validators_accept_the_rendering(rendered: Path) -> None:
    results = check(rendered)
    names = {r.name for r in results}
    assert {"ansible-inventory --list", "ansible-playbook --syntax-check"} <= names
    assert {"compose schema central", "compose schema ws1", "compose schema ws2"} <= names
    assert [r for r in results if r.status == "failed"] == []
    assert all(r.status == "ok" for r in results), results


def test_validators_catch_a_broken_rendering(rendered: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(rendered, broken)
    unit = broken / "hosts/ws2/systemd/beampod-bl03-writer.service"
    unit.write_text(unit.read_text().replace("Type=exec", "Type=exec\nRestartt=always"))
    timer = broken / "hosts/ws1/systemd/beampod-logs.timer"
    timer.write_text(timer.read_text().replace("OnUnitActiveSec=300", "OnUnitActiveSec=often"))
    compose = broken / "hosts/ws2/compose.yaml"
    compose.write_text(compose.read_text().replace("network_mode: host", "network_mod: host"))
    play = broken / "ansible/playbook.yml"
    play.write_text(play.read_text().replace("  tasks:", "  taskz:"))
    failed = {r.name for r in check(broken) if r.status == "failed"}
    if shutil.which("systemd-analyze"):
        assert {"systemd-analyze verify ws1", "systemd-analyze verify ws2"} <= failed
    assert {"compose schema ws2", "ansible-playbook --syntax-check"} <= failed


def test_render_diff_shows_a_changed_config(
    facility: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["deploy", "render", "--config", str(facility), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--diff"]) == 0
    assert capsys.readouterr().out.startswith("rendered ")  # nothing changed: no diff
    assert main([*args, "--diff", "--user", "bluesky"]) == 0
    shown = capsys.readouterr().out
    assert "\n-User=beampod\n" in shown and "\n+User=bluesky\n" in shown
    assert "+++ b/hosts/ws1/systemd/beampod-bl01-writer.service" in shown
    assert "User=bluesky" in (out / "hosts/ws1/systemd/beampod-bl01-writer.service").read_text()


def test_relative_host_path_is_refused(
    facility: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["deploy", "render", "--config", str(facility), "--out", str(tmp_path)]
    assert main([*args, "--environments", "envs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--environments must be an absolute path" in err
    assert not any(tmp_path.iterdir())


def test_host_paths_come_from_the_config(
    facility: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    text = facility.read_text()
    env_line = "environments:\n"
    config.write_text(
        text.replace(env_line, f"{env_line}  root: /sw/envs\n  overlays: /sw/overlays\n", 1)
    )
    out = tmp_path / "out"
    assert main(["deploy", "render", "--config", str(config), "--out", str(out)]) == 0
    unit = (out / "hosts/ws2/systemd/beampod-bl03-writer.service").read_text()
    assert "ExecStart=/sw/envs/2026-2/bin/python -m beampod.writer" in unit
    assert 'Environment="PYTHONPATH=/sw/overlays/bl03"' in unit
    assert "beampod_environments: /sw/envs\n" in (out / "ansible/inventory.yml").read_text()
    # An option still wins; a relative root in the config is refused, in one line.
    args = ["deploy", "render", "--config", str(config), "--out", str(out)]
    assert main([*args, "--environments", "/opt/e"]) == 0
    assert (
        "ExecStart=/opt/e/2026-2/bin/python"
        in (out / "hosts/ws2/systemd/beampod-bl03-writer.service").read_text()
    )
    config.write_text(text.replace(env_line, f"{env_line}  root: envs\n", 1))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (
        f"beampod: error: {config}: environments.root is 'envs', not an absolute path the "
        "hosts can use: make it absolute or pass --environments\n"
    )
