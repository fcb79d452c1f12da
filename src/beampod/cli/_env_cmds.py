"""``beampod env``: cycle environments (lock, build, list, check, pack) and overlays."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from beampod.cli._common import pod_of, table
from beampod.errors import CycleEnvError

if TYPE_CHECKING:
    from beampod.envs import EnvLayout


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("env", help="read-only Python environments per cycle, overlays")
    esub = p.add_subparsers(dest="env_cmd", required=True, metavar="ACTION")
    lock = esub.add_parser("lock", help="resolve a cycle's requirements into envs/CYCLE.lock.txt")
    lock.add_argument("cycle")
    lock.set_defaults(func=cmd_lock)
    build = esub.add_parser("build", help="build a cycle's read-only environment from its lock")
    build.add_argument("cycle")
    build.set_defaults(func=cmd_build)
    lst = esub.add_parser("list", help="cycles, where they are installed, who uses them, state")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
    check = esub.add_parser("check", help="verify an environment against its manifest")
    check.add_argument("cycle")
    check.set_defaults(func=cmd_check)
    ov = esub.add_parser("overlay", help="an instrument's overlay: install, remove, list")
    ov.add_argument("instrument")
    ovsub = ov.add_subparsers(dest="overlay_cmd", required=True, metavar="ACTION")
    inst = ovsub.add_parser("install", help="install packages into the overlay")
    inst.add_argument("requirements", nargs="+")
    inst.add_argument("--no-deps", action="store_true", help="install only what is named")
    inst.add_argument("--cycle", default=None, help="default: the instrument's cycle")
    inst.set_defaults(func=cmd_overlay_install)
    rem = ovsub.add_parser("remove", help="remove packages from the overlay")
    rem.add_argument("names", nargs="+")
    rem.add_argument("--cycle", default=None)
    rem.set_defaults(func=cmd_overlay_remove)
    ls = ovsub.add_parser("list", help="packages in the overlay")
    ls.set_defaults(func=cmd_overlay_list)
    diff = esub.add_parser("diff", help="which overlay packages shadow which base ones")
    diff.add_argument("instrument")
    diff.add_argument("--cycle", default=None)
    diff.set_defaults(func=cmd_diff)
    pack = esub.add_parser("pack", help="pack a built environment into FILE (+ FILE.sha256)")
    pack.add_argument("cycle")
    pack.add_argument("-o", "--output", required=True, type=Path)
    pack.set_defaults(func=cmd_pack)
    unpack = esub.add_parser("unpack", help="check and unpack a packed environment at DEST")
    unpack.add_argument("file", type=Path)
    unpack.add_argument("dest", type=Path)
    unpack.set_defaults(func=cmd_unpack)


def _layout(args: argparse.Namespace) -> EnvLayout:
    from beampod.envs import EnvLayout

    # Environments and overlays are shared software trees that staff and users read (and
    # an overlay's staff write); they never hold secrets. So they are made with the usual
    # umask, whatever a pod command set before in this process (the pod's own 077).
    os.umask(0o022)
    return EnvLayout(pod_of(args))


def cmd_lock(args: argparse.Namespace) -> int:
    from beampod.envs import lock_cycle, requirements_of

    layout = _layout(args)
    lock = lock_cycle(layout, args.cycle)
    pins = [ln for ln in lock.read_text().splitlines() if ln and ln[0] not in "# "]
    print(
        f"locked {args.cycle}: {len(requirements_of(layout, args.cycle))} requirements -> "
        f"{len(pins)} pinned packages with hashes in {lock}"
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from beampod.envs import build_cycle

    layout = _layout(args)
    t0 = time.monotonic()
    manifest = build_cycle(layout, args.cycle)
    print(
        f"built {args.cycle} in {time.monotonic() - t0:.1f} s: {len(manifest['packages'])} "
        f"packages, {len(manifest['files'])} files, read-only, at {layout.env_dir(args.cycle)}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from beampod.envs import list_cycles

    statuses = list_cycles(_layout(args))
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
        return 0
    if not statuses:
        print("no cycles: add environments.cycles to config.yaml (docs/environments.md)")
        return 0
    rows = [
        [s.cycle, s.state, str(s.packages), ",".join(s.instruments) or "-", s.path or "-"]
        for s in statuses
    ]
    print(table(rows, ["cycle", "state", "packages", "instruments", "path"]))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from beampod.envs import check_cycle

    problems = check_cycle(_layout(args), args.cycle)
    for line in problems:
        print(line)
    if problems:
        raise CycleEnvError(f"cycle {args.cycle!r}: {len(problems)} files differ from its manifest")
    print(f"cycle {args.cycle!r}: every file matches its manifest")
    return 0


def _print_packages(pkgs: dict[str, str]) -> None:
    for name, version in pkgs.items():
        print(f"{name}=={version}")


def cmd_overlay_install(args: argparse.Namespace) -> int:
    from beampod.envs import overlay_install

    _print_packages(
        overlay_install(_layout(args), args.instrument, args.requirements, args.cycle, args.no_deps)
    )
    return 0


def cmd_overlay_remove(args: argparse.Namespace) -> int:
    from beampod.envs import overlay_remove

    left = overlay_remove(_layout(args), args.instrument, args.names, args.cycle)
    print(f"removed {', '.join(args.names)} from the overlay of {args.instrument!r}")
    _print_packages(left)
    return 0


def cmd_overlay_list(args: argparse.Namespace) -> int:
    from beampod.envs import overlay_packages

    _print_packages(overlay_packages(_layout(args), args.instrument))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from beampod.envs import overlay_diff

    shadows = overlay_diff(_layout(args), args.instrument, args.cycle)
    if not shadows:
        print(f"the overlay of {args.instrument!r} is empty: the base is used as built")
        return 0
    rows = [[s.name, s.overlay_version, s.base_version or "(not in base)"] for s in shadows]
    print(table(rows, ["package", "overlay", "base"]))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from beampod.envs import pack_cycle

    t0 = time.monotonic()
    out, sha = pack_cycle(_layout(args), args.cycle, args.output)
    print(
        f"packed {args.cycle} in {time.monotonic() - t0:.1f} s: {out} "
        f"({out.stat().st_size / 1e6:.1f} MB), {sha}"
    )
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from beampod.envs import unpack_env

    os.umask(0o022)  # a shared software tree, as in _layout

    t0 = time.monotonic()
    manifest = unpack_env(args.file, args.dest)
    print(
        f"unpacked {manifest['cycle']} in {time.monotonic() - t0:.1f} s at {args.dest}: "
        f"{len(manifest['packages'])} packages, every file checked, read-only"
    )
    return 0
