"""Pod lifecycle: init, up, down, status, logs, config."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from beampod._headstart import UP_TIMEOUT_S
from beampod._spawning import live_supervisor_pid
from beampod.cli._common import home_of, human_duration, progress, table
from beampod.cli._lines import owner_only, pod_ready, starting
from beampod.cli._runtime import check_instrument_runtimes
from beampod.config import (
    HOST_ENV,
    LoadedPod,
    PodHome,
    check_host,
    host_placement,
    init_pod,
    json_schema,
    load_config,
    load_pod,
    rotate_keys,
    this_host,
    unusable_keys,
)
from beampod.errors import PodAlreadyRunningError, UsageError

if TYPE_CHECKING:
    from beampod.services import PodState


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a commented config and generated secrets")
    p.add_argument("--home", dest="init_home", metavar="DIR", help="pod home to initialise")
    p.add_argument(
        "--free-ports",
        action="store_true",
        help="pick free ports instead of the standard ones (CI, several pods)",
    )
    p.add_argument("--force", action="store_true", help="overwrite config and secrets")
    p.add_argument(
        "--rotate-keys",
        action="store_true",
        help="regenerate the API keys some client cannot use (keeps every other secret)",
    )
    p.add_argument(
        "--all", dest="rotate_all", action="store_true", help="with --rotate-keys: every API key"
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("up", help="start every service of the pod")
    p.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="run in the background; return once every service is ready",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=UP_TIMEOUT_S,
        help="with -d: give up after this many seconds in which no service changed state",
    )
    p.add_argument(
        "--host",
        metavar="NAME",
        help="start only the services placed on host NAME of the config (its central "
        "services or instruments); clients reach other hosts at their address. Same as "
        "BEAMPOD_HOST=NAME. Default: every host, on this machine",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop the pod (graceful, then kill)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="show services: state, pid, address, health")
    p.add_argument("--json", action="store_true", help="everything, memory included, as JSON")
    p.add_argument(
        "--resources",
        action="store_true",
        help="resident memory, CPU and uptime of the supervisor and each service",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="show a service's log (the supervisor's by default)")
    p.add_argument("service", nargs="?", default="supervisor")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("service", help="stop, start or restart one service of the running pod")
    p.add_argument("action", choices=["stop", "start", "restart"])
    p.add_argument("name", help="service name, as in `beampod status`")
    p.set_defaults(func=cmd_service)

    p = sub.add_parser("config", help="show, check or describe the configuration")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    csub.add_parser("show", help="the effective configuration, defaults filled in").set_defaults(
        func=cmd_config_show
    )
    csub.add_parser("schema", help="the JSON schema of the config file").set_defaults(
        func=cmd_config_schema
    )
    c = csub.add_parser("check", help="validate config and secrets (or one config file)")
    c.add_argument(
        "path",
        nargs="?",
        help="a config file, or a directory holding config.yaml (a facility repository): "
        "check only that file, no secrets",
    )
    c.set_defaults(func=cmd_config_check)


def cmd_init(args: argparse.Namespace) -> int:
    home = PodHome.resolve(args.init_home or args.home)
    owner_only(home)
    if args.rotate_keys:
        return _rotate_keys(home, every=args.rotate_all)
    if args.rotate_all:
        raise UsageError("--all only goes with --rotate-keys")
    wrote = init_pod(home, free_ports=args.free_ports, force=args.force)
    if wrote:
        _record_head_start(home)
        print(f"initialised pod home {home.root}")
        print(f"  config:  {home.config_file}")
        print(f"  secrets: {home.secrets_file} (mode 0600)")
    else:
        print(f"pod home {home.root} is already initialised (use --force to start over)")
    return 0


def _rotate_keys(home: PodHome, *, every: bool) -> int:
    if not home.is_initialised():
        raise UsageError(f"{home.root} is not an initialised pod home: run `beampod init`")
    replaced = rotate_keys(home.secrets_file, every=every)
    if not replaced:
        print("every API key is already usable by every client: nothing replaced")
        print("  (`beampod init --rotate-keys --all` replaces them all anyway)")
        return 0
    _record_head_start(home)  # its key follows the secrets' bytes
    print(f"replaced {len(replaced)} key(s) in {home.secrets_file}: {', '.join(replaced)}")
    print("  the values are not printed; clients get them with `beampod connect`")
    print("  a running pod still uses the old keys: restart it (`beampod down; beampod up -d`)")
    return 0


def _record_head_start(home: PodHome) -> None:
    """So that the first `up -d` of this config has its head start too (ADR 0035)."""
    from beampod.services import record_head_start

    record_head_start(load_pod(home))


def _warn_keys(pod: LoadedPod) -> None:
    bad = unusable_keys(pod.secrets)
    if bad:
        print(
            f"warning: {pod.home.secrets_file}: {', '.join(bad)} contain characters outside "
            "[A-Za-z0-9_] that some clients reject (tiled's client ignores such a key); "
            "run `beampod init --rotate-keys`, then restart the pod",
            file=sys.stderr,
        )


def cmd_up(args: argparse.Namespace) -> int:
    from beampod.services import run_supervisor, start_detached

    home = home_of(args)
    owner_only(home)
    if live_supervisor_pid(home) is not None:  # before "starting pod ...": nothing starts
        raise PodAlreadyRunningError(home.root)
    if not home.is_initialised():
        init_pod(home)
        print(f"initialised pod home {home.root}")
    pod = load_pod(home)  # a bad config fails here, before anything starts
    if args.host:
        check_host(pod.config, args.host)
        # The supervisor and every service it starts inherit it (beampod.config._addresses).
        os.environ[HOST_ENV] = args.host
    this_host(pod.config)  # a BEAMPOD_HOST the config does not know fails here
    # pod.background_cpus naming a CPU this machine does not have fails here too.
    host_placement(pod.config, this_host(pod.config), home.config_file)
    _warn_keys(pod)
    check_instrument_runtimes(pod)  # a broken overlay, too (docs/environments.md)
    started = time.monotonic()
    if args.detach:
        starting(home)
        state = start_detached(home, progress, timeout=args.timeout)
        pod_ready(len(state.services), time.monotonic() - started)
        return 0
    print(f"starting pod from {home.root} (Ctrl-C stops it) ...", flush=True)
    from beampod._lazy import defer_imports
    from beampod.services import SUPERVISOR_DEFERRED_IMPORTS

    defer_imports(SUPERVISOR_DEFERRED_IMPORTS)  # as the detached supervisor does
    return run_supervisor(home, progress)


def cmd_down(args: argparse.Namespace) -> int:
    from beampod.services import stop_pod

    home = home_of(args)
    if stop_pod(home, progress, timeout=args.timeout):
        print("pod stopped")
    else:
        print(f"no pod is running from {home.root}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from beampod.services import pod_status

    state = pod_status(home_of(args))
    now = time.time()
    if args.resources and not args.json:
        return _print_resources(state)
    if args.json:
        from beampod.services import pod_resources

        out = state.to_json()
        pids = {name: svc.pid for name, svc in state.services.items()}
        out["resources"] = pod_resources(
            state.supervisor_pid, pids, forkserver_pid=state.forkserver_pid
        ).to_json()
        for svc in out["services"].values():
            svc["uptime_s"] = (
                round(now - svc["ready_at"], 1)
                if svc.get("ready_at") and svc["state"] == "ready"
                else None
            )
        print(json.dumps(out, indent=2))
        return 0
    header = ["service", "state", "pid", "address", "health", "restarts", "uptime"]
    pinned = any(svc.cpus for svc in state.services.values())
    if pinned:
        header.append("cpus")
    print(f"pod {state.phase}  (supervisor pid {state.supervisor_pid})")
    if state.placement:
        print(f"CPU placement: {state.placement}")
    rows: list[list[str]] = []
    groups: dict[str, list[list[str]]] = {}
    for svc in state.services.values():
        up = svc.ready_at is not None and svc.state == "ready"
        uptime = human_duration(now - svc.ready_at) if up and svc.ready_at else "-"
        health = svc.health or svc.message or "-"
        row = [
            svc.name,
            svc.state,
            str(svc.pid or "-"),
            svc.address or "-",
            health[:60],
            str(svc.restarts),
            uptime,
        ]
        if pinned:
            row.append(svc.cpus or "-")
        rows.append(row)
        groups.setdefault(svc.instrument, []).append(row)
    if len([g for g in groups if g]) <= 1:  # one instrument: one table, as always
        print(table(rows, header))
    else:  # a facility: the central services, then each instrument's
        for name in sorted(groups, key=lambda g: (g != "", g)):
            print(f"\n{'central' if name == '' else f'instrument {name}'}")
            print(table(groups[name], header))
    return 0 if all(s.state == "ready" for s in state.services.values()) else 1


def _print_resources(state: PodState) -> int:
    from beampod.services import Usage, pod_resources

    pids = {name: svc.pid for name, svc in state.services.items()}
    res = pod_resources(
        state.supervisor_pid, pids, interval=0.5, forkserver_pid=state.forkserver_pid
    )

    def row(name: str, u: Usage | None) -> list[str]:
        if u is None:
            return [name, "-", "-", "-", "-"]
        cpu = "-" if u.cpu_percent is None else f"{u.cpu_percent:.1f}"
        pid = str(u.pid) if u.processes == 1 else f"{u.pid} (+{u.processes - 1})"
        return [name, pid, f"{u.rss_bytes / 2**20:.1f}", cpu, human_duration(u.uptime_s)]

    rows = [row("(supervisor)", res.supervisor)]
    if res.forkserver is not None:
        rows.append(row("(forkserver)", res.forkserver))
    rows += [row(name, res.services.get(name)) for name in state.services]
    cpu_total = sum(
        u.cpu_percent or 0.0
        for u in [res.supervisor, res.forkserver, *res.services.values()]
        if u is not None
    )
    rows.append(["total", "", f"{res.total_rss_bytes / 2**20:.1f}", f"{cpu_total:.1f}", ""])
    print(table(rows, ["service", "pid", "rss MB", "cpu %", "uptime"]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    home = home_of(args)
    path = home.log_file(args.service)
    if not path.exists():
        known = sorted(p.stem for p in home.logs_dir.glob("*.log"))
        names = ", ".join(known) or "none"
        raise UsageError(f"no log for service {args.service!r}; known: {names}")
    from beampod.services import LogFollower, tail

    follower = LogFollower(path) if args.follow else None
    text = tail(path, args.lines)
    if text:
        print(text)
    if follower is None:
        return 0
    while True:  # followed until Ctrl-C, like `tail -F`, across rotations
        chunk = follower.read()
        if chunk:
            print(chunk.decode(errors="replace"), end="", flush=True)
        else:
            time.sleep(0.2)


def cmd_service(args: argparse.Namespace) -> int:
    from beampod.services import control_service

    control_service(home_of(args), args.action, args.name)
    done = {
        "stop": "stopped (it stays down until `beampod service start`)",
        "start": "starting",
        "restart": "restarted",
    }[args.action]
    print(f"{args.name}: {done}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = load_config(home_of(args).config_file)
    shown = config.model_dump(mode="json")
    if config.instrument_defaults is not None:
        # As written; its merged result is shown under each instrument.
        shown["instrument_defaults"] = config.instrument_defaults.model_dump(
            mode="json", exclude_unset=True
        )
    print(yaml.safe_dump(shown, sort_keys=False), end="")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    if args.path:
        path = Path(args.path)
        file = path / "config.yaml" if path.is_dir() else path
        config = load_config(file, check_packages=True)
    else:
        home = home_of(args)
        owner_only(home)
        file = home.config_file
        load_config(file, check_packages=True)
        pod = load_pod(home)
        _warn_keys(pod)
        config = pod.config
    # The CPUs of this machine: the placement of the host(s) that run here.
    host_placement(config, this_host(config), file)
    names = ", ".join(config.instruments)
    if len(config.instruments) > 6:
        names = f"{len(config.instruments)} ({', '.join(list(config.instruments)[:3])}, …)"
    print(
        f"config OK: {file} (instruments: {names}; bus: "
        f"{config.bus.transport}; store: {config.store.backend})"
    )
    return 0
