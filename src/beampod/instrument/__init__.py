"""Instrument packages: the ``devices()``/``plans()`` convention, loading, scaffolding,
the pod's Channel Access client environment, and the safe plan-expression parser."""

from beampod.instrument._ca_quiet import (
    start_channel_access_quietly,
    unconnected_devices,
    why_not_connected,
)
from beampod.instrument._env import (
    apply_ca_client_env,
    ca_client_env,
    ioc_endpoints,
    silent_iocs,
)
from beampod.instrument._facility_scaffold import (
    FacilityScaffold,
    instrument_names,
    scaffold_facility,
)
from beampod.instrument._load import Instrument, PlanFunction, load_instrument
from beampod.instrument._plan_expr import (
    DeviceName,
    PlanCall,
    check_plan_arguments,
    parse_plan_call,
    resolve_devices,
)
from beampod.instrument._scaffold import scaffold

__all__ = [
    "DeviceName",
    "FacilityScaffold",
    "Instrument",
    "PlanCall",
    "PlanFunction",
    "apply_ca_client_env",
    "ca_client_env",
    "check_plan_arguments",
    "instrument_names",
    "ioc_endpoints",
    "load_instrument",
    "parse_plan_call",
    "resolve_devices",
    "scaffold",
    "scaffold_facility",
    "silent_iocs",
    "start_channel_access_quietly",
    "unconnected_devices",
    "why_not_connected",
]
