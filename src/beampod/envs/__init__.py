"""Read-only Python environments per operating cycle, and per-instrument overlays."""

from beampod.envs._build import build_cycle, check_cycle, lock_cycle, requirements_of, verify_tree
from beampod.envs._layout import EnvLayout, env_python, site_packages

__all__ = [
    "EnvLayout",
    "build_cycle",
    "check_cycle",
    "env_python",
    "lock_cycle",
    "requirements_of",
    "site_packages",
    "verify_tree",
]
