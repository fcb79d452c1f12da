"""Check a rendered directory with the real tools.

- Ansible: ``ansible-inventory --list`` and ``ansible-playbook --syntax-check``
  (ansible-core, the test/dev extra);
- systemd: ``systemd-analyze verify`` of every unit, where systemd-analyze exists;
- compose: every ``compose.yaml`` against the Compose file JSON schema that the
  docker-compose 1.29.2 wheel on PyPI ships (``compose/config/compose_spec.json``,
  Apache-2.0), kept here as ``compose_schema.json``.

Each check returns ``(name, ok, detail)``; a tool that is not installed is a skipped
check with its reason, never a silent pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failed", "skipped"
    detail: str = ""


def _tool(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _run(name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> CheckResult:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode == 0:
        return CheckResult(name, "ok")
    return CheckResult(name, "failed", (proc.stderr or proc.stdout).strip()[-2000:])


def check_ansible(out: Path) -> list[CheckResult]:
    ansible = out / "ansible"
    if not (ansible / "playbook.yml").exists():
        return []
    inv, play = _tool("ansible-inventory"), _tool("ansible-playbook")
    if inv is None or play is None:
        reason = "ansible-core is not installed (pip install ansible-core)"
        return [CheckResult("ansible", "skipped", reason)]
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": tempfile.gettempdir(), "ANSIBLE_NOCOLOR": "1"}
    return [
        _run("ansible-inventory --list", [inv, "-i", "inventory.yml", "--list"], ansible, env),
        _run(
            "ansible-playbook --syntax-check",
            [play, "-i", "inventory.yml", "--syntax-check", "playbook.yml"],
            ansible,
            env,
        ),
    ]


def check_systemd(out: Path) -> list[CheckResult]:
    units = sorted(out.glob("hosts/*/systemd/*.service"))
    if not units:
        return []
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return [CheckResult("systemd-analyze verify", "skipped", "systemd-analyze not installed")]
    results = []
    for host_dir in sorted({u.parent for u in units}):
        # Verified together, so Requires=/After= between them resolve; the executables
        # live on the hosts, so "not executable" lines about them are expected here.
        files = sorted([*host_dir.glob("*.service"), *host_dir.glob("*.timer")])
        proc = subprocess.run(
            [tool, "verify", *map(str, files)], capture_output=True, text=True, timeout=300
        )
        bad = [
            line
            for line in (proc.stderr + proc.stdout).splitlines()
            if line.strip() and not _about_host_paths(line)
        ]
        name = f"systemd-analyze verify {host_dir.parent.name}"
        results.append(CheckResult(name, "failed" if bad else "ok", "\n".join(bad)))
    return results


_HOST_ONLY = re.compile(
    r"^\S+\.service: Command /\S+ is not executable: No such file or directory$"
)


def _about_host_paths(line: str) -> bool:
    """The programs of the cycle environment exist on the hosts, not here: only the line
    saying exactly that is expected; every other line is a problem of the unit."""
    return bool(_HOST_ONLY.match(line.strip()))


def check_compose(out: Path) -> list[CheckResult]:
    files = sorted(out.glob("hosts/*/compose.yaml"))
    if not files:
        return []
    import jsonschema

    schema = json.loads((Path(__file__).parent / "compose_schema.json").read_text())
    results = []
    for f in files:
        errors = sorted(
            jsonschema.Draft201909Validator(schema).iter_errors(yaml.safe_load(f.read_text())),
            key=str,
        )
        detail = "\n".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
        )
        name = f"compose schema {f.parent.name}"
        results.append(CheckResult(name, "failed" if errors else "ok", detail))
    return results


def check(out: Path) -> list[CheckResult]:
    return check_ansible(out) + check_systemd(out) + check_compose(out)
