"""systemd units: one per service, ``Type=exec``, restarted on failure, readiness-ordered.

``ExecStartPre`` runs the service's own preparation (config files, initdb) and writes its
0600 environment file of secrets; ``ExecStartPost`` waits for the service's readiness
probe, so a unit is active only once its service is ready and ``After=`` orders by
readiness, as ``beampod up`` does. A timer per host rotates the pod home's logs, as
the supervisor does under ``beampod up`` (no supervisor runs under systemd).
"""

from __future__ import annotations

import shlex
import signal

from beampod.deploy._plan import DeployOptions, Placed


def _quote(arg: str) -> str:
    # systemd's command-line syntax: double quotes, backslash escapes; "%" and "$" expand.
    if arg and all(c.isalnum() or c in "-_./:=,+@" for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def exec_line(argv: tuple[str, ...]) -> str:
    return " ".join(_quote(a) for a in argv)


def parse_exec(line: str) -> tuple[str, ...]:
    """An ``ExecStart=`` value back into argv (what the no-drift test compares)."""
    return tuple(a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line))


def _env_line(key: str, value: str) -> str:
    text = f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{text.replace("%", "%%").replace("$", "$$")}"'


def unit_text(p: Placed, options: DeployOptions, home: str) -> str:
    spec = p.spec
    python = options.python(p.cycle)
    helper = (python, "-m", "beampod.deploy")
    desc = f"beampod {spec.name}" + (f" of {p.instrument}" if p.instrument else " (central)")
    lines = ["# Rendered by `beampod deploy render`; edit config.yaml and render again.", ""]
    lines += ["[Unit]", f"Description={desc}"]
    deps = [f"{u}.service" for u in p.depends_local]
    lines.append("After=" + " ".join(["network-online.target", *deps]))
    lines.append("Wants=network-online.target")
    if deps:
        lines.append("Requires=" + " ".join(deps))
    for unit, host in p.depends_remote:
        lines.append(f"# Needs {unit}.service on host {host} (another machine: not ordered here)")
    lines.append(f"StartLimitIntervalSec={options.start_limit_interval_sec}")
    lines.append(f"StartLimitBurst={options.start_limit_burst}")
    lines += ["", "[Service]", "Type=exec", f"User={options.user}", f"Group={options.user}"]
    lines += ["UMask=0077", f"WorkingDirectory={home}"]
    for key in sorted(p.env):
        lines.append(_env_line(key, p.env[key]))
    if p.env_file:
        # "-": the first ExecStartPre runs before the file exists; it writes it (0600).
        lines.append(f"EnvironmentFile=-{p.env_file}")
    lines.append("ExecStartPre=" + exec_line((*helper, "prepare", "--home", home, spec.name)))
    lines.append("ExecStart=" + exec_line(p.argv))
    lines.append("ExecStartPost=" + exec_line((*helper, "wait", "--home", home, spec.name)))
    lines.append(f"StandardOutput=append:{home}/logs/{spec.name}.log")
    lines.append("StandardError=inherit")
    lines.append("Restart=on-failure")
    lines.append(f"RestartSec={options.restart_sec}")
    lines.append(f"TimeoutStartSec={int(spec.ready_timeout) + 60}")
    if spec.nice:
        lines.append(f"Nice={spec.nice}")
    lines.append(f"KillSignal={signal.Signals(spec.stop_signal).name}")
    lines.append(f"TimeoutStopSec={int(spec.stop_timeout)}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


#: The unit (a oneshot service and its timer) that rotates a host's logs.
LOG_ROTATION_UNIT = "beampod-logs"
# A python started every few minutes costs little; every 30 s (the supervisor's default
# check) would cost a core-minute every hour or so.
LOG_ROTATION_MIN_INTERVAL_S = 300


def log_rotation_units(
    python: str, options: DeployOptions, home: str, every_s: float
) -> dict[str, str]:
    """``beampod-logs.service`` and its ``.timer``: ``python -m beampod.deploy
    rotate-logs`` every ``every_s`` seconds (at least every 5 minutes' worth)."""
    every = max(LOG_ROTATION_MIN_INTERVAL_S, int(every_s))
    head = ["# Rendered by `beampod deploy render`; edit config.yaml and render again.", ""]
    service = [
        *head,
        "[Unit]",
        "Description=beampod: rotate the logs of the pod home (pod.logs)",
        "",
        "[Service]",
        "Type=oneshot",
        f"User={options.user}",
        f"Group={options.user}",
        "UMask=0077",
        f"WorkingDirectory={home}",
        "ExecStart=" + exec_line((python, "-m", "beampod.deploy", "rotate-logs", "--home", home)),
        "Nice=10",
        "",
    ]
    timer = [
        *head,
        "[Unit]",
        f"Description=beampod: rotate the logs of the pod home every {every} s (pod.logs)",
        "",
        "[Timer]",
        f"OnBootSec={every}",
        f"OnUnitActiveSec={every}",
        f"Unit={LOG_ROTATION_UNIT}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return {
        f"{LOG_ROTATION_UNIT}.service": "\n".join(service),
        f"{LOG_ROTATION_UNIT}.timer": "\n".join(timer),
    }
