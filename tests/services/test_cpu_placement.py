"""pod.background_cpus: the background services on their CPUs, a RunEngine on the rest.

A real pod (``beampod up -d``): every thread of every service's processes has the
configured CPUs in /proc/PID/task/TID/status ``Cpus_allowed_list``; the queue server's
worker and a session's RunEngine process have the others. The rules of the setting
(``auto``, ``off``, a list; a CPU the machine does not have) are checked directly and
through ``beampod config check``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from tests.conftest import beampod_cli
from tests.datapath._helpers import event_table, run_lookup, wait_for

from beampod.config import (
    format_cpu_list,
    host_placement,
    parse_config,
    parse_cpu_list,
    placement_problems,
    resolve_placement,
)
from beampod.errors import ConfigError

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs CPU affinity and 2 CPUs")


def _allowed(pid: int) -> set[str]:
    """The Cpus_allowed_list of every live thread of ``pid``."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out.add(line.split(":", 1)[1].strip())
    return out


def test_cpu_lists_parse_and_print_like_proc() -> None:
    assert parse_cpu_list("0,2-4, 7") == {0, 2, 3, 4, 7}
    assert format_cpu_list({0, 2, 3, 4, 7}) == "0,2-4,7"
    for bad in ("", "1-", "a", "3-1", "1,,2"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_auto_pins_only_with_two_cpus_and_leaves_the_runengine_the_lower_half() -> None:
    one = resolve_placement("auto", frozenset({3}))
    assert not one.pinned and "one CPU" in one.describe()
    two = resolve_placement("auto", frozenset({0, 1}))
    assert (two.background, two.runengine) == ({1}, {0})
    eight = resolve_placement("auto", frozenset(range(8)))
    assert (eight.background, eight.runengine) == (set(range(4, 8)), set(range(4)))
    off = resolve_placement("off", frozenset({0, 1}))
    assert not off.pinned and off.describe() == ""  # `status` says nothing
    listed = resolve_placement("2-3", frozenset(range(4)))
    assert (listed.background, listed.runengine) == ({2, 3}, {0, 1})


def test_a_list_must_name_cpus_of_this_machine_and_leave_one() -> None:
    with pytest.raises(ValueError, match="CPU 7 does not exist"):
        resolve_placement("1,7", frozenset({0, 1}))
    with pytest.raises(ValueError, match="takes every CPU"):
        resolve_placement("0-1", frozenset({0, 1}))


def test_a_host_setting_wins_and_each_is_checked() -> None:
    cfg = parse_config(
        {
            "pod": {"background_cpus": "off"},
            "hosts": {"a": {"address": "a", "background_cpus": "9999"}, "b": {"address": "b"}},
            "central_host": "a",
            "instruments": {"bl01": {"package": "beampod.demo", "host": "b"}},
        }
    )
    assert placement_problems(cfg, "b") == []  # the pod's 'off'
    assert placement_problems(cfg, "a") == [
        f"hosts.a.background_cpus: CPU 9999 does not exist or may not be used here "
        f"(this machine gives beampod CPU {format_cpu_list(set(CPUS))})"
    ]
    with pytest.raises(ConfigError, match="not 'auto', 'off' or a CPU list"):
        parse_config({"pod": {"background_cpus": "fast"}, "instruments": {"bl01": {}}})


def test_auto_is_the_default_and_pins_a_host_of_one_instrument_only() -> None:
    demo = {"package": "beampod.demo"}
    cfg = parse_config(
        {
            "hosts": {"a": {"address": "a"}, "b": {"address": "b"}, "c": {"address": "c"}},
            "central_host": "c",
            "instruments": {"bl01": demo | {"host": "a"}, "bl02": demo | {"host": "a"}}
            | {"bl03": demo | {"host": "b"}},
        }
    )
    assert cfg.pod.background_cpus == "auto"
    # Two instruments' RunEngines would share half the CPUs, all their services the rest.
    shared = host_placement(cfg, "a", "config.yaml")
    assert not shared.pinned and shared.describe() == "unpinned ('auto' on a host of 2 instruments)"
    assert not host_placement(cfg, None, "config.yaml").pinned  # every host runs here
    alone = host_placement(cfg, "b", "config.yaml")
    assert alone.pinned == (len(CPUS) >= 2)
    # The central services' host runs no RunEngine to keep CPUs for.
    central = host_placement(cfg, "c", "config.yaml")
    assert (
        not central.pinned and central.describe() == "unpinned ('auto' on a host of no instruments)"
    )


def test_config_check_names_a_cpu_the_machine_does_not_have(tmp_path: Path) -> None:
    beampod_cli(tmp_path, "init", "--free-ports")
    cfg_file = tmp_path / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["pod"]["background_cpus"] = "4095"
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = beampod_cli(tmp_path, "config", "check", check=False)
    assert proc.returncode != 0
    assert "pod.background_cpus: CPU 4095 does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = beampod_cli(tmp_path, "up", "-d", check=False)
    assert proc.returncode != 0 and "CPU 4095 does not exist" in proc.stderr


@pytest.fixture(scope="module")
def pinned_pod() -> Iterator[Any]:
    from tests._pods import started_pod

    def config(cfg: dict[str, Any]) -> None:
        cfg["pod"]["background_cpus"] = str(CPUS[-1])
        cfg["instruments"]["demo"]["writer"]["max_batch"] = 50  # a backlog in a few runs
        cfg["agent"]["enabled"] = False
        cfg["web"]["enabled"] = False

    yield from started_pod(config, prefix="beampod-pinned-")


@needs_two_cpus
def test_services_run_on_the_background_cpus_and_runengines_on_the_rest(
    pinned_pod: Any,
) -> None:
    background = str(CPUS[-1])
    rest = format_cpu_list(set(CPUS) - {CPUS[-1]})
    root = pinned_pod.home.root
    status = json.loads(beampod_cli(root, "status", "--json").stdout)
    assert status["runengine_cpus"] == rest
    assert {s["cpus"] for s in status["services"].values()} == {background}
    assert f"CPU {background}" in beampod_cli(root, "status").stdout

    # The queue server's worker, one of the watchdog's two children (the RE Manager, and
    # the worker of the environment `up` opened): the one on the RunEngine's CPUs. Not
    # "the younger": on a loaded machine the watchdog may have restarted the manager.
    watchdog = psutil.Process(status["services"]["queue"]["pid"])

    def on_runengine_cpus() -> list[int]:
        found = []
        for child in watchdog.children():
            with contextlib.suppress(OSError):  # ended meanwhile
                if _allowed(child.pid) == {rest}:
                    found.append(child.pid)
        return found

    def children_threads() -> str:
        """Each child's threads' CPUs, for a failure's message."""
        lines = []
        for child in watchdog.children():
            with contextlib.suppress(OSError):
                lines.append(f"{child.pid} {child.cmdline()[-3:]}: {sorted(_allowed(child.pid))}")
        return "; ".join(lines)

    wait_for(lambda: len(watchdog.children()) == 2, 60.0, "the queue worker")
    try:
        wait_for(lambda: len(on_runengine_cpus()) == 1, 60.0, "the worker on the RunEngine's CPUs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the watchdog's children: {children_threads()}") from None
    (worker,) = on_runengine_cpus()

    for name, svc in status["services"].items():
        leader = psutil.Process(svc["pid"])
        for proc in [leader, *leader.children(recursive=True)]:
            if proc.pid != worker:
                assert _allowed(proc.pid) == {background}, (name, proc.pid, proc.cmdline())

    # A session's RunEngine (`beampod shell`/`run` make theirs the same way).
    code = (
        "import os, sys\nfrom pathlib import Path\n"
        "from beampod.config import PodHome, load_pod\n"
        "from beampod.session import make_run_engine\n"
        "RE = make_run_engine(load_pod(PodHome(Path(sys.argv[1]))), publish=False)\n"
        "RE.loop.call_soon_threadsafe(lambda: None)  # its loop thread runs\n"
        "tids = os.listdir('/proc/self/task')\n"
        "print(sorted({str(sorted(os.sched_getaffinity(int(t)))) for t in tids}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
    )
    assert out.returncode == 0, out.stderr
    expected = [str(sorted(set(CPUS) - {CPUS[-1]}))]
    assert out.stdout.strip().splitlines()[-1] == str(expected), out.stderr


@needs_two_cpus
def test_a_writer_storing_a_backlog_borrows_the_runengines_cpus(pinned_pod: Any) -> None:
    """While its batches come full (a backlog after it was down) the writer runs on
    every CPU; with the first batch that is not, it is back on the background CPUs."""
    root, home = pinned_pod.home.root, pinned_pod.home
    background, every = str(CPUS[-1]), format_cpu_list(set(CPUS))
    log = home.log_file("writer")
    beampod_cli(root, "service", "stop", "writer")
    try:
        code = "print('UID', RE(count([pinhole], 400))[0])"
        out = beampod_cli(root, "shell", "-c", code).stdout
    finally:
        offset = log.stat().st_size
        beampod_cli(root, "service", "start", "writer")
    uid = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("UID "))
    lookup = run_lookup(pinned_pod)

    def stored() -> bool:
        run = lookup(uid)
        return bool(run.metadata.get("stop")) and len(event_table(run)) == 400

    wait_for(stored, 120.0, "the 400 events in Tiled")
    live = f"at the live edge: on CPU {background}"
    wait_for(lambda: live in log.read_bytes()[offset:].decode(), 30.0, "back at the live edge")
    text = log.read_bytes()[offset:].decode()
    backlog = f"storing a backlog: on CPU {every}"
    assert backlog in text and text.index(backlog) < text.index(live), text
    status = json.loads(beampod_cli(root, "status", "--json").stdout)
    assert _allowed(status["services"]["writer"]["pid"]) == {background}
