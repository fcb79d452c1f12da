"""Facility config: defaults merge, a pod is a facility of one, and every problem at once."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from beampod.cli._app import main
from beampod.config import (
    HostSettings,
    apply_instrument_defaults,
    effective_hosts,
    facility_problems,
    instrument_queue,
    load_config,
    merge,
    parse_config,
)
from beampod.config._template import render
from beampod.errors import ConfigError

# A package every environment running these tests has, for configs that should pass.
PKG = "beampod.demo"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, *, check_packages: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, check_packages=check_packages)
    return info.value.problems


# -- merge rules -------------------------------------------------------------------


def test_mappings_merge_scalars_and_lists_replace() -> None:
    default = {"a": 1, "m": {"x": 1, "y": {"deep": 1, "keep": 2}}, "l": [1, 2]}
    override = {"a": 2, "m": {"y": {"deep": 9}}, "l": [3]}
    assert merge(default, override) == {
        "a": 2,
        "m": {"x": 1, "y": {"deep": 9, "keep": 2}},
        "l": [3],
    }
    assert merge({"q": {"x": 1}}, {"q": None}) == {"q": None}  # null replaces too
    assert default == {"a": 1, "m": {"x": 1, "y": {"deep": 1, "keep": 2}}, "l": [1, 2]}


def test_instrument_defaults_are_merged_under_each_entry() -> None:
    cfg = parse_config(
        {
            "environments": {"cycles": {"2026-1": {}, "2026-2": {}}},
            "instrument_defaults": {
                "package": PKG,
                "cycle": "2026-1",
                "iocs": [{"family": "simple", "prefix": "{instrument}:simple:"}],
                "queue": {"enabled": True, "user_groups": {"primary": [".*"]}},
                "writer": {"max_batch": 100},
            },
            "instruments": {
                "bl01": None,  # the defaults alone
                "bl02": {
                    "cycle": "2026-2",
                    "queue": {"http_port": 61003, "control_port": 61004, "info_port": 61005},
                    "iocs": [{"family": "thermo_sim", "prefix": "bl02:t:"}],
                },
            },
        }
    )
    bl01, bl02 = cfg.instruments["bl01"], cfg.instruments["bl02"]
    assert bl01.package == bl02.package == PKG
    assert [i.prefix for i in bl01.iocs] == ["bl01:simple:"]
    assert [(i.family, i.prefix) for i in bl02.iocs] == [("thermo_sim", "bl02:t:")]  # replaced
    assert (bl01.cycle, bl02.cycle) == ("2026-1", "2026-2")
    assert bl01.writer.max_batch == bl02.writer.max_batch == 100
    assert bl02.queue is not None and bl02.queue.http_port == 61003
    assert bl02.queue.user_groups == {"primary": [".*"]}  # merged from the defaults
    # The dump re-validates to the same config (the merge is idempotent).
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_instrument_placeholder_without_defaults() -> None:
    cfg = parse_config(
        {
            "instruments": {
                "bl07": {
                    "package": PKG,
                    "iocs": [{"family": "simple", "prefix": "{instrument}:s:"}],
                }
            }
        }
    )
    assert cfg.instruments["bl07"].iocs[0].prefix == "bl07:s:"


def test_config_show_prints_defaults_as_written_and_instruments_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path,
        f"""
        instrument_defaults:
          package: {PKG}
          queue: {{enabled: true}}
        instruments:
          bl01:
            queue: {{http_port: 61000, control_port: 61001, info_port: 61002}}
        """,
    )
    assert main(["--home", str(tmp_path), "config", "show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["instrument_defaults"] == {"package": PKG, "queue": {"enabled": True}}
    bl01 = shown["instruments"]["bl01"]
    assert bl01["package"] == PKG and bl01["queue"]["http_port"] == 61000
    assert parse_config(shown) == load_config(tmp_path / "config.yaml")


def test_a_bad_default_is_reported_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "instrument_defaults": {
                    "package": PKG,
                    "iocs": [{"family": "bogus", "prefix": "{instrument}:x:"}],
                    "queue": {"http_port": 0},
                },
                "instruments": {"bl01": {}, "bl02": {"iocs": []}, "bl03": {}},
            }
        )
    found = info.value.problems
    assert len(found) == 2, found
    assert found[0].startswith("instrument_defaults.iocs.0.family: Input should be")
    assert found[0].endswith('(got "bogus") (inherited by instruments bl01, bl03)')
    assert found[1].startswith("instrument_defaults.queue.http_port:")
    assert found[1].endswith("(inherited by instruments bl01, bl02, bl03)")


def test_merge_leaves_other_shapes_for_validation() -> None:
    assert apply_instrument_defaults([1]) == [1]
    data = {"instrument_defaults": "oops", "instruments": {"a": {}}}
    assert apply_instrument_defaults(data) == data
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(p.startswith("instrument_defaults") for p in info.value.problems)


# -- a pod is a facility of one ---------------------------------------------------------


def test_demo_pod_is_a_facility_of_one() -> None:
    cfg = parse_config(yaml.safe_load(render()))
    assert effective_hosts(cfg) == {"localhost": HostSettings(address="127.0.0.1")}
    demo = cfg.instruments["demo"]
    assert (demo.host, demo.cycle, demo.queue, demo.agent) == ("localhost", None, None, None)
    assert instrument_queue(cfg, "demo") is cfg.queue  # the top-level queue, as before
    assert facility_problems(cfg) == []
    assert sorted(cfg.ioc_ports().values()) == [5064, 5065, 5066, 5067, 5068]
    assert (cfg.hosts, cfg.environments.cycles, cfg.instrument_defaults) == ({}, {}, None)


def test_pod_with_two_instruments_and_one_top_level_queue_stays_valid() -> None:
    cfg = parse_config(
        {
            "instruments": {
                "a": {"package": PKG, "iocs": [{"family": "simple", "prefix": "a:"}]},
                "b": {"package": PKG, "iocs": [{"family": "simple", "prefix": "b:"}]},
            }
        }
    )
    assert instrument_queue(cfg, "a") is cfg.queue  # the default instrument's
    assert instrument_queue(cfg, "b") is None


# -- each problem ---------------------------------------------------------------------


def test_unknown_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        hosts: {{ws1: {{address: 10.0.0.1}}}}
        central_host: ws9
        instruments:
          bl01: {{package: {PKG}, host: ws1}}
          bl02: {{package: {PKG}, host: ws2}}
        """,
    )
    assert problems_of(path) == [
        "central_host: unknown host 'ws9' (hosts: ws1)",
        "instruments.bl02.host: unknown host 'ws2' (hosts: ws1)",
    ]


