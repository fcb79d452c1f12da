"""Deployment rendered from the facility's configuration: systemd units, an Ansible
inventory and playbook, compose files (docs/deploy.md)."""

from beampod.deploy._check import CheckResult, check
from beampod.deploy._plan import (
    DeployOptions,
    Placed,
    host_argv,
    place,
    rendering_pod,
    service_place,
    unit_name,
)
from beampod.deploy._render import TARGETS, diff, render, write
from beampod.deploy._systemd import parse_exec

__all__ = [
    "TARGETS",
    "CheckResult",
    "DeployOptions",
    "Placed",
    "check",
    "diff",
    "host_argv",
    "parse_exec",
    "place",
    "render",
    "rendering_pod",
    "service_place",
    "unit_name",
    "write",
]
