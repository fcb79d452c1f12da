"""Overlays and cycles in the running pod: each instrument's services and sessions run
with its cycle and its overlay, other instruments' do not, and a broken overlay stops
``up`` by name until ``overlay remove`` restores the cycle's version."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beampod.config import PodHome, init_pod
from beampod.envs import site_packages
from tests._pods import down_leaving_nothing
from tests.conftest import beampod_cli, processes_using
from tests.envs.conftest import CYCLE, layout_of


def _pod_config(cfg: dict[str, Any], facility: PodHome) -> None:
    """Two instruments without IOCs (their services: a writer each), on the facility's
    environments."""
    layout = layout_of(facility)
    cfg["instruments"] = {n: {"package": "beampod.demo", "iocs": []} for n in ("bl01", "bl02")}
    for off in ("queue", "web", "agent"):
        cfg[off] = {**cfg.get(off, {}), "enabled": False}
    facility_cfg = yaml.safe_load(facility.config_file.read_text())["environments"]
    cfg["environments"] = {
        "root": str(layout.root),
        "overlays": str(layout.overlays_root),
        "cycles": facility_cfg["cycles"],
    }


@pytest.fixture
def pod_home(built: PodHome) -> Iterator[PodHome]:
    """A pod of its own: the shared one has one instrument and no cycle environments."""
    root = Path(tempfile.mkdtemp(prefix="beampod-runtime-"))
    home = PodHome(root)
    try:
        init_pod(home, free_ports=True)
        cfg = yaml.safe_load(home.config_file.read_text())
        _pod_config(cfg, built)
        home.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        init_pod(home)  # credentials of the instruments
        yield home
    finally:
        try:
            down_leaving_nothing(root, lambda: beampod_cli(root, "down", check=False))
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _environ(pid: int) -> dict[str, str]:
    return dict(
        item.decode().split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )


def _seen_by_process(pid: int) -> str:
    """What the live process ``pid`` imports as ``tiny``: its own interpreter and its
    own environment (read from /proc), asked in a fresh interpreter."""
    python = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    out = subprocess.run(
        [python, "-c", "import tiny; print(tiny.VERSION, tiny.__file__)"],
        capture_output=True,
        text=True,
        env=_environ(pid),
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_services_and_sessions_run_with_their_instruments_overlay(
    built: PodHome, pod_home: PodHome
) -> None:
    layout = layout_of(built)
    base_sp = site_packages(layout.env_dir(CYCLE))
    cli = beampod_cli
    cli(built.root, "env", "overlay", "bl01", "install", "tiny==2.0")
    cli(built.root, "env", "overlay", "bl02", "install", "tiny==3.0")  # fails to import
    try:
        # A broken overlay is named at `up`, and nothing starts.
        proc = cli(pod_home.root, "up", "-d", check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(
            "beampod: error: overlay of 'bl02': tiny fails to import "
            "(ImportError: tiny 3.0 is broken). Nothing was started"
        ), line
        assert not processes_using(pod_home.root)
        # Removing the package from the overlay restores the instrument.
        cli(built.root, "env", "overlay", "bl02", "remove", "tiny")
        cli(pod_home.root, "up", "-d")
        status = json.loads(cli(pod_home.root, "status", "--json").stdout)["services"]
        bl01_overlay = layout.overlay_dir("bl01")
        for service, expected in [
            ("writer-bl01", f"2.0 {bl01_overlay}/tiny/__init__.py"),
            ("writer-bl02", f"1.0 {base_sp}/tiny/__init__.py"),
        ]:
            assert status[service]["state"] == "ready", status[service]
            assert _seen_by_process(status[service]["pid"]) == expected, service
        # Central services run as beampod does: no instrument's overlay, no cycle.
        tiled_path = _environ(status["tiled"]["pid"]).get("PYTHONPATH", "")
        assert str(bl01_overlay) not in tiled_path and str(base_sp) not in tiled_path
        # A session imports what its instrument's services import.
        for inst, version in (("bl01", "2.0"), ("bl02", "1.0")):
            out = cli(
                pod_home.root,
                "shell",
                "-i",
                inst,
                "-c",
                "import tiny; print('tiny', tiny.VERSION)",
            ).stdout
            assert f"tiny {version}" in out.splitlines(), out
    finally:
        cli(pod_home.root, "down", check=False)
        for inst in ("bl01", "bl02"):
            cli(built.root, "env", "overlay", inst, "remove", "tiny", check=False)


def test_a_pod_without_cycles_or_overlays_runs_as_before() -> None:
    from beampod.config import load_pod
    from beampod.envs import instrument_runtime
    from beampod.services import pod_services, up_services

    home = PodHome(Path(tempfile.mkdtemp(prefix="beampod-runtime-none-")))
    try:
        init_pod(home, free_ports=True)
        pod = load_pod(home)
        assert not instrument_runtime(pod, "demo").changes_anything
        assert [(s.argv, dict(s.env)) for s in up_services(pod)] == [
            (s.argv, dict(s.env)) for s in pod_services(pod)
        ]
    finally:
        shutil.rmtree(home.root, ignore_errors=True)
