"""Who may call which route of the queue HTTP API: an explicit allow-list.

Three kinds of caller reach the gate:

- the **control key** (``queue_control_key``) may call every route;
- the **observer key** (``queue_observer_key``) may call the read routes marked
  ``observer`` below (and the httpserver's anonymous role is read-only as well);
- the **pod owner without a key** — only when ``pod.allow_loopback_unauthenticated`` is on,
  the request comes over loopback and the kernel says the connecting socket belongs to
  the uid the queue-http service runs as — may call the routes marked ``owner``: what
  the bluesky-pods demo needs (submit allowed plans, start the queue, read status, queue,
  history and console output).

A route that is not listed here needs the control key. Add a route only on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    owner: bool  #: the pod owner may call it without a key
    observer: bool  #: the observer key may call it


OWNER_AND_OBSERVER = Rule(owner=True, observer=True)
OWNER_ONLY = Rule(owner=True, observer=False)
OBSERVER_ONLY = Rule(owner=False, observer=True)

#: (method, path) -> who besides the control key may call it. ``WS`` is a websocket.
ROUTES: dict[tuple[str, str], Rule] = {
    # the bluesky-pods demo: submit allowed plans and start the queue
    ("POST", "/qs/add_to_queue"): OWNER_ONLY,
    ("POST", "/api/queue/item/add"): OWNER_ONLY,
    ("POST", "/api/queue/start"): OWNER_ONLY,
    # status, queue, history, console output
    ("GET", "/api/status"): OWNER_AND_OBSERVER,
    ("GET", "/api/queue/get"): OWNER_AND_OBSERVER,
    ("GET", "/api/queue/item/get"): OWNER_AND_OBSERVER,
    ("GET", "/api/history/get"): OWNER_AND_OBSERVER,
    ("GET", "/api/console_output"): OWNER_AND_OBSERVER,
    ("GET", "/api/console_output/uid"): OWNER_AND_OBSERVER,
    ("GET", "/api/console_output_update"): OWNER_AND_OBSERVER,
    ("GET", "/api/stream_console_output"): OWNER_AND_OBSERVER,
    ("WS", "/api/console_output/ws"): OWNER_AND_OBSERVER,
    ("WS", "/api/status/ws"): OWNER_AND_OBSERVER,
    # other reads: the observer key only
    ("GET", "/api/ping"): OBSERVER_ONLY,
    ("GET", "/api/plans/allowed"): OBSERVER_ONLY,
    ("GET", "/api/devices/allowed"): OBSERVER_ONLY,
    ("GET", "/api/plans/existing"): OBSERVER_ONLY,
    ("GET", "/api/devices/existing"): OBSERVER_ONLY,
    ("GET", "/api/config/get"): OBSERVER_ONLY,
    ("GET", "/api/permissions/get"): OBSERVER_ONLY,
    ("GET", "/api/lock/info"): OBSERVER_ONLY,
    ("GET", "/api/re/runs/active"): OBSERVER_ONLY,
    ("GET", "/api/re/runs/open"): OBSERVER_ONLY,
    ("GET", "/api/re/runs/closed"): OBSERVER_ONLY,
    ("POST", "/api/re/runs"): OBSERVER_ONLY,
    ("GET", "/api/task/status"): OBSERVER_ONLY,
    ("GET", "/api/task/result"): OBSERVER_ONLY,
    ("WS", "/api/info/ws"): OBSERVER_ONLY,
}

CONTROL_ONLY = Rule(owner=False, observer=False)


def rule_for(method: str, path: str) -> Rule:
    """The rule of a request; HEAD is GET; anything not listed exactly (a trailing slash,
    another method) needs the control key."""
    method = "GET" if method == "HEAD" else method
    return ROUTES.get((method, path), CONTROL_ONLY)
