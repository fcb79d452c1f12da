"""Pod configuration: one typed tree, generated secrets, and where the pod lives."""

from beampod.config._facility import (
    effective_hosts,
    facility_problems,
    instrument_ports,
    instrument_queue,
    package_problems,
)
from beampod.config._home import PodHome, default_home
from beampod.config._load import format_validation_error, json_schema, load_config, parse_config
from beampod.config._merge import apply_instrument_defaults, merge
from beampod.config._model import (
    AgentSettings,
    ChannelAccessSettings,
    HostSettings,
    InstrumentDefaults,
    InstrumentSettings,
    IocSettings,
    IocTemplate,
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
from beampod.config._secrets import InstrumentSecrets, Secrets
from beampod.config._yaml import read_yaml

__all__ = [
    "AgentSettings",
    "ChannelAccessSettings",
    "HostSettings",
    "InstrumentDefaults",
    "InstrumentSecrets",
    "InstrumentSettings",
    "IocSettings",
    "IocTemplate",
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
    "apply_instrument_defaults",
    "dead_letter_subject",
    "default_home",
    "documents_subject",
    "effective_hosts",
    "facility_problems",
    "format_validation_error",
    "init_pod",
    "instrument_ports",
    "instrument_queue",
    "ioc_service_name",
    "json_schema",
    "load_config",
    "load_pod",
    "merge",
    "package_problems",
    "parse_config",
    "read_yaml",
    "stream_name",
]
