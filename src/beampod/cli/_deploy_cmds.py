"""``beampod deploy render|check``: deployment files from the facility's configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from beampod.config import load_config, unreachable_hosts
from beampod.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="render systemd units, Ansible and compose files per host")
    dsub = p.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)
    r = dsub.add_parser("render", help="render deployment files for every host of the config")
    r.add_argument(
        "--target",
        action="append",
        choices=["systemd", "ansible", "compose"],
        help="what to render (repeatable; default: all three; ansible includes the units)",
    )
    r.add_argument("--out", required=True, help="directory to write into")
    r.add_argument(
        "--config", help="config file or facility directory (default: the pod home's config)"
    )
    r.add_argument("--diff", action="store_true", help="print a unified diff before writing")
    r.add_argument(
        "--environments",
        default="",
        help="root of the cycle environments on the hosts (<root>/<cycle>/bin/python; "
        "default: the config's environments.root, else /opt/beampod/environments)",
    )
    r.add_argument(
        "--overlays",
        default="",
        help="root of the per-instrument overlays on the hosts (<root>/<instrument>; "
        "default: the config's environments.overlays, else /opt/beampod/overlays)",
    )
    r.add_argument(
        "--pod-home",
        default="",
        help="pod home on the hosts (default: /var/lib/beampod/<pod name>)",
    )
    r.add_argument("--user", default="beampod", help="service user on the hosts")
    r.set_defaults(func=cmd_render)
    c = dsub.add_parser("check", help="validate rendered files with ansible, systemd-analyze")
    c.add_argument("dir", help="the directory `deploy render` wrote")
    c.set_defaults(func=cmd_check)


def _config_file(args: argparse.Namespace) -> Path:
    if args.config:
        path = Path(args.config)
        return path / "config.yaml" if path.is_dir() else path
    from beampod.cli._common import home_of

    return home_of(args).config_file


def cmd_render(args: argparse.Namespace) -> int:
    from beampod.deploy import DeployOptions, diff, render, write

    for name, value in (
        ("--environments", args.environments),
        ("--overlays", args.overlays),
        ("--pod-home", args.pod_home),
    ):
        if value and not value.startswith("/"):
            raise UsageError(f"{name} must be an absolute path on the hosts, got {value!r}")
    file = _config_file(args)
    config = load_config(file)
    for name, value, option, given in (
        ("environments.root", config.environments.root, "--environments", args.environments),
        ("environments.overlays", config.environments.overlays, "--overlays", args.overlays),
    ):
        if value and not given and not value.startswith("/"):
            raise UsageError(
                f"{file}: {name} is {value!r}, not an absolute path the hosts can use: "
                f"make it absolute or pass {option}"
            )
    options = DeployOptions(
        environments=args.environments.rstrip("/"),
        overlays=args.overlays.rstrip("/"),
        home=args.pod_home.rstrip("/"),
        user=args.user,
    )
    targets = tuple(args.target or ("systemd", "ansible", "compose"))
    rendered = render(config, file.read_bytes(), targets, options)
    out = Path(args.out)
    if args.diff:
        sys.stdout.write(diff(rendered, out))
    changed = write(rendered, out)
    print(f"rendered {len(rendered)} files into {out} ({len(changed)} changed)")
    for line in unreachable_hosts(config):
        print(f"note: {line}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from beampod.deploy import check

    out = Path(args.dir)
    if not out.is_dir():
        raise UsageError(f"no such directory: {out}")
    results = check(out)
    if not results:
        raise UsageError(f"nothing rendered in {out}: run `beampod deploy render --out {out}`")
    for r in results:
        print(f"{r.status:8} {r.name}")
        for line in r.detail.splitlines():
            print(f"         {line}")
    return 1 if any(r.status == "failed" for r in results) else 0