def test_without_hosts_only_localhost_exists(tmp_path: Path) -> None:
    path = write(tmp_path, f"instruments:\n  bl01: {{package: {PKG}, host: ws1}}\n")
    assert problems_of(path) == ["instruments.bl01.host: unknown host 'ws1' (hosts: localhost)"]


def test_duplicate_instrument_is_not_silently_dropped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        instruments:
          bl01: {{package: {PKG}}}
          bl02: {{package: {PKG}}}
          bl01: {{package: {PKG}}}
        """,
    )
    assert yaml.safe_load(path.read_text())["instruments"].keys() == {"bl01", "bl02"}
    (problem,) = problems_of(path)
    assert problem.startswith("instruments.bl01: duplicate instrument 'bl01' at line 5")
    assert "first at line 3" in problem


def test_duplicate_keys_in_any_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        bus:
          transport: nats
          port: 4300
          port: 4301
        instruments:
          bl01:
            package: {PKG}
            iocs:
              - {{family: simple, prefix: "a:", family: thermo_sim}}
        """,
    )
    found = problems_of(path)
    assert len(found) == 2, found
    assert found[0].startswith("bus.port: duplicate key 'port' at line 5 (first at line 4)")
    assert found[1].startswith("instruments.bl01.iocs.0.family: duplicate key 'family'")


def test_port_clash_across_instruments_on_one_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        instruments:
          bl01:
            package: {PKG}
            iocs: [{{family: simple, prefix: "bl01:", port: 7000}}]
            queue: {{http_port: 61000, control_port: 61001, info_port: 61002}}
          bl02:
            package: {PKG}
            iocs: [{{family: simple, prefix: "bl02:", port: 7000}}]
            queue: {{http_port: 61003, control_port: 61001, info_port: 61005}}
        """,
    )
    assert problems_of(path) == [
        "port 7000 on host 'localhost' is used by both bl01 IOC 'bl01:' and bl02 IOC 'bl02:'",
        "port 61001 on host 'localhost' is used by both bl01 queue.control_port and "
        "bl02 queue.control_port",
    ]


def test_port_clash_with_central_services_on_their_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        hosts:
          central: {{address: 10.0.0.1}}
          ws1: {{address: 10.0.0.2}}
        central_host: central
        bus:
          {{transport: nats, port: 4222, cluster_size: 3, monitor_port: 8222,
           stream: {{replicas: 3}}}}
        tiled: {{port: 8000}}
        redis: {{port: 8000}}
        instruments:
          bl01:
            package: {PKG}
            host: central
            iocs: [{{family: simple, prefix: "bl01:", port: 4224}}]
          bl02:
            package: {PKG}
            host: ws1
            iocs: [{{family: simple, prefix: "bl02:", port: 4223}}]
        """,
    )
    assert problems_of(path) == [
        "port 8000 on host 'central' is used by both central tiled.port and central redis.port",
        "port 4224 on host 'central' is used by both central bus.port+2 and bl01 IOC 'bl01:'",
    ]


