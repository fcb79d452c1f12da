"""Config: init writes what it promises, bad configs list every problem, schema in sync."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from beampod.cli._app import main
from beampod.config import PodHome, init_pod, json_schema, load_pod, parse_config
from beampod.errors import ConfigError

SCHEMA_FILE = Path(__file__).parents[2] / "src" / "beampod" / "config" / "schema.json"


def test_init_writes_commented_config_and_private_secrets(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    assert init_pod(home)
    text = home.config_file.read_text()
    assert text.startswith("# beampod pod configuration")
    assert "demo:" in text and "package: beampod.demo" in text
    assert stat.S_IMODE(home.secrets_file.stat().st_mode) == 0o600
    pod = load_pod(home)
    key = pod.secrets.tiled_writer_key.get_secret_value()
    assert len(key) >= 32
    # Secrets never show up in a repr (logs, tracebacks).
    assert key not in repr(pod.secrets) and key not in str(pod.secrets)
    # A second init changes nothing.
    assert not init_pod(home)
    assert load_pod(home).secrets.tiled_writer_key.get_secret_value() == key


def test_every_bad_key_and_value_is_listed(tmp_path: Path) -> None:
    data = {
        "pod": {"colour": "blue"},
        "instruments": {
            "Bad-Name": {"package": "beampod.demo"},
            "demo": {"package": "not a module", "iocs": [{"family": "bogus", "prefix": "x:"}]},
        },
        "bus": {"transport": "carrier-pigeon"},
        "tiled": {"port": 99999},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    problems = info.value.problems
    assert len(problems) == 6, problems
    joined = "\n".join(problems)
    for fragment in (
        "pod.colour: unknown key",
        "instruments.Bad-Name (name)",
        "instruments.demo.package",
        '"bogus"',
        "bus.transport: must be one of",
        "'carrier-pigeon'",
        "tiled.port",
        "99999",
    ):
        assert fragment in joined


def test_cross_checks(tmp_path: Path) -> None:
    data = {
        "default_instrument": "nope",
        "instruments": {
            "a": {"package": "x", "iocs": [{"family": "simple", "prefix": "p:"}]},
            "b": {"package": "y", "iocs": [{"family": "simple", "prefix": "p:"}]},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    joined = "\n".join(info.value.problems)
    assert "default_instrument 'nope'" in joined and "prefix 'p:' is used by both a and b" in joined


def test_ioc_ports_are_distinct_and_sequential() -> None:
    cfg = parse_config(
        {
            "channel_access": {"port_base": 7000},
            "instruments": {
                "a": {
                    "package": "x",
                    "iocs": [
                        {"family": "simple", "prefix": "s1:"},
                        {"family": "simple", "prefix": "s2:", "port": 7001},
                        {"family": "simple", "prefix": "s3:"},
                    ],
                }
            },
        }
    )
    assert sorted(cfg.ioc_ports().values()) == [7000, 7001, 7002]


def test_cli_bad_config_exits_2_with_one_readable_message(tmp_path: Path, capsys) -> None:
    home = tmp_path / "pod"
    assert main(["--home", str(home), "init"]) == 0
    cfg = yaml.safe_load((home / "config.yaml").read_text())
    cfg["redis"]["port"] = "six-three-seven-nine"
    cfg["queue"]["colour"] = 1
    (home / "config.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["--home", str(home), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "redis.port" in err and "six-three-seven-nine" in err and "queue.colour" in err


def test_cli_unparseable_yaml_names_the_line(tmp_path: Path, capsys) -> None:
    home = tmp_path / "pod"
    main(["--home", str(home), "init"])
    (home / "config.yaml").write_text("instruments:\n  demo: {package: [unclosed\n")
    capsys.readouterr()
    assert main(["--home", str(home), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "line 3, column 1: not valid YAML" in err, err


def test_secrets_readable_by_others_are_refused(tmp_path: Path) -> None:
    home = PodHome(tmp_path)
    init_pod(home)
    home.secrets_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_pod(home)


def test_checked_in_schema_matches_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    from beampod.config.schema import SCHEMA_PATH, render

    assert SCHEMA_PATH == SCHEMA_FILE  # the generator writes the file that is checked in
    assert SCHEMA_FILE.exists(), "run: python -m beampod.config.schema --write"
    checked_in = SCHEMA_FILE.read_text()
    assert checked_in == render(), (
        "src/beampod/config/schema.json is out of date; regenerate it with "
        "`python -m beampod.config.schema --write`"
    )
    # ... and it is what `beampod config schema` prints, i.e. the model's schema.
    assert json.loads(checked_in) == json_schema()
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(checked_in)


def test_health_grace_periods_are_config_keys_with_defaults() -> None:
    demo = {"demo": {"package": "beampod.demo"}}
    health = parse_config({"instruments": demo}).pod.health
    assert (health.degraded_after_s, health.restart_after_s) == (30.0, 60.0)
    set_ = parse_config(
        {"instruments": demo, "pod": {"health": {"degraded_after_s": 5, "restart_after_s": 12}}}
    ).pod.health
    assert (set_.degraded_after_s, set_.restart_after_s) == (5.0, 12.0)
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "instruments": demo,
                "pod": {"health": {"every": 1}},
            }
        )
    joined = "\n".join(info.value.problems)
    assert "pod.health.every: unknown key" in joined
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "instruments": demo,
                "pod": {"health": {"degraded_after_s": 40, "restart_after_s": 20}},
            }
        )
    joined = "\n".join(info.value.problems)
    assert "restart_after_s (20) is less than degraded_after_s (40)" in joined


def test_a_busy_service_is_restarted_no_sooner_than_a_stuck_one() -> None:
    demo = {"demo": {"package": "beampod.demo"}}
    assert parse_config({"instruments": demo}).pod.health.busy_restart_after_s == 600.0
    health = {"restart_after_s": 60, "busy_restart_after_s": 30}
    with pytest.raises(ConfigError) as info:
        parse_config({"instruments": demo, "pod": {"health": health}})
    joined = "\n".join(info.value.problems)
    assert "busy_restart_after_s (30) is less than restart_after_s (60)" in joined
