"""Where the console answers: light enough for the supervisor (no Starlette)."""

from __future__ import annotations

from beampod.config import LoadedPod, instrument_address

HEALTH_PATH = "/healthz"


def web_url(pod: LoadedPod) -> str:
    """Where this process reaches the console (on the default instrument's host)."""
    return f"http://{instrument_address(pod.config)}:{pod.config.web.port}"
