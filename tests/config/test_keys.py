"""API keys every client accepts: an old pod's unusable key is named with its fix, and
``beampod init --rotate-keys`` replaces it (atomically, 0600, never printed)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import yaml
from tests.conftest import beampod_cli

from beampod.config import PodHome

API_KEYS = [
    "tiled_writer_key",
    "tiled_reader_key",
    "tiled_admin_key",
    "queue_control_key",
    "queue_observer_key",
]


def _secrets(home: PodHome) -> dict:
    return dict(yaml.safe_load(home.secrets_file.read_text()))


def test_an_unusable_key_is_named_and_rotated_keeping_the_others(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    beampod_cli(home.root, "init", "--free-ports")
    data = _secrets(home)
    data["tiled_reader_key"] = "Old-url_safe-base64-key-with-dashes"  # what old pods had
    home.secrets_file.write_text(yaml.safe_dump(data))
    home.secrets_file.chmod(0o600)

    check = beampod_cli(home.root, "config", "check")
    assert "tiled_reader_key" in check.stderr and "beampod init --rotate-keys" in check.stderr
    assert "tiled_writer_key" not in check.stderr

    out = beampod_cli(home.root, "init", "--rotate-keys")
    after = _secrets(home)
    assert "replaced 1 key(s)" in out.stdout and "tiled_reader_key" in out.stdout
    assert "restart" in out.stdout
    assert re.fullmatch(r"[0-9a-f]{64}", after["tiled_reader_key"])
    for value in after.values():
        if isinstance(value, str) and len(value) > 8:
            assert value not in out.stdout + out.stderr  # never printed
    unchanged = {k: v for k, v in data.items() if k != "tiled_reader_key"}
    assert {k: after[k] for k in unchanged} == unchanged
    assert stat.S_IMODE(home.secrets_file.stat().st_mode) == 0o600
    assert not home.secrets_file.with_suffix(".tmp").exists()
    assert "tiled_reader_key" not in beampod_cli(home.root, "config", "check").stderr

    again = beampod_cli(home.root, "init", "--rotate-keys")
    assert "nothing replaced" in again.stdout and _secrets(home) == after

    every = beampod_cli(home.root, "init", "--rotate-keys", "--all")
    rotated = _secrets(home)
    # The pod-wide keys and each instrument's own Tiled and queue keys (and its queue's
    # 0MQ key pair); its bus and Redis passwords stay.
    assert "replaced 10 key(s)" in every.stdout
    assert "instruments.demo.tiled_reader_key" in every.stdout
    assert "instruments.demo.queue_zmq_key_pair" in every.stdout
    assert all(rotated[k] != after[k] for k in API_KEYS)
    inst_keys = (
        "tiled_writer_key",
        "tiled_reader_key",
        "queue_control_key",
        "queue_observer_key",
    )
    before_demo, demo = after["instruments"]["demo"], rotated["instruments"]["demo"]
    assert all(
        demo[k] != before_demo[k] and re.fullmatch(r"[0-9a-f]{64}", demo[k]) for k in inst_keys
    )
    zmq_pair = ("queue_zmq_public_key", "queue_zmq_private_key")
    assert all(demo[k] != before_demo[k] for k in zmq_pair)
    assert {k: v for k, v in demo.items() if k not in (*inst_keys, *zmq_pair)} == {
        k: v for k, v in before_demo.items() if k not in (*inst_keys, *zmq_pair)
    }
    assert {k: v for k, v in rotated.items() if k not in [*API_KEYS, "instruments"]} == {
        k: v for k, v in after.items() if k not in [*API_KEYS, "instruments"]
    }
    for value in [*rotated.values(), *demo.values()]:
        if isinstance(value, str) and len(value) > 8:
            assert value not in every.stdout + every.stderr  # never printed


def test_all_without_rotate_keys_is_a_usage_error(tmp_path: Path) -> None:
    out = beampod_cli(tmp_path / "pod", "init", "--all", check=False)
    assert out.returncode != 0 and "--all only goes with --rotate-keys" in out.stderr
    assert "Traceback" not in out.stderr
