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
from beampod.bus._natsconf import (
    NatsConnection,
    NatsNode,
    dead_letter_stream_name,
    instrument_permissions,
    nats_nodes,
    nats_server_binary,
    render_nats_config,
    write_nats_config,
)
from beampod.bus._publisher import DurablePublisher
from beampod.bus._pubstate import PublisherStatus
from beampod.bus._split import OversizeDocumentError, split_event_page, to_messages
from beampod.bus._spool import Spool, SpoolError, SpoolRecord, open_spool
from beampod.bus._streams import StreamPlan, ensure_streams, ensure_streams_sync, plan_streams
from beampod.bus._transports import NatsSubscriber, NatsTransport, transport_for

__all__ = [
    "DOCUMENT_NAMES",
    "ORIGINAL_SEQ",
    "BadMessage",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "DocumentConsumer",
    "DocumentPublisher",
    "DocumentSubscriber",
    "Durability",
    "DurablePublisher",
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
    "dead_letter_stream_name",
    "decode",
    "encode",
    "ensure_streams",
    "ensure_streams_sync",
    "get_dead_letter",
    "instrument_permissions",
    "list_dead_letters",
    "message_id",
    "nats_nodes",
    "nats_server_binary",
    "open_spool",
    "plan_streams",
    "publish_dead_letter",
    "render_nats_config",
    "replay_dead_letter",
    "run_uid_of",
    "split_event_page",
    "tail",
    "to_messages",
    "transport_for",
    "write_nats_config",
]
