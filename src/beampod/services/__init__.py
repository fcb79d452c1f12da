"""Services and their supervisor: what runs in a pod, and keeping it running."""

from beampod.services._catalog import pod_services
from beampod.services._control import (
    control_service,
    log_path,
    pod_status,
    record_head_start,
    run_supervisor,
    start_detached,
    stop_pod,
    supervise_detached,
    supervisor_pid,
)
from beampod.services._defer import SUPERVISOR_DEFERRED_IMPORTS
from beampod.services._policy import RestartPolicy, dependency_order
from beampod.services._probes import (
    AllProbes,
    CallableProbe,
    HttpProbe,
    LogLineProbe,
    Probe,
    TcpProbe,
    from_log_offset,
    log_of,
    port_is_free,
)
from beampod.services._process import tail
from beampod.services._resources import PodResources, Usage, pod_resources, rss_bytes
from beampod.services._runtime import (
    CENTRAL_SERVICES,
    DEFAULT_INSTRUMENT_SERVICES,
    service_host,
    service_instrument,
    up_services,
    with_runtime,
)
from beampod.services._session_extras import session_extras
from beampod.services._spec import PortClaim, ServiceSpec, python_module
from beampod.services._state import PodState, ServiceState, read_state
from beampod.services._supervisor import Supervisor

__all__ = [
    "CENTRAL_SERVICES",
    "DEFAULT_INSTRUMENT_SERVICES",
    "SUPERVISOR_DEFERRED_IMPORTS",
    "AllProbes",
    "CallableProbe",
    "HttpProbe",
    "LogLineProbe",
    "PodResources",
    "PodState",
    "PortClaim",
    "Probe",
    "RestartPolicy",
    "ServiceSpec",
    "ServiceState",
    "Supervisor",
    "TcpProbe",
    "Usage",
    "control_service",
    "dependency_order",
    "from_log_offset",
    "log_of",
    "log_path",
    "pod_resources",
    "pod_services",
    "pod_status",
    "port_is_free",
    "python_module",
    "read_state",
    "record_head_start",
    "rss_bytes",
    "run_supervisor",
    "service_host",
    "service_instrument",
    "session_extras",
    "start_detached",
    "stop_pod",
    "supervise_detached",
    "supervisor_pid",
    "tail",
    "up_services",
    "with_runtime",
]
