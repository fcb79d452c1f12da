"""The document bus: one codec and one behavioural contract for every transport."""

from beampod.bus._codec import DOCUMENT_NAMES, DecodeError, decode, encode, message_id, run_uid_of
from beampod.bus._consumer import (
    ORIGINAL_SEQ,
    BadMessage,
    DocumentConsumer,
    Message,
    publish_dead_letter,
    tail,
)
from beampod.bus._contract import (
    Delivery,
    DocumentPublisher,
    DocumentSubscriber,
    Durability,
    Transport,
)
from beampod.bus._dlq import DeadLetter, get_dead_letter, list_dead_letters, replay_dead_letter
from beampod.bus._kafka import (
    MSG_ID_HEADER,
    KafkaPublisher,
    KafkaSubscriber,
    KafkaTransport,
    ensure_topic,
    kafka_module,
    producer_config,
)
from beampod.bus._kafkadlq import (
    REASON_HEADER,
    dead_letter_headers,
    dlq_topic,
    ensure_dlq_topic,
    get_kafka_dead_letter,
    list_kafka_dead_letters,
    replay_kafka_dead_letter,
)
from beampod.bus._natsconf import (
    NatsConnection,
    NatsNode,
    nats_nodes,
    nats_server_binary,
    render_nats_config,
    write_nats_config,
)
from beampod.bus._publisher import DurablePublisher
from beampod.bus._pubstate import PublisherStatus
from beampod.bus._roles import (
    ADMIN_USER,
    BUS_ROLES,
    WRITER_DURABLE,
    BusRole,
    bus_user,
    dead_letter_stream_name,
    inbox_prefix,
    role_permissions,
)
from beampod.bus._split import OversizeDocumentError, split_event_page, to_messages
from beampod.bus._spool import Spool, SpoolError, SpoolRecord, open_spool
from beampod.bus._streams import StreamPlan, ensure_streams, ensure_streams_sync, plan_streams
from beampod.bus._tails import kafka_tail, zmq_tail
from beampod.bus._transports import NatsSubscriber, NatsTransport, transport_for
from beampod.bus._zmq import PROBE_KEY, ZmqPublisher, ZmqSubscriber, ZmqTransport

__all__ = [
    "ADMIN_USER",
    "BUS_ROLES",
    "DOCUMENT_NAMES",
    "MSG_ID_HEADER",
    "ORIGINAL_SEQ",
    "PROBE_KEY",
    "REASON_HEADER",
    "WRITER_DURABLE",
    "BadMessage",
    "BusRole",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "DocumentConsumer",
    "DocumentPublisher",
    "DocumentSubscriber",
    "Durability",
    "DurablePublisher",
    "KafkaPublisher",
    "KafkaSubscriber",
    "KafkaTransport",
    "Message",
    "NatsConnection",
    "NatsNode",
    "NatsSubscriber",
    "NatsTransport",
    "OversizeDocumentError",
    "PublisherStatus",
    "Spool",
    "SpoolError",
    "SpoolRecord",
    "StreamPlan",
    "Transport",
    "ZmqPublisher",
    "ZmqSubscriber",
    "ZmqTransport",
    "bus_user",
    "dead_letter_headers",
    "dead_letter_stream_name",
    "decode",
    "dlq_topic",
    "encode",
    "ensure_dlq_topic",
    "ensure_streams",
    "ensure_streams_sync",
    "ensure_topic",
    "get_dead_letter",
    "get_kafka_dead_letter",
    "inbox_prefix",
    "kafka_module",
    "kafka_tail",
    "list_dead_letters",
    "list_kafka_dead_letters",
    "message_id",
    "nats_nodes",
    "nats_server_binary",
    "open_spool",
    "plan_streams",
    "producer_config",
    "publish_dead_letter",
    "render_nats_config",
    "replay_dead_letter",
    "replay_kafka_dead_letter",
    "role_permissions",
    "run_uid_of",
    "split_event_page",
    "tail",
    "to_messages",
    "transport_for",
    "write_nats_config",
    "zmq_tail",
]
