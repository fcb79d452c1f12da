"""The agent process loads redis-py only for a Redis reply (ADR 23): a facility's
agents reply over NATS, and each would otherwise carry redis-py and hiredis (~7 MB RSS)."""

from __future__ import annotations

import subprocess
import sys

# What ``python -m beampod.adaptive`` imports before it serves: its entry point (with
# its import policy), the service, the pod loading and the default agent class.
_SCRIPT = """
import sys
from beampod.adaptive.__main__ import DEFERRED_IMPORTS
from beampod._lazy import defer_imports
defer_imports(DEFERRED_IMPORTS)
from beampod.adaptive._service import AgentService, serve
from beampod.config import load_agent_pod
import beampod.adaptive.agents as agents
agents.StepRecommender
service = AgentService({}, {}, redis=None)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("redis", "hiredis")))
"""


def test_the_agent_service_does_not_import_redis_until_a_redis_reply() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
