"""Names a session gets from components it does not import itself.

The session, the queue and the adaptive packages are independent siblings (an
import-linter contract); the services layer composes them for the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beampod.config import LoadedPod, instrument_agent, queue_servers


def session_extras(pod: LoadedPod) -> Mapping[str, Any]:
    """``to_brains``, ``from_brains``, ``adaptive_plan`` (the bluesky-pods adaptive demo) and
    ``queue_server_plan`` (the bluesky-pods queue demo)."""
    import atexit
    import functools

    from beampod.adaptive import adaptive_plan, make_brains
    from beampod.config import NatsBus
    from beampod.queue import queue_server_plan

    names: dict[str, Any] = {"adaptive_plan": adaptive_plan}
    if pod.config.instrument_name in queue_servers(pod):
        # Bound to this session's pod: `beampod --home X shell` must drive X's queue,
        # not whatever $BEAMPOD_HOME or the default home would name. The session's
        # instrument (`shell -i NAME`) is the pod's default here: its own queue server.
        names["queue_server_plan"] = functools.wraps(queue_server_plan)(
            functools.partial(queue_server_plan, pod)
        )
    agent = instrument_agent(pod.config, pod.config.instrument_name)
    if agent is not None and isinstance(pod.config.bus, NatsBus):
        to_brains, from_brains = make_brains(pod)  # connects on first use only
        atexit.register(from_brains.close)
        names.update(to_brains=to_brains, from_brains=from_brains)
    return names
