"""Text of the files ``beampod new facility`` writes (see ``_facility_scaffold``)."""

from __future__ import annotations

from collections.abc import Sequence

# The demo's IOC families; ``{instrument}`` becomes each instrument's name.
FACILITY_IOCS = (
    ("mini_beamline", "{instrument}:mini:"),
    ("random_walk", "{instrument}:random_walk:horiz-"),
    ("random_walk", "{instrument}:random_walk:vert-"),
    ("simple", "{instrument}:simple:"),
    ("thermo_sim", "{instrument}:thermo:"),
)

QUEUE_PORT_BASE = 61000  # above Linux's ephemeral range (32768-60999); 3 ports each

GITIGNORE = """\
# Secrets and everything a running pod writes stay out of the repository.
secrets.yaml
data/
logs/
run/
spool/
environments/
# Python
__pycache__/
*.egg-info/
.pytest_cache/
build/
dist/
"""


def queue_ports(index: int) -> tuple[int, int, int]:
    """HTTP, control and info port of the ``index``-th instrument (0-based)."""
    base = QUEUE_PORT_BASE + 3 * index
    return base, base + 1, base + 2


def instrument_entry(name: str, index: int) -> str:
    """An instrument's own lines: only what differs from ``instrument_defaults``."""
    http, control, info = queue_ports(index)
    return (
        f"  {name}:\n    queue: {{http_port: {http}, control_port: {control}, info_port: {info}}}\n"
    )


def config_yaml(prefix: str, names: Sequence[str], cycle: str) -> str:
    iocs = "\n".join(f'    - {{family: {fam}, prefix: "{pfx}"}}' for fam, pfx in FACILITY_IOCS)
    entries = "".join(instrument_entry(n, i) for i, n in enumerate(names))
    return f"""\
# beampod facility configuration: {len(names)} instruments on shared central services.
# Check it with `beampod config check .`; every key: `beampod config schema`.
# Layout, keys and merge rules: beampod's docs/facility.md.
version: 1

pod:
  name: {prefix}
  bind: 127.0.0.1
  # A writer process per instrument (1). N: the writers of N instruments of one host and
  # cycle share a process, each still with its own keys and consumer: ~130 MB resident
  # less per pooled instrument (beampod's docs/adr/0020-writer-pool.md).
  writer_pool_size: 1
  # An agent process per instrument (1). N: the agents of N instruments of one host and
  # cycle share a process, each with its own bus user: ~35 MB resident less per pooled
  # instrument (beampod's docs/adr/0025-agent-pool.md).
  agent_pool_size: 1
  # A queue HTTP server process per instrument (1). N: the HTTP servers of N instruments
  # of one host and cycle share a process, each on its own port with its own keys: ~60 MB
  # resident less per pooled instrument (beampod's docs/adr/0034-queue-http-pool.md).
  queue_http_pool_size: 1
  # Tiled, the writers and the web console run at this nice value once ready. A pod
  # has 5, so that storing yields the CPU to its scan; a facility's store serves every
  # instrument, and at 5 on a shared machine each request queued behind the
  # instruments' processes (beampod's docs/adr/0043-a-facility-s-store-at-the-
  # instruments-priority.md). 5: a scan first, as in a pod.
  background_nice: 0

# Machines of the facility. Each instrument runs on one (`host:`), the central services
# on `central_host`. Ports of two different hosts may coincide; on one host they may not.
hosts:
  localhost: {{address: 127.0.0.1}}
central_host: localhost

# Software environment cycles (docs/environments.md); each instrument names the one it
# uses (`cycle:`). `beampod env lock|build CYCLE` makes the environment.
environments:
  cycles:
    "{cycle}": {{requirements: []}}

# Central services shared by every instrument. Each instrument gets its own bus subject
# (<name>.bluesky.runengine.documents), JetStream stream and Tiled container.
bus:
  transport: nats
  port: 4222
  monitor_port: 8222
  cluster_size: 3          # a 3-node JetStream cluster
  cluster_port: 6222
  # A stream's events emitted within 400 ms travel as one event_page message: the
  # cluster's cost is per message (beampod's docs/adr/0037-events-travel-as-pages-at-a-
  # facility.md). 0: one message per event, for the least latency on the bus.
  event_page_ms: 400
  stream:
    replicas: 3
    # Each instrument's stream keeps at most this much: one instrument cannot fill
    # the others' storage. All instruments' streams must fit on the bus's disk.
    max_bytes_gb: 1
store:
  backend: postgres        # one PostgreSQL catalog behind Tiled
  port: 5433
tiled:
  port: 8000
redis:
  port: 6379
channel_access:
  # IOCs take consecutive ports from here, across all instruments (5 each): above the
  # central services' ports so that even 999 instruments do not reach them.
  port_base: 10064
  # One process serves all of an instrument's simulated IOCs (each on its own port):
  # ~50 MB resident per instrument instead of ~215 MB for five processes. per_host: one
  # process for every instrument of a host (~3 MB each, not ~50), but one crash stops
  # all their simulated IOCs until it is restarted
  # (beampod's docs/adr/0023-simulated-iocs-per-host.md).
  ioc_processes: per_instrument

# What every instrument gets. An entry under `instruments` states only how it differs:
# mappings merge key by key, scalars and lists replace; "{{instrument}}" in an IOC
# prefix is the instrument's name.
instrument_defaults:
  host: localhost
  package: {prefix}_instruments
  cycle: "{cycle}"
  iocs:
{iocs}
  queue: {{enabled: true, user_groups: {{primary: [".*"]}}}}
  agent: {{enabled: true}}

default_instrument: {names[0]}
instruments:
{entries}"""


