"""Every command group and service is imported plainly: a broken module fails loudly,
it is never silently left out."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from beampod.cli import build_parser
from beampod.config import PodHome, init_pod, load_pod
from beampod.services import pod_services


def _make_unimportable(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """As if the module's file were missing: importing it raises ModuleNotFoundError."""
    package, _, name = module.rpartition(".")
    monkeypatch.delattr(importlib.import_module(package), name, raising=False)
    monkeypatch.setitem(sys.modules, module, None)


def test_queue_and_agent_commands_are_registered() -> None:
    from beampod.cli import _agent_cmds, _queue_cmds

    parser = build_parser()
    assert parser.parse_args(["queue", "list"]).func.__module__ == _queue_cmds.__name__
    assert parser.parse_args(["agent", "ping"]).func.__module__ == _agent_cmds.__name__


@pytest.mark.parametrize("module", ["beampod.cli._queue_cmds", "beampod.cli._agent_cmds"])
def test_a_missing_command_module_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    _make_unimportable(monkeypatch, module)
    with pytest.raises(ImportError):
        build_parser()


@pytest.mark.parametrize(
    "module",
    ["beampod.services._svc_writer", "beampod.services._svc_queue", "beampod.services._svc_agent"],
)
def test_a_missing_service_module_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    home = PodHome(tmp_path)
    init_pod(home)
    pod = load_pod(home)
    assert {"writer", "queue", "agent"} <= {s.name for s in pod_services(pod)}
    _make_unimportable(monkeypatch, module)
    with pytest.raises(ImportError):
        pod_services(pod)
