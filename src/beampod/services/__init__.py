"""Services and their supervisor: what runs in a pod, and keeping it running.

Every name loads its module on first use (PEP 562): ``up -d``'s head start waits for the
pod through :func:`start_detached` without loading the configuration models, which the
service definitions need (ADR 35)."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
    from beampod._servicelog import tail
    from beampod._spawning import live_supervisor_pid as supervisor_pid
    from beampod.services._catalog import pod_services
    from beampod.services._control import (
        control_service,
        log_path,
        pod_status,
        record_head_start,
        run_supervisor,
        stop_pod,
        supervise_detached,
    )
    from beampod.services._defer import SUPERVISOR_DEFERRED_IMPORTS
    from beampod.services._logrotate import LogFollower, LogLimits, rotate_if_large
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
    from beampod.services._upwait import start_detached

_LAZY = {
    "AllProbes": ("beampod.services._probes", "AllProbes"),
    "CENTRAL_SERVICES": ("beampod.services._runtime", "CENTRAL_SERVICES"),
    "CallableProbe": ("beampod.services._probes", "CallableProbe"),
    "DEFAULT_INSTRUMENT_SERVICES": ("beampod.services._runtime", "DEFAULT_INSTRUMENT_SERVICES"),
    "HttpProbe": ("beampod.services._probes", "HttpProbe"),
    "LogFollower": ("beampod.services._logrotate", "LogFollower"),
    "LogLimits": ("beampod.services._logrotate", "LogLimits"),
    "LogLineProbe": ("beampod.services._probes", "LogLineProbe"),
    "PodResources": ("beampod.services._resources", "PodResources"),
    "PodState": ("beampod.services._state", "PodState"),
    "PortClaim": ("beampod.services._spec", "PortClaim"),
    "Probe": ("beampod.services._probes", "Probe"),
    "RestartPolicy": ("beampod.services._policy", "RestartPolicy"),
    "SUPERVISOR_DEFERRED_IMPORTS": ("beampod.services._defer", "SUPERVISOR_DEFERRED_IMPORTS"),
    "ServiceSpec": ("beampod.services._spec", "ServiceSpec"),
    "ServiceState": ("beampod.services._state", "ServiceState"),
    "Supervisor": ("beampod.services._supervisor", "Supervisor"),
    "TcpProbe": ("beampod.services._probes", "TcpProbe"),
    "Usage": ("beampod.services._resources", "Usage"),
    "control_service": ("beampod.services._control", "control_service"),
    "dependency_order": ("beampod.services._policy", "dependency_order"),
    "from_log_offset": ("beampod.services._probes", "from_log_offset"),
    "log_of": ("beampod.services._probes", "log_of"),
    "log_path": ("beampod.services._control", "log_path"),
    "pod_resources": ("beampod.services._resources", "pod_resources"),
    "pod_services": ("beampod.services._catalog", "pod_services"),
    "pod_status": ("beampod.services._control", "pod_status"),
    "port_is_free": ("beampod.services._probes", "port_is_free"),
    "python_module": ("beampod.services._spec", "python_module"),
    "read_state": ("beampod.services._state", "read_state"),
    "record_head_start": ("beampod.services._control", "record_head_start"),
    "rotate_if_large": ("beampod.services._logrotate", "rotate_if_large"),
    "rss_bytes": ("beampod.services._resources", "rss_bytes"),
    "run_supervisor": ("beampod.services._control", "run_supervisor"),
    "service_host": ("beampod.services._runtime", "service_host"),
    "service_instrument": ("beampod.services._runtime", "service_instrument"),
    "session_extras": ("beampod.services._session_extras", "session_extras"),
    "start_detached": ("beampod.services._upwait", "start_detached"),
    "stop_pod": ("beampod.services._control", "stop_pod"),
    "supervise_detached": ("beampod.services._control", "supervise_detached"),
    "supervisor_pid": ("beampod._spawning", "live_supervisor_pid"),
    "tail": ("beampod._servicelog", "tail"),
    "up_services": ("beampod.services._runtime", "up_services"),
    "with_runtime": ("beampod.services._runtime", "with_runtime"),
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "CENTRAL_SERVICES",
    "DEFAULT_INSTRUMENT_SERVICES",
    "SUPERVISOR_DEFERRED_IMPORTS",
    "AllProbes",
    "CallableProbe",
    "HttpProbe",
    "LogFollower",
    "LogLimits",
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
    "rotate_if_large",
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
