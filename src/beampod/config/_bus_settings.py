"""The bus part of the configuration tree: NATS JetStream (one node or a cluster, its
streams and its edge), 0MQ or Kafka, and the subject and stream names per instrument."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from beampod.config._base import Port, Strict


class StreamSettings(Strict):
    """JetStream stream per instrument: ``<instrument>.bluesky.runengine.documents``."""

    max_age_days: Annotated[float, Field(gt=0)] = 30.0
    max_bytes_gb: Annotated[float, Field(gt=0)] = 20.0
    duplicate_window_s: Annotated[float, Field(gt=0)] = 600.0
    replicas: Annotated[int, Field(ge=1, le=5)] = 1


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class EdgeListener(Strict):
    """A read-only way into the bus for other machines: nats-server's websocket listener.

    Only the instruments' ``<instrument>-reader`` users may log in through it (every
    other user is limited to ordinary NATS connections), so what comes in here can read
    documents and nothing else. docs/bus.md "The edge"."""

    websocket_port: Port = Field(
        ..., description="Port of the websocket listener (node i of a 3-node cluster: +i)."
    )
    bind: str = Field(
        "127.0.0.1",
        description="Address the listener binds. Other machines need a routable address "
        "(or 0.0.0.0), and then TLS (tls_cert, tls_key) or allow_plaintext.",
    )
    tls_cert: str | None = Field(
        None,
        description="PEM certificate chain served on the listener (wss://); relative to the "
        "pod home. Needs tls_key.",
    )
    tls_key: str | None = Field(
        None, description="PEM private key of tls_cert; relative to the pod home."
    )
    allow_plaintext: bool = Field(
        False,
        description="Serve ws:// without TLS on an address that is not loopback. Passwords "
        "and documents then cross the network in clear text: only on a trusted network.",
    )

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @model_validator(mode="after")
    def _tls_checks(self) -> EdgeListener:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if not self.tls and self.bind not in _LOOPBACK and not self.allow_plaintext:
            raise ValueError(
                f"the edge listener binds {self.bind!r}, which other machines can reach, "
                "without TLS: set tls_cert and tls_key (wss://), or allow_plaintext: true "
                "on a trusted network, or bind 127.0.0.1"
            )
        return self


class NatsNodeSettings(Strict):
    """Where one node of the pod's own NATS cluster listens (docs/bus.md "Clustering")."""

    address: str = Field(
        ...,
        min_length=1,
        pattern=r"^[^\s:/\[\]]+$",
        description="IPv4 address or host name the node binds its client, route and "
        "monitoring ports on, and the one every client and the other nodes connect to.",
    )
    netns: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
        description="Run this node inside the named Linux network namespace (`ip netns "
        "exec NAME`; root only). The namespace, and a route from the host to `address`, "
        "must exist before `beampod up`: beampod does not create them.",
    )


