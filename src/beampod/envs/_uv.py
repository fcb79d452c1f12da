"""Running ``uv``: one place that turns its failures into one readable line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from beampod.config import CycleSettings
from beampod.errors import CycleEnvError


def uv_bin() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def index_args(cycle: CycleSettings) -> list[str]:
    args: list[str] = []
    if cycle.no_index:
        args.append("--no-index")
    elif cycle.index_url:
        args += ["--index-url", cycle.index_url]
    for link in cycle.find_links:
        args += ["--find-links", link]
    return args


def run_uv(args: list[str], what: str, cwd: Path | None = None) -> str:
    """Run ``uv ARGS``; on failure raise CycleEnvError naming ``what`` and uv's reason."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)  # the target is always explicit (--python/--target)
    env["UV_NO_PROGRESS"] = "1"
    try:
        proc = subprocess.run(
            [uv_bin(), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
        )
    except OSError as exc:
        raise CycleEnvError(f"{what}: cannot run uv ({exc})") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        first = next((i for i, ln in enumerate(lines) if ln.startswith(("error", "\u00d7"))), 0)
        reason = " ".join(ln.removeprefix("\u00d7").strip() for ln in lines[first:]) or "no message"
        reason = reason.removeprefix("error: ")
        if len(reason) > 400:
            reason = reason[:397] + "..."
        raise CycleEnvError(f"{what}: uv failed: {reason}")
    return proc.stdout
