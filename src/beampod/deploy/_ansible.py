"""An Ansible inventory (the config's hosts) and one playbook that installs a host.

Every destination path starts with ``{{ beampod_root }}`` (default empty), so a test can
install into a temporary directory; ``beampod_system=false`` skips what needs a real
system (the service user, file owners, systemd).
"""

from __future__ import annotations

from typing import Any

from beampod.config import PodConfig, effective_hosts
from beampod.deploy._plan import DeployOptions, Placed
from beampod.deploy._systemd import LOG_ROTATION_UNIT

_R = "{{ beampod_root }}"
_SYSTEM = "beampod_system | bool"
_OWNER = "{{ beampod_user if (beampod_system | bool) else omit }}"
_STARTED_UNITS = (
    f"{{{{ beampod_units | reject('equalto', '{LOG_ROTATION_UNIT}.service') | list }}}}"
)


def inventory(config: PodConfig, placed: list[Placed], options: DeployOptions) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for name, host in sorted(effective_hosts(config).items()):
        mine = [p for p in placed if p.host == name]
        hosts[name] = {
            "ansible_host": host.address,
            "beampod_cycles": sorted({p.cycle for p in mine}),
            "beampod_instruments": sorted({p.instrument for p in mine if p.instrument}),
            "beampod_units": sorted(
                [f"{p.unit}.service" for p in mine]
                + ([f"{LOG_ROTATION_UNIT}.service", f"{LOG_ROTATION_UNIT}.timer"] if mine else [])
            ),
        }
    return {
        "all": {
            "hosts": hosts,
            "vars": {
                "beampod_environments": options.environments,
                "beampod_home": options.home_of(config),
                "beampod_overlays": options.overlays,
                "beampod_user": options.user,
            },
        }
    }


def playbook() -> list[dict[str, Any]]:
    env = f"{_R}{{{{ beampod_environments }}}}"
    home = f"{_R}{{{{ beampod_home }}}}"
    units = f"{_R}/etc/systemd/system"
    tasks: list[dict[str, Any]] = [
        {
            "name": "Service user",
            "ansible.builtin.user": {
                "name": "{{ beampod_user }}",
                "system": True,
                "create_home": False,
                "shell": "/usr/sbin/nologin",
            },
            "when": _SYSTEM,
        },
        {
            "name": "Directories of the environments and overlays",
            "ansible.builtin.file": {"path": "{{ item }}", "state": "directory", "mode": "0755"},
            "loop": [env, f"{_R}{{{{ beampod_overlays }}}}", units],
        },
        {
            "name": "Overlay directory of each instrument (PYTHONPATH of its services)",
            "ansible.builtin.file": {
                "path": f"{_R}{{{{ beampod_overlays }}}}/{{{{ item }}}}",
                "state": "directory",
                "mode": "0755",
            },
            "loop": "{{ beampod_instruments }}",
        },
        {
            "name": "Pod home, private to the service user",
            "ansible.builtin.file": {
                "path": "{{ item }}",
                "state": "directory",
                "mode": "0700",
                "owner": _OWNER,
                "group": _OWNER,
            },
            "loop": [home, f"{home}/run", f"{home}/run/env", f"{home}/logs", f"{home}/data"],
        },
        {
            "name": "Packed environment of each cycle",
            "ansible.builtin.copy": {
                "src": "{{ beampod_packs }}/{{ item }}.tar.gz",
                "dest": f"{env}/{{{{ item }}}}.tar.gz",
                "mode": "0644",
            },
            "loop": "{{ beampod_cycles }}",
        },
        {
            "name": "sha256 of each packed environment",
            "ansible.builtin.stat": {
                "path": f"{env}/{{{{ item }}}}.tar.gz",
                "checksum_algorithm": "sha256",
            },
            "loop": "{{ beampod_cycles }}",
            "register": "beampod_pack_stat",
        },
        {
            "name": "Each packed environment matches its .sha256 (else nothing is unpacked)",
            "ansible.builtin.assert": {
                "that": "item.stat.checksum == (lookup('ansible.builtin.file', beampod_packs"
                " + '/' + item.item + '.tar.gz.sha256').split()[0])",
                "fail_msg": "{{ item.item }}.tar.gz does not match its .sha256: damaged or"
                " replaced",
                "quiet": True,
            },
            "loop": "{{ beampod_pack_stat.results }}",
            "loop_control": {"label": "{{ item.item }}"},
        },
        {
            "name": "Environment directory of each cycle",
            "ansible.builtin.file": {
                "path": f"{env}/{{{{ item }}}}",
                "state": "directory",
                "mode": "0755",
            },
            "loop": "{{ beampod_cycles }}",
        },
        {
            "name": "Unpack each cycle's environment",
            "ansible.builtin.unarchive": {
                "src": f"{env}/{{{{ item }}}}.tar.gz",
                "dest": f"{env}/{{{{ item }}}}",
                "remote_src": True,
                "creates": f"{env}/{{{{ item }}}}/bin",
            },
            "loop": "{{ beampod_cycles }}",
        },
        {
            "name": "Configuration",
            "ansible.builtin.copy": {
                "src": "{{ playbook_dir }}/files/config.yaml",
                "dest": f"{home}/config.yaml",
                "mode": "0644",
                "owner": _OWNER,
            },
        },
        {
            "name": "Secrets (a local or ansible-vault file given as beampod_secrets_file)",
            "ansible.builtin.copy": {
                "src": "{{ beampod_secrets_file }}",
                "dest": f"{home}/secrets.yaml",
                "mode": "0600",
                "owner": _OWNER,
            },
            "no_log": True,
        },
        {
            "name": "systemd units of this host",
            "ansible.builtin.copy": {
                "src": "{{ playbook_dir }}/../hosts/{{ inventory_hostname }}/systemd/{{ item }}",
                "dest": f"{units}/{{{{ item }}}}",
                "mode": "0644",
            },
            "loop": "{{ beampod_units }}",
            "notify": "Reload systemd",
        },
        {"name": "Reload systemd now", "ansible.builtin.meta": "flush_handlers"},
        {
            "name": "Units enabled and started",
            "ansible.builtin.systemd_service": {
                "name": "{{ item }}",
                "enabled": True,
                "state": "started",
            },
            # The log rotation's service runs from its timer, not on its own.
            "loop": _STARTED_UNITS,
            "when": _SYSTEM,
            "tags": ["systemd"],
        },
    ]
    return [
        {
            "name": "beampod: cycle environments, configuration, secrets and services",
            "hosts": "all",
            "gather_facts": False,
            "become": "{{ beampod_system | bool }}",
            "vars": {
                "beampod_root": "",
                "beampod_system": True,
                "beampod_packs": "{{ playbook_dir }}/../packs",
            },
            "tasks": tasks,
            "handlers": [
                {
                    "name": "Reload systemd",
                    "ansible.builtin.systemd_service": {"daemon_reload": True},
                    "when": _SYSTEM,
                }
            ],
        }
    ]