def test_same_ports_on_two_hosts_are_fine(tmp_path: Path) -> None:
    queue = "{http_port: 61000, control_port: 61001, info_port: 61002}"
    path = write(
        tmp_path,
        f"""
        hosts:
          ws1: {{address: 10.0.0.1}}
          ws2: {{address: 10.0.0.2}}
        central_host: ws1
        instruments:
          bl01: {{package: {PKG}, host: ws1, queue: {queue}}}
          bl02: {{package: {PKG}, host: ws2, queue: {queue}}}
        """,
    )
    cfg = load_config(path, check_packages=True)
    assert [i.host for i in cfg.instruments.values()] == ["ws1", "ws2"]


def test_missing_package_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        instrument_defaults: {{package: no_such_facility_pkg}}
        instruments:
          bl01: {{}}
          bl02: {{}}
          bl03: {{package: {PKG}}}
          bl04: {{package: beampod.no_such_module}}
        """,
    )
    found = problems_of(path)
    assert len(found) == 2, found
    assert found[0].startswith("instruments bl01, bl02 (package): package 'no_such_facility_pkg'")
    assert found[1].startswith("instruments.bl04.package: package 'beampod.no_such_module'")
    assert "not installed" in found[0] and "PYTHONPATH" in found[0]
    assert "no_such_facility_pkg" not in sys.modules
    # Without the package check (beampod up, the services) the file is valid.
    assert list(load_config(path).instruments) == ["bl01", "bl02", "bl03", "bl04"]


def test_unknown_cycle_when_cycles_are_declared(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        environments: {{cycles: {{"2026-1": {{}}}}}}
        instruments:
          bl01: {{package: {PKG}, cycle: "2026-1"}}
          bl02: {{package: {PKG}, cycle: "2025-3"}}
          bl03: {{package: {PKG}}}
        """,
    )
    assert problems_of(path) == ["instruments.bl02.cycle: unknown cycle '2025-3' (cycles: 2026-1)"]
    # Without declared cycles any name is accepted.
    write(tmp_path, f"instruments:\n  bl01: {{package: {PKG}, cycle: anything}}\n")
    assert load_config(path).instruments["bl01"].cycle == "anything"


# -- all at once, through the command line ----------------------------------------------


ALL_PROBLEMS = """\
hosts: {ws1: {address: 127.0.0.1}}
central_host: ws1
environments: {cycles: {"2026-1": {}}}
instrument_defaults:
  host: ws1
  package: beampod.demo
  cycle: "2026-1"
instruments:
  bl01:
    queue: {http_port: 61000, control_port: 61001, info_port: 61002}
  bl02:
    host: ws7
    queue: {http_port: 61003, control_port: 61004, info_port: 61005}
  bl03:
    cycle: "1999-1"
    package: nowhere_to_be_found
    queue: {http_port: 61000, control_port: 61007, info_port: 61008}
  bl02:
    queue: {http_port: 61009, control_port: 61010, info_port: 61011}
"""


def test_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text(ALL_PROBLEMS)
    assert main(["config", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4, err
    assert lines[0].startswith("  - instruments.bl02: duplicate instrument 'bl02' at line 18")
    assert lines[1].startswith("  - instruments.bl03.package: package 'nowhere_to_be_found'")
    assert lines[2:] == [
        "  - instruments.bl03.cycle: unknown cycle '1999-1' (cycles: 2026-1)",
        "  - port 61000 on host 'ws1' is used by both bl01 queue.http_port and "
        "bl03 queue.http_port",
    ]
    # The second bl02 entry is the one YAML keeps, on host ws1: its first entry's host
    # is not checked. Fix the duplicate and the unknown host shows up too.
    fixed = ALL_PROBLEMS.rsplit("  bl02:\n", 1)[0]
    (tmp_path / "config.yaml").write_text(fixed)
    assert main(["config", "check", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "instruments.bl02.host: unknown host 'ws7' (hosts: ws1)" in err
    assert "duplicate" not in err


def test_config_check_of_a_home_also_checks_packages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "pod"
    assert main(["--home", str(home), "init"]) == 0
    cfg = (home / "config.yaml").read_text().replace("package: beampod.demo", "package: nope_x")
    (home / "config.yaml").write_text(cfg)
    capsys.readouterr()
    assert main(["--home", str(home), "config", "check"]) == 2
    assert "instruments.demo.package: package 'nope_x' is not installed" in capsys.readouterr().err