class NatsBus(Strict):
    transport: Literal["nats"] = "nats"
    port: Port = 4222
    monitor_port: Port | None = Field(
        None,
        description="nats-server's HTTP monitoring port (/varz, /connz, /jsz, /healthz). It "
        "answers anyone who can reach it, without credentials, so it is off unless set; "
        "health comes from the system account's health requests and an authenticated "
        "JetStream store instead, on one node and on a cluster (node i: monitor_port+i).",
    )
    max_payload_mb: Annotated[int, Field(ge=1, le=64)] = 8
    event_page_ms: Annotated[int, Field(ge=0, le=5000)] = Field(
        0,
        description="A publisher holds a stream's consecutive events for up to this many "
        "milliseconds and sends them as one event_page message (at most 500 events). The "
        "bus's cost is per message, so at many instruments x tens of events/s this "
        "saves most of it, for that much latency more. 0: one message per event.",
    )
    stream: StreamSettings = StreamSettings()
    external_urls: list[str] = Field(
        default_factory=list,
        description="Use an external NATS cluster instead of starting one (nats://host:port ...).",
    )
    cluster_size: Literal[1, 3] = Field(
        1,
        description="Number of local nats-server nodes; 3 runs a real JetStream cluster "
        "(on pod.bind, or on the addresses in nodes). Node i (0, 1, 2) listens on port+i, "
        "monitor_port+i and cluster_port+i.",
    )
    cluster_port: Port = Field(
        6222,
        description="Route (cluster) port of the first node when cluster_size is 3; node i "
        "uses cluster_port+i. Unused with a single node.",
    )
    nodes: list[NatsNodeSettings] = Field(
        default_factory=list,
        description="One entry per node (node i is nodes[i]): its address and, optionally, "
        "the network namespace it runs in. Empty: every node binds and is reached on "
        "pod.bind. Ports stay port+i, cluster_port+i on any address.",
    )
    edge: EdgeListener | None = Field(
        None,
        description="Opt-in read-only websocket listener for external consumers (only "
        "the instruments' reader users may log in through it). Off when unset.",
    )

    @model_validator(mode="after")
    def _cluster_checks(self) -> NatsBus:
        problems: list[str] = []
        if not self.external_urls and self.stream.replicas > self.cluster_size:
            problems.append(
                f"stream.replicas ({self.stream.replicas}) is more than the NATS nodes this pod "
                f"runs (cluster_size {self.cluster_size}): set cluster_size: 3 (replicas up to "
                "3), lower stream.replicas, or set external_urls"
            )
        if self.nodes and self.external_urls:
            problems.append(
                "nodes: the pod starts no NATS node with external_urls; remove one of the two"
            )
        elif self.nodes and len(self.nodes) != self.cluster_size:
            problems.append(
                f"nodes lists {len(self.nodes)} node(s) but cluster_size is "
                f"{self.cluster_size}: list one per node, or none (every node on pod.bind)"
            )
        if self.edge is not None and self.external_urls:
            problems.append(
                "edge: the edge listener is part of the pod's own nats-server; with "
                "external_urls, configure websocket on that cluster instead"
            )
        if not self.external_urls and (self.cluster_size > 1 or self.edge is not None):
            n = self.cluster_size
            ranges = {"port": self.port}
            if self.cluster_size > 1:
                ranges["cluster_port"] = self.cluster_port
            if self.monitor_port is not None:
                ranges["monitor_port"] = self.monitor_port
            if self.edge is not None:
                ranges["edge.websocket_port"] = self.edge.websocket_port
            ports: dict[int, str] = {}
            for key, base in ranges.items():
                if base + n - 1 > 65535:
                    problems.append(f"{key} {base}: node {n - 1} would need port {base + n - 1}")
                for i in range(n):
                    if base + i in ports and n == 1:
                        problems.append(f"{key} {base} is also {ports[base]}")
                    elif base + i in ports:
                        problems.append(
                            f"{key} {base}: node {i} port {base + i} is also "
                            f"{ports[base + i]} (each node takes {key}+i)"
                        )
                    ports[base + i] = f"{key}+{i}" if n > 1 else key
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ZmqBus(Strict):
    """bluesky's own 0MQ Publisher/proxy/RemoteDispatcher. Can drop documents."""

    transport: Literal["zmq"]
    in_port: Port = 5577
    out_port: Port = 5578

    @model_validator(mode="after")
    def _distinct_ports(self) -> ZmqBus:
        if self.in_port == self.out_port:
            raise ValueError(f"in_port and out_port are both {self.in_port}: 0MQ needs two ports")
        return self


class KafkaBus(Strict):
    transport: Literal["kafka"]
    bootstrap_servers: str = Field(..., min_length=1, pattern=r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$")

    @model_validator(mode="after")
    def _client_installed(self) -> KafkaBus:
        # Without the client the pod could not store a run: refuse the config up front.
        import importlib.util

        if importlib.util.find_spec("confluent_kafka") is None:
            raise ValueError("transport kafka needs confluent-kafka: pip install 'beampod[kafka]'")
        return self


BusSettings = Annotated[NatsBus | ZmqBus | KafkaBus, Field(discriminator="transport")]


def documents_subject(instrument: str) -> str:
    """Bus subject / Kafka topic of an instrument's documents (NSLS-II's topic name)."""
    return f"{instrument}.bluesky.runengine.documents"


def dead_letter_subject(instrument: str) -> str:
    return f"{instrument}.bluesky.runengine.deadletter"


def stream_name(instrument: str) -> str:
    """JetStream stream names may not contain dots."""
    return f"{instrument.upper()}_DOCUMENTS"
