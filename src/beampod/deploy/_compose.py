"""docker compose: one file per host, one service per ServiceSpec, the same command.

``network_mode: host`` keeps the loopback binds of the configuration; the pod home is
mounted at the same path, so every path in the commands is valid inside the container.
The image (``<image>:<cycle>``) must hold the cycle environment at its path.
"""

from __future__ import annotations

import signal
from typing import Any

from beampod.deploy._plan import DeployOptions, Placed


def compose(host: str, placed: list[Placed], options: DeployOptions, home: str) -> dict[str, Any]:
    mine = [p for p in placed if p.host == host]
    names = {p.unit: p.spec.name for p in mine}
    services: dict[str, Any] = {}
    for p in mine:
        svc: dict[str, Any] = {
            "image": f"{options.image}:{p.cycle}",
            "command": list(p.argv),
            "environment": dict(sorted(p.env.items())),
            "network_mode": "host",
            "user": options.user,
            "working_dir": home,
            "restart": "on-failure",
            "volumes": [f"{home}:{home}"],
            "stop_signal": signal.Signals(p.spec.stop_signal).name,
            "stop_grace_period": f"{int(p.spec.stop_timeout)}s",
        }
        if p.instrument is not None:
            svc["volumes"].append(
                f"{options.overlays}/{p.instrument}:{options.overlays}/{p.instrument}:ro"
            )
        if p.env_file:
            svc["env_file"] = [p.env_file]
        if p.depends_local:
            svc["depends_on"] = {
                names[u]: {"condition": "service_started"} for u in p.depends_local
            }
        services[p.spec.name] = svc
    return {"services": services}
