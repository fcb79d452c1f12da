"""Where the console answers: light enough for the supervisor (no Starlette)."""

from __future__ import annotations

from beampod.config import LoadedPod
from beampod.sim import probe_host

HEALTH_PATH = "/healthz"


def web_url(pod: LoadedPod) -> str:
    return f"http://{probe_host(pod.config.pod.bind)}:{pod.config.web.port}"
