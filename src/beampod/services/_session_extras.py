"""Names a session gets from components it does not import itself.

The session, the queue and the adaptive packages are independent siblings (an
import-linter contract); the services layer composes them for the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beampod.config import LoadedPod


def session_extras(pod: LoadedPod) -> Mapping[str, Any]:
    """``to_brains``, ``from_brains``, ``adaptive_plan`` (the seed's adaptive demo) and
    ``queue_server_plan`` (the seed's queue demo)."""
    from beampod.adaptive import adaptive_plan, make_brains
    from beampod.queue import queue_server_plan

    to_brains, from_brains = make_brains(pod)
    return {
        "to_brains": to_brains,
        "from_brains": from_brains,
        "adaptive_plan": adaptive_plan,
        "queue_server_plan": queue_server_plan,
    }
