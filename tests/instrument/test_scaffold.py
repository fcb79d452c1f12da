"""``beampod new instrument``: the generated package installs, loads and passes its test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from beampod.errors import UsageError
from beampod.instrument import scaffold


def test_generated_package_passes_its_own_tests(tmp_path: Path) -> None:
    project = scaffold("my_beamline", tmp_path)
    assert project == tmp_path / "my_beamline"
    assert (project / "pyproject.toml").is_file()
    assert (project / "my_beamline" / "__init__.py").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_generated_package_follows_the_convention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = scaffold("conv_check", tmp_path)
    text = (project / "conv_check" / "__init__.py").read_text()
    # Nothing is created at import time: ophyd is imported inside devices() only.
    assert "\nfrom ophyd" not in text and "\nimport ophyd" not in text
    compile(text, "conv_check/__init__.py", "exec")
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "conv-check"' in pyproject and 'packages = ["conv_check"]' in pyproject


@pytest.mark.parametrize("name", ["My-Beamline", "1st", "class", "os", "beampod", "a b", ""])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        scaffold(name, tmp_path)


def test_existing_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        scaffold("taken", tmp_path)
    assert (tmp_path / "taken" / "x.txt").read_text() == "mine"
