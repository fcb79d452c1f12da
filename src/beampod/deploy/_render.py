"""Render every target into a directory: deterministic bytes, and a diff before writing."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from beampod.config import PodConfig
from beampod.deploy._ansible import inventory, playbook
from beampod.deploy._compose import compose
from beampod.deploy._plan import DeployOptions, host_cycles, hosts_of, place
from beampod.deploy._systemd import log_rotation_units, unit_text

TARGETS = ("systemd", "ansible", "compose")


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


def render(
    config: PodConfig, config_bytes: bytes, targets: tuple[str, ...], options: DeployOptions
) -> dict[str, bytes]:
    """``relative path -> content`` of everything rendered for ``targets``.

    Ansible installs the units, so the ansible target includes the systemd units.
    """
    options = options.for_config(config)
    placed = place(config, options)
    home = options.home_of(config)
    files: dict[str, str | bytes] = {}
    if "systemd" in targets or "ansible" in targets:
        for p in placed:
            files[f"hosts/{p.host}/systemd/{p.unit}.service"] = unit_text(p, options, home)
        every_s = config.pod.logs.check_every_s
        for host, cycle in host_cycles(placed).items():
            python = options.python(cycle)
            for name, text in log_rotation_units(python, options, home, every_s).items():
                files[f"hosts/{host}/systemd/{name}"] = text
    if "ansible" in targets:
        files["ansible/inventory.yml"] = _yaml(inventory(config, placed, options))
        files["ansible/playbook.yml"] = "---\n" + _yaml(playbook())
        files["ansible/files/config.yaml"] = config_bytes
    if "compose" in targets:
        for host in hosts_of(config):
            files[f"hosts/{host}/compose.yaml"] = _yaml(compose(host, placed, options, home))
    return {k: (v.encode() if isinstance(v, str) else v) for k, v in sorted(files.items())}


def diff(rendered: dict[str, bytes], out: Path) -> str:
    """Unified diff of what is in ``out`` now against ``rendered`` (only the files rendered)."""
    chunks: list[str] = []
    for rel, new in rendered.items():
        path = out / rel
        old = path.read_bytes() if path.exists() else b""
        if old == new:
            continue
        chunks.extend(
            difflib.unified_diff(
                old.decode(errors="replace").splitlines(keepends=True),
                new.decode(errors="replace").splitlines(keepends=True),
                fromfile=f"a/{rel}" if path.exists() else "/dev/null",
                tofile=f"b/{rel}",
            )
        )
    return "".join(chunks)


def write(rendered: dict[str, bytes], out: Path) -> list[str]:
    """Write the files that changed; returns their relative paths."""
    changed = []
    for rel, data in rendered.items():
        path = out / rel
        if path.exists() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        changed.append(rel)
    return changed
