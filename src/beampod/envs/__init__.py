"""Read-only Python environments per operating cycle, and per-instrument overlays."""

from beampod.envs._build import (
    build_cycle,
    check_cycle,
    lock_cycle,
    read_manifest,
    requirements_of,
    verify_tree,
)
from beampod.envs._layout import EnvLayout, env_python, site_packages
from beampod.envs._overlay import (
    Shadow,
    check_overlay,
    instrument_pythonpath,
    overlay_diff,
    overlay_install,
    overlay_packages,
    overlay_remove,
)
from beampod.envs._pack import pack_cycle, unpack_env
from beampod.envs._runtime import (
    InstrumentRuntime,
    cycle_provides_beampod,
    host_runtime,
    instrument_runtime,
)
from beampod.envs._status import CycleStatus, cycle_status, list_cycles

__all__ = [
    "CycleStatus",
    "EnvLayout",
    "InstrumentRuntime",
    "Shadow",
    "build_cycle",
    "check_cycle",
    "check_overlay",
    "cycle_provides_beampod",
    "cycle_status",
    "env_python",
    "host_runtime",
    "instrument_pythonpath",
    "instrument_runtime",
    "list_cycles",
    "lock_cycle",
    "overlay_diff",
    "overlay_install",
    "overlay_packages",
    "overlay_remove",
    "pack_cycle",
    "read_manifest",
    "requirements_of",
    "site_packages",
    "unpack_env",
    "verify_tree",
]
