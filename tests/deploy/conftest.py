"""A 3-host facility scaffolded by `beampod new facility` and rendered (no pods needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beampod.cli._app import main
from beampod.config import PodConfig, load_config
from beampod.deploy import DeployOptions, render, write

TARGETS = ("systemd", "ansible", "compose")


def three_host_facility(root: Path) -> Path:
    """bl01, bl02 on ws1 (cycle 2026-1), bl03 on ws2 (cycle 2026-2), central services on
    `central`."""
    assert main(["new", "facility", str(root), "--instruments", "3"]) == 0
    cfg = root / "config.yaml"
    text = cfg.read_text()
    edits = [
        (
            "hosts:\n  localhost: {address: 127.0.0.1}\ncentral_host: localhost",
            "hosts:\n  central: {address: 10.0.0.1}\n  ws1: {address: 10.0.0.11}\n"
            "  ws2: {address: 10.0.0.12}\ncentral_host: central",
        ),
        (
            '    "2026-1": {requirements: []}',
            '    "2026-1": {requirements: []}\n    "2026-2": {requirements: []}',
        ),
        ("  host: localhost\n  package", "  host: ws1\n  package"),
        ("  bl03:\n", '  bl03:\n    host: ws2\n    cycle: "2026-2"\n'),
    ]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    return cfg


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return three_host_facility(tmp_path_factory.mktemp("facility") / "bl-facility")


@pytest.fixture(scope="module")
def facility_config(facility: Path) -> PodConfig:
    return load_config(facility)


@pytest.fixture(scope="module")
def rendered(facility: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    write(render(load_config(facility), facility.read_bytes(), TARGETS, DeployOptions()), out)
    return out
