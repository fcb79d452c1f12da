"""How a long-running service logs: INFO lines to stdout (its log file), each with
time, level and logger. httpx and httpcore stay at WARNING: at INFO they write a line
per HTTP request, and a writer's requests to Tiled alone would grow its log by hundreds
of megabytes in a week of beamtime while saying nothing a failure would not."""

from __future__ import annotations

import logging
import sys

QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_service_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
