"""Who is on the other end of a local connection.

Core-level helpers (stdlib and :mod:`beampod.errors` only) that any beampod server
reuses to decide whether an unauthenticated loopback request comes from the pod's
owner: the kernel records the owning uid of every TCP socket in ``/proc/net/tcp`` and
``/proc/net/tcp6``.
"""

from beampod.auth._peer import parse_proc_net_tcp, peer_uid

__all__ = ["parse_proc_net_tcp", "peer_uid"]
