"""The commented config file ``beampod init`` writes."""

from __future__ import annotations

from collections.abc import Mapping

DEMO_IOCS = (
    ("mini_beamline", "mini:"),
    ("random_walk", "random_walk:horiz-"),
    ("random_walk", "random_walk:vert-"),
    ("simple", "simple:"),
    ("thermo_sim", "thermo:"),
)

DEFAULT_PORTS = {
    "nats": 4222,
    "nats_monitor": 8222,
    "nats_cluster": 6222,
    "tiled": 8000,
    "redis": 6379,
    "ca_base": 5064,
    "ca_repeater": 5063,
    "queue_http": 60607,
    "queue_control": 60615,
    "queue_info": 60625,
    "postgres": 5433,
    "web": 8080,
}


def render(
    instrument: str = "demo",
    package: str = "beampod.demo",
    ports: Mapping[str, int] = DEFAULT_PORTS,
    demo: bool = True,
) -> str:
    p = dict(DEFAULT_PORTS) | dict(ports)
    iocs = (
        "\n".join(f'      - {{family: {fam}, prefix: "{prefix}"}}' for fam, prefix in DEMO_IOCS)
        if demo
        else "      []"
    )
    return f"""\
# beampod pod configuration. Validate with `beampod config check`;
# every key is described by `beampod config schema`.
version: 1

pod:
  name: default
  # Every service listens here. Keep loopback unless other machines must connect.
  bind: 127.0.0.1
  # Let requests from 127.0.0.1 use the queue HTTP API without an API key. On for the
  # demo pod so the bluesky-pods demo's `http POST localhost:60607/qs/add_to_queue ...`
  # works verbatim.
  allow_loopback_unauthenticated: {"true" if demo else "false"}
  # A running service whose health probe keeps failing is shown `degraded` after
  # degraded_after_s and restarted after restart_after_s; one that is only slow while it
  # works, or fails while the machine is saturated, after busy_restart_after_s
  # (docs/running.md).
  # health:
  #   degraded_after_s: 30
  #   restart_after_s: 60
  #   busy_restart_after_s: 600
  # Each service's log is rotated past max_mb, keeping `keep` older copies
  # (<service>.log.1, ...), while the service runs; no line is lost (docs/running.md).
  # logs:
  #   max_mb: 32
  #   keep: 2
  # CPUs of the background services (bus, Tiled, writer, IOCs, ...); the RunEngine
  # (`beampod shell`, the queue worker) gets the others. auto: half each on a host of
  # one instrument with 2 CPUs or more; off: every CPU for everything (docs/running.md).
  # background_cpus: auto

# One entry per instrument. Names become the bus subject
# (<name>.bluesky.runengine.documents), the Tiled container and the bus user.
instruments:
  {instrument}:
    # Import path of the instrument package (devices + plans). A facility's own package
    # plugs in the same way; scaffold one with `beampod new instrument NAME`.
    package: {package}
    # Simulated IOCs (caproto) this instrument talks to over Channel Access.
    iocs:
{iocs}
    writer:
      max_batch: 5000      # events per Tiled write while catching up
      max_wait_ms: 50      # longest a live event waits before it is written
      hold_early_s: 30     # longest a document waits for earlier ones of its run

# Document bus. transport: nats (default, durable) | zmq (can drop documents) | kafka
bus:
  transport: nats
  port: {p["nats"]}
  # HTTP monitoring answers anyone without credentials: off. Health comes through the
  # system account (a credential) on one node and on a cluster alike.
  # monitor_port: {p["nats_monitor"]}
  # Local nats-server nodes: 1, or 3 for a real JetStream cluster on loopback (node i
  # takes port+i, cluster_port+i and, if set, monitor_port+i; set stream.replicas: 3
  # with it).
  cluster_size: 1
  cluster_port: {p["nats_cluster"]}
  # A stream's events held up to this many ms and sent as one event_page message:
  # fewer messages for the bus, that much later on it (docs/bus.md). 0: one per event.
  # event_page_ms: 0
  # The edge: a read-only websocket way in for other machines; only the instruments'
  # reader users may log in through it (docs/bus.md "The edge"). Off unless set.
  # edge:
  #   websocket_port: 9443
  #   bind: 0.0.0.0            # then also tls_cert + tls_key (wss://)
  stream:
    max_age_days: 30         # how long documents stay replayable on the bus
    duplicate_window_s: 600  # a re-sent message id within this window is dropped

# Data store behind Tiled. backend: sqlite (files in the pod home) | postgres
store:
  backend: sqlite

tiled:
  port: {p["tiled"]}

redis:
  port: {p["redis"]}

channel_access:
  # UDP search port of the first IOC; the next IOCs take the following ports.
  port_base: {p["ca_base"]}
  # The pod's CA repeater (clients register with it; IOC beacons go to it).
  repeater_port: {p["ca_repeater"]}

queue:
  enabled: true
  http_port: {p["queue_http"]}
  control_port: {p["queue_control"]}
  info_port: {p["queue_info"]}
  # The watchdog restarts the RE Manager after this long without its heartbeat (time
  # the whole machine was paused does not count; docs/queue.md).
  heartbeat_timeout_s: 10

# The web console: services, queue, runs, live plots, devices (log in with a queue key).
web:
  enabled: true
  port: {p["web"]}

agent:
  enabled: true
  agent: beampod.adaptive.agents:StepRecommender
  args: {{step: 1.5, max_count: 15}}
"""
