"""The queue server's plans-and-devices file is written and read with libyaml in its
processes (queue/_libyaml.py): the lists read back are the ones the pure-Python code
reads, and the ``yaml`` module plans may use is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("bluesky_queueserver")

from bluesky import plans as bp
from bluesky_queueserver.manager import profile_ops
from ophyd.sim import det, motor

from beampod.queue._libyaml import libyaml_namespace, use_libyaml

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")


def _lists() -> tuple[dict, dict]:
    plans, devices, _, _ = profile_ops.existing_plans_and_devices_from_nspace(
        nspace={"count": bp.count, "scan": bp.scan, "det": det, "motor": motor}
    )
    return plans, devices


def _save_and_load(where: Path) -> tuple[dict, dict]:
    plans, devices = _lists()
    profile_ops.save_existing_plans_and_devices(
        existing_plans=plans, existing_devices=devices, file_dir=str(where), file_name="pd.yaml"
    )
    return profile_ops.load_existing_plans_and_devices(str(where / "pd.yaml"))


def test_the_lists_read_back_equal_what_the_pure_python_code_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "py").mkdir()
    (tmp_path / "c").mkdir()
    plain = _save_and_load(tmp_path / "py")

    monkeypatch.setattr(profile_ops, "yaml", profile_ops.yaml)  # restored afterwards
    assert use_libyaml(profile_ops)
    fast = _save_and_load(tmp_path / "c")

    assert plain[0] and plain[1]  # the lists are not empty: count, scan; det, motor
    assert set(fast[0]) == {"count", "scan"} and set(fast[1]) == {"det", "motor"}
    assert fast == plain
    # A file written by either reads the same with the other.
    with (tmp_path / "c" / "pd.yaml").open() as fh:
        assert yaml.load(fh, Loader=yaml.FullLoader)["existing_plans"] == plain[0]


def test_only_the_queue_servers_module_is_rebound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_ops, "yaml", profile_ops.yaml)
    load, dump = yaml.load, yaml.dump
    use_libyaml(profile_ops)
    assert profile_ops.yaml is not yaml
    assert profile_ops.yaml.YAMLError is yaml.YAMLError  # what it catches stays PyYAML's
    assert (yaml.load, yaml.dump) == (load, dump)
    ns = libyaml_namespace()
    assert ns is not None
    assert ns.safe_load("a: [1, 2]") == {"a": [1, 2]}
    assert yaml.safe_load(ns.dump({"a": "x\ny"})) == {"a": "x\ny"}
