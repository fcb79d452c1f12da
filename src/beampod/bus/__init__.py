"""The document bus: one codec and one behavioural contract for every transport."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports
from beampod.bus._accounts import (
    MAIN_ACCOUNT,
    SYSTEM_USER,
    readers_account,
    readers_api_prefix,
)
from beampod.bus._contract import (
    Delivery,
    DocumentPublisher,
    DocumentSubscriber,
    Durability,
    Transport,
)
from beampod.bus._natsconf import (
    NatsNode,
    edge_urls,
    nats_nodes,
    nats_server_binary,
    render_nats_config,
    write_nats_config,
)
from beampod.bus._natsconn import NatsConnection
from beampod.bus._pubstate import PublisherStatus
from beampod.bus._roles import (
    ADMIN_USER,
    BUS_ROLES,
    EDGE_ROLES,
    WRITER_DURABLE,
    BusRole,
    bus_user,
    dead_letter_stream_name,
    edge_connection_types,
    inbox_prefix,
    role_permissions,
)
from beampod.bus._streams import (
    READERS_SHARE,
    StreamPlan,
    ensure_streams,
    ensure_streams_sync,
    plan_readers_stream,
    plan_streams,
)
from beampod.bus._syshealth import node_healthz

if TYPE_CHECKING:
    from beampod.bus._codec import (
        DOCUMENT_NAMES,
        DecodeError,
        decode,
        encode,
        message_id,
        run_uid_of,
    )
    from beampod.bus._consumer import (
        LOST_SEQS,
        ORIGINAL_SEQ,
        BadMessage,
        DocumentConsumer,
        Message,
        publish_dead_letter,
    )
    from beampod.bus._dlq import DeadLetter, get_dead_letter, list_dead_letters, replay_dead_letter
    from beampod.bus._jstail import tail
    from beampod.bus._kafka import (
        MSG_ID_HEADER,
        KafkaPublisher,
        KafkaSubscriber,
        KafkaTransport,
        consumer_config,
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
    from beampod.bus._publisher import DurablePublisher
    from beampod.bus._split import OversizeDocumentError, split_event_page, to_messages
    from beampod.bus._spool import Spool, SpoolError, SpoolRecord, open_spool
    from beampod.bus._tails import kafka_tail, zmq_tail
    from beampod.bus._transports import NatsSubscriber, NatsTransport, transport_for
    from beampod.bus._zmq import PROBE_KEY, ZmqPublisher, ZmqSubscriber, ZmqTransport

# Documents (codec, publisher, consumers, transports) need msgpack-numpy and so numpy;
# the supervisor needs only the NATS configuration, roles and streams above.
# name -> (private module, name in it), imported on first access (PEP 562).
_LAZY = {
    "DOCUMENT_NAMES": ("beampod.bus._codec", "DOCUMENT_NAMES"),
    "DecodeError": ("beampod.bus._codec", "DecodeError"),
    "decode": ("beampod.bus._codec", "decode"),
    "encode": ("beampod.bus._codec", "encode"),
    "message_id": ("beampod.bus._codec", "message_id"),
    "run_uid_of": ("beampod.bus._codec", "run_uid_of"),
    "ORIGINAL_SEQ": ("beampod.bus._consumer", "ORIGINAL_SEQ"),
    "LOST_SEQS": ("beampod.bus._consumer", "LOST_SEQS"),
    "BadMessage": ("beampod.bus._consumer", "BadMessage"),
    "DocumentConsumer": ("beampod.bus._consumer", "DocumentConsumer"),
    "Message": ("beampod.bus._consumer", "Message"),
    "publish_dead_letter": ("beampod.bus._consumer", "publish_dead_letter"),
    "tail": ("beampod.bus._jstail", "tail"),
    "DeadLetter": ("beampod.bus._dlq", "DeadLetter"),
    "get_dead_letter": ("beampod.bus._dlq", "get_dead_letter"),
    "list_dead_letters": ("beampod.bus._dlq", "list_dead_letters"),
    "replay_dead_letter": ("beampod.bus._dlq", "replay_dead_letter"),
    "MSG_ID_HEADER": ("beampod.bus._kafka", "MSG_ID_HEADER"),
    "KafkaPublisher": ("beampod.bus._kafka", "KafkaPublisher"),
    "KafkaSubscriber": ("beampod.bus._kafka", "KafkaSubscriber"),
    "KafkaTransport": ("beampod.bus._kafka", "KafkaTransport"),
    "ensure_topic": ("beampod.bus._kafka", "ensure_topic"),
    "kafka_module": ("beampod.bus._kafka", "kafka_module"),
    "consumer_config": ("beampod.bus._kafka", "consumer_config"),
    "producer_config": ("beampod.bus._kafka", "producer_config"),
    "REASON_HEADER": ("beampod.bus._kafkadlq", "REASON_HEADER"),
    "dead_letter_headers": ("beampod.bus._kafkadlq", "dead_letter_headers"),
    "dlq_topic": ("beampod.bus._kafkadlq", "dlq_topic"),
    "ensure_dlq_topic": ("beampod.bus._kafkadlq", "ensure_dlq_topic"),
    "get_kafka_dead_letter": ("beampod.bus._kafkadlq", "get_kafka_dead_letter"),
    "list_kafka_dead_letters": ("beampod.bus._kafkadlq", "list_kafka_dead_letters"),
    "replay_kafka_dead_letter": ("beampod.bus._kafkadlq", "replay_kafka_dead_letter"),
    "DurablePublisher": ("beampod.bus._publisher", "DurablePublisher"),
    "OversizeDocumentError": ("beampod.bus._split", "OversizeDocumentError"),
    "split_event_page": ("beampod.bus._split", "split_event_page"),
    "to_messages": ("beampod.bus._split", "to_messages"),
    "Spool": ("beampod.bus._spool", "Spool"),
    "SpoolError": ("beampod.bus._spool", "SpoolError"),
    "SpoolRecord": ("beampod.bus._spool", "SpoolRecord"),
    "open_spool": ("beampod.bus._spool", "open_spool"),
    "kafka_tail": ("beampod.bus._tails", "kafka_tail"),
    "zmq_tail": ("beampod.bus._tails", "zmq_tail"),
    "NatsSubscriber": ("beampod.bus._transports", "NatsSubscriber"),
    "NatsTransport": ("beampod.bus._transports", "NatsTransport"),
    "transport_for": ("beampod.bus._transports", "transport_for"),
    "PROBE_KEY": ("beampod.bus._zmq", "PROBE_KEY"),
    "ZmqPublisher": ("beampod.bus._zmq", "ZmqPublisher"),
    "ZmqSubscriber": ("beampod.bus._zmq", "ZmqSubscriber"),
    "ZmqTransport": ("beampod.bus._zmq", "ZmqTransport"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ADMIN_USER",
    "BUS_ROLES",
    "DOCUMENT_NAMES",
    "EDGE_ROLES",
    "LOST_SEQS",
    "MAIN_ACCOUNT",
    "MSG_ID_HEADER",
    "ORIGINAL_SEQ",
    "PROBE_KEY",
    "READERS_SHARE",
    "REASON_HEADER",
    "SYSTEM_USER",
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
    "consumer_config",
    "dead_letter_headers",
    "dead_letter_stream_name",
    "decode",
    "dlq_topic",
    "edge_connection_types",
    "edge_urls",
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
    "node_healthz",
    "open_spool",
    "plan_readers_stream",
    "plan_streams",
    "producer_config",
    "publish_dead_letter",
    "readers_account",
    "readers_api_prefix",
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
