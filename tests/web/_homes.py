"""Pod homes for the console's in-process tests: initialised, never started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from beampod.config import LoadedPod, PodHome, init_pod, load_pod


def pod_home(root: Path, **changes: Any) -> LoadedPod:
    """A pod home whose config.yaml has the top-level ``changes`` (init again afterwards,
    so secrets exist for every instrument)."""
    home = PodHome(root)
    init_pod(home, free_ports=True)
    if changes:
        data = yaml.safe_load(home.config_file.read_text())
        data.update(changes)
        home.config_file.write_text(yaml.safe_dump(data))
        init_pod(home)
    return load_pod(home)


def two_instruments() -> dict[str, Any]:
    return {
        name: {"package": "beampod.demo", "iocs": [{"family": "simple", "prefix": f"{name}:"}]}
        for name in ("bl01", "bl02")
    }


QUEUE_PORTS = ("http_port", "control_port", "info_port")


def three_queue_instruments(root: Path, queue_http_pool_size: int) -> LoadedPod:
    """Three instruments, each with its own queue server on its own ports (ports that
    nothing binds: for the service specs), ``pod.queue_http_pool_size`` as given."""
    instruments = {
        name: {
            "package": "beampod.demo",
            "iocs": [{"family": "simple", "prefix": f"{name}:"}],
            "queue": {"enabled": True, **{p: 47100 + 3 * i + k for k, p in enumerate(QUEUE_PORTS)}},
        }
        for i, name in enumerate(("bl01", "bl02", "bl03"))
    }
    return pod_home(
        root,
        instruments=instruments,
        queue={"enabled": True},
        pod={"queue_http_pool_size": queue_http_pool_size},
    )