def pyproject(prefix: str) -> str:
    return f"""\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{prefix}-facility"
version = "0.1.0"
description = "Facility code ({prefix}_facility) and the instrument package ({prefix}_instruments)"
requires-python = ">=3.11"
# The simulated hardware comes from beampod.demo (installed with beampod); replace it
# with the facility's real devices and drop that import.
dependencies = ["bluesky>=1.14", "ophyd>=1.10"]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools]
packages = ["{prefix}_facility", "{prefix}_instruments"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""


FACILITY_INIT = '''\
"""{prefix}_facility: what every instrument of the facility shares (like NSLS-II's nslsii).

- ``devices(iocs)``: the facility's standard hardware, built from an instrument's IOCs
  (here: the simulated hardware of the bluesky-pods demo, from ``beampod.demo``);
- ``plans()``: bluesky's plans, the demo's instrument plans and the facility's own;
- ``callbacks()``: document callbacks every session subscribes;
- ``configure_base(RE, instrument=...)``: session setup, like nslsii's ``configure_base``.

Nothing is created at import time (importing ophyd starts Channel Access).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

FACILITY = "{prefix}"


def devices(iocs: Iterable[Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Devices for the instrument's IOCs (``[{{"family": ..., "prefix": ...}}, ...]``)."""
    from beampod.demo import devices as simulated

    return simulated(iocs=iocs)


def facility_count(
    detectors: list[Any], num: int = 1, delay: float = 0.0, md: dict | None = None
):
    """``count`` with the facility's metadata in the start document."""
    import bluesky.plans as bp

    md = {{"facility": FACILITY, **(md or {{}})}}
    return (yield from bp.count(detectors, num=num, delay=delay, md=md))


def plans() -> dict[str, Callable[..., Any]]:
    from beampod.demo import plans as simulated

    return {{**simulated(), "facility_count": facility_count}}


class RunSummary:
    """Prints one line per finished run: uid, plan and number of events."""

    def __init__(self) -> None:
        self.events = 0
        self.plan = "?"

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.events, self.plan = 0, doc.get("plan_name", "?")
        elif name == "event":
            self.events += 1
        elif name == "stop":
            uid, status = doc["run_start"][:8], doc.get("exit_status")
            print(f"[{{FACILITY}}] run {{uid}} ({{self.plan}}): {{self.events}} events, {{status}}")


def callbacks() -> list[Callable[[str, dict[str, Any]], None]]:
    return [RunSummary()]


def configure_base(RE: Any, *, instrument: str, cycle: str | None = None) -> None:
    """Session setup every instrument gets: metadata and the shared callbacks."""
    RE.md["facility"] = FACILITY
    RE.md["instrument"] = instrument
    if cycle:
        RE.md["cycle"] = cycle
    for callback in callbacks():
        RE.subscribe(callback)
'''

INSTRUMENTS_INIT = '''\
"""{prefix}_instruments: the one instrument package every instrument of the facility uses.

An instrument differs from the others by its settings in ``config.yaml`` (IOC prefixes,
ports, host, cycle), not by its code: ``devices(iocs)`` builds PV names from the
instrument's own IOC prefixes. The shared code lives in ``{prefix}_facility``.

An instrument that really needs code of its own gets its own package (its
``devices()``/``plans()`` call these and add to them) and names it with ``package:``
in its entry of ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def devices(iocs: Iterable[Mapping[str, str]] | None = None) -> dict[str, Any]:
    from {prefix}_facility import devices as shared

    return shared(iocs)


def plans() -> dict[str, Callable[..., Any]]:
    from {prefix}_facility import plans as shared

    return shared()
'''

TEST = '''\
"""The facility's packages follow beampod's instrument convention (no IOCs needed)."""

from __future__ import annotations

import {prefix}_facility
import {prefix}_instruments

IOCS = [{{"family": "mini_beamline", "prefix": "{first}:mini:"}}]


def test_instrument_package_convention() -> None:
    devices = {prefix}_instruments.devices(IOCS)
    plans = {prefix}_instruments.plans()
    assert {{"pinhole", "motor_ph", "ring_current"}} <= set(devices)
    assert devices["pinhole"].det.pvname == "{first}:mini:ph:det"
    assert {{"count", "scan", "facility_count"}} <= set(plans)
    assert not set(devices) & set(plans)
    for key, device in devices.items():
        assert key.isidentifier() and device.name == key


def test_facility_plan_and_session_setup() -> None:
    from bluesky import RunEngine
    from ophyd.sim import det

    RE = RunEngine({{}})
    {prefix}_facility.configure_base(RE, instrument="{first}", cycle="{cycle}")
    docs: list[tuple[str, dict]] = []
    RE({prefix}_facility.facility_count([det], num=2), lambda n, d: docs.append((n, d)))
    start = next(d for n, d in docs if n == "start")
    assert (start["facility"], start["instrument"]) == ("{prefix}", "{first}")
    assert start["cycle"] == "{cycle}"
    assert sum(n == "event" for n, _ in docs) == 2
'''


def readme(prefix: str, names: Sequence[str]) -> str:
    last = names[-1]
    return f"""\
# {prefix} facility

One repository of configuration for {len(names)} instruments ({names[0]} … {last}) on
shared central services, run by beampod.

- `config.yaml` — the facility: hosts, central services (bus, store, Tiled), the
  defaults every instrument gets (`instrument_defaults`) and each instrument's own lines.
- `{prefix}_facility/` — code every instrument shares: devices, plans, callbacks,
  session setup (`configure_base`).
- `{prefix}_instruments/` — the instrument package all instruments use; each differs
  only by its settings in `config.yaml`.
- `tests/` — the packages' own tests.

Secrets (`secrets.yaml`) and everything a running pod writes (`data/ logs/ run/ spool/`)
are in `.gitignore`.

    pip install -e .                 # or: export PYTHONPATH=$PWD
    pytest                           # the packages' tests, no IOCs needed
    beampod config check .           # every problem of config.yaml at once

Add an instrument: copy the last two lines of `instruments:` in `config.yaml`, rename
it and give it three free queue ports; run `beampod config check .`.
"""
