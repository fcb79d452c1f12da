"""Node health through nats-server's system account instead of its HTTP port.

The HTTP monitoring port answers anyone who reaches it (``/connz`` names every user
and client); the system account needs the ``system`` user's password (generated at
``beampod init``, in the 0600 ``secrets.yaml``). ``$SYS.REQ.SERVER.PING.HEALTHZ`` with a
server-name filter is answered by that one server: the same checks as ``/healthz``.
"""

from __future__ import annotations

import contextlib
import json

from beampod.bus._accounts import SYSTEM_USER
from beampod.bus._natsconf import NatsNode
from beampod.bus._natsconn import NatsConnection
from beampod.config import LoadedPod
from beampod.errors import BusError

__all__ = ["node_healthz"]

_HEALTHZ = "$SYS.REQ.SERVER.PING.HEALTHZ"


async def node_healthz(pod: LoadedPod, node: NatsNode, *, timeout: float = 2.0) -> bool:
    """True when ``node`` says it is healthy, asked over its own client port.

    One server: JetStream is enabled (``js-enabled-only``; the store probe checks that
    it stores). A cluster node: the full check -- JetStream enabled, in contact with the
    meta leader, and every stream and consumer replica it holds current -- so a restarted
    node is healthy once it has rejoined and caught up."""
    from nats.errors import Error as NatsClientError

    conn = NatsConnection(
        (node.url,),
        SYSTEM_USER,
        pod.secrets.bus_system_password,
        name=f"beampod-health-{node.service}",
    )
    try:
        nc = await conn.connect(reconnect=False, connect_timeout=timeout)
    except BusError:
        return False
    options: dict[str, object] = {"server_name": node.server_name}
    if not node.clustered:
        options["js-enabled-only"] = True
    try:
        msg = await nc.request(_HEALTHZ, json.dumps(options).encode(), timeout=timeout)
        answer = json.loads(msg.data)
    except (NatsClientError, TimeoutError, OSError, ValueError):
        return False
    finally:
        with contextlib.suppress(NatsClientError, TimeoutError, OSError):
            await nc.close()
    if not isinstance(answer, dict):
        return False
    server = answer.get("server") or {}
    data = answer.get("data") or {}
    # The filter matches server names by substring: accept only this node's answer.
    return server.get("name") == node.server_name and data.get("status") == "ok"
