"""Promises about the repository itself: the README's two commands and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S)][:2]


def test_readme_starts_with_install_and_test_commands() -> None:
    install, tests = _readme_commands()
    assert "\n" not in install and "\n" not in tests, "each must be one command"
    assert "pip install" in install and "-c requirements.lock" in install
    assert install.endswith("beampod up -d")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_and_handles_no_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    _, tests = _readme_commands()
    assert tests in ci
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" is a failure here


def test_lock_pins_every_direct_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    for req in project["dependencies"]:
        name = re.split(r"[<>=\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in requirements.lock"
