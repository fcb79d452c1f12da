"""Pod configuration: one typed tree, generated secrets, and where the pod lives."""

from beampod.config._home import POD_UMASK, PodHome, default_home
from beampod.config._load import format_validation_error, json_schema, load_config, parse_config
from beampod.config._model import (
    AgentSettings,
    ChannelAccessSettings,
    InstrumentSettings,
    IocSettings,
    KafkaBus,
    NatsBus,
    PodConfig,
    PostgresStore,
    QueueSettings,
    SqliteStore,
    StreamSettings,
    WriterSettings,
    ZmqBus,
    dead_letter_subject,
    documents_subject,
    ioc_service_name,
    stream_name,
)
from beampod.config._pod import LoadedPod, init_pod, load_pod
from beampod.config._secrets import BUS_ROLES, BusRole, InstrumentSecrets, Secrets

__all__ = [
    "POD_UMASK",
    "BUS_ROLES",
    "AgentSettings",
    "BusRole",
    "ChannelAccessSettings",
    "InstrumentSecrets",
    "InstrumentSettings",
    "IocSettings",
    "KafkaBus",
    "LoadedPod",
    "NatsBus",
    "PodConfig",
    "PodHome",
    "PostgresStore",
    "QueueSettings",
    "Secrets",
    "SqliteStore",
    "StreamSettings",
    "WriterSettings",
    "ZmqBus",
    "dead_letter_subject",
    "default_home",
    "documents_subject",
    "format_validation_error",
    "init_pod",
    "ioc_service_name",
    "json_schema",
    "load_config",
    "load_pod",
    "parse_config",
    "stream_name",
]
