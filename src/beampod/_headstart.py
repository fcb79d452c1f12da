"""``beampod up -d``'s head start: the slowest service spawned before the configuration
is imported (ADR 0035).

The command line imports pydantic and the configuration models, validates the pod's
config, builds every service's definition and only then forks the supervisor, which
spawns Tiled, the slowest service, first: ~0.3 s after `up -d` began on a 2-core
machine, a tenth of Tiled's own start. Nothing in that spawn needs the models, though:
a Python command line, a few environment variables, a log file.

So the supervisor records how it spawned the first service it starts (one that waits
for nothing and prepares nothing) once that service was ready, keyed by the bytes of
the pod's config and secrets files and the ``BEAMPOD_*`` environment. The next
``up -d`` with the same key forks the supervisor at once, whose first act (holding the
supervisor lock) is to spawn that service from the record, before it imports anything
of beampod's configuration. The supervisor then loads and validates the config as
always and *adopts* the process only if its definition spawns exactly what was spawned;
otherwise, and whenever the pod does not start, the early process is stopped. A changed
or broken config changes the key: no head start, nothing spawned before validation. The
command line then only waits for the pod (``cli/_headstart.py``); the record is made
only for a pod about which ``up -d`` would have nothing else to say.

Standard library only (and ``beampod._podhome``, ``beampod._net``, ``beampod._spawning``):
this runs before the command line imports anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from beampod._net import port_is_free
from beampod._podhome import POD_UMASK, PodHome, write_private
from beampod._spawning import (
    AdoptedProcess,
    Forked,
    can_fork,
    fork_detached,
    live_supervisor_pid,
    open_service_log,
    spawn_options,
    try_lock_supervisor,
)

RECORD_NAME = "head-start.json"
_RECORD_VERSION = 2  # 2: several records, one per key


# -- the record ----------------------------------------------------------------------


def head_start_key(
    home: PodHome, environ: Mapping[str, str], executable: str | None = None
) -> str | None:
    """What a recorded spawn is valid for: the Python interpreter's path (default: this
    one's), the config and secrets files' bytes and the ``BEAMPOD_*`` environment
    (which host this is, say). None if a file is missing."""
    python = sys.executable if executable is None else executable
    digest = hashlib.sha256(f"{_RECORD_VERSION}\0{python}\0".encode())
    try:
        for path in (home.config_file, home.secrets_file):
            digest.update(path.read_bytes())
            digest.update(b"\0")
    except OSError:
        return None
    for name in sorted(environ):
        if name.startswith("BEAMPOD_"):
            digest.update(f"{name}={environ[name]}\0".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Spawned:
    """How the supervisor spawned one service: enough to spawn it again the same way."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None


def record_path(home: PodHome) -> Path:
    return home.run_dir / RECORD_NAME


@dataclass(frozen=True)
class Record:
    """A recorded spawn, and the paths that must not exist for it to apply (where a
    pod's instrument environments would be: ``up`` checks those, ADR 35)."""

    spawned: Spawned
    absent: tuple[str, ...] = ()
    # (host, port, udp) it binds: taken, the supervisor's own check names what holds it.
    ports: tuple[tuple[str, int, bool], ...] = ()

    def applies(self) -> bool:
        return not any(os.path.lexists(path) for path in self.absent) and all(
            port_is_free(host, port, udp) for host, port, udp in self.ports
        )


#: Records kept, the most recent first: one per key, so that ``up -d`` through another
#: interpreter path (``python -m beampod`` runs ``.venv/bin/python``, the ``beampod``
#: script ``.venv/bin/python3``) or of a config edited back finds its own.
KEPT_RECORDS = 4


def write_record(home: PodHome, key: str, record: Record) -> None:
    """Write ``record`` for the next ``up -d`` under ``key`` (owner-only, replaced
    atomically), keeping the most recent records of other keys."""
    spawned = record.spawned
    entry = {
        "key": key,
        "name": spawned.name,
        "argv": list(spawned.argv),
        "env": spawned.env,
        "cwd": spawned.cwd,
        "absent": list(record.absent),
        "ports": [list(p) for p in record.ports],
    }
    others = [e for e in _entries(home) if e.get("key") != key]
    body = {"version": _RECORD_VERSION, "records": [entry, *others][:KEPT_RECORDS]}
    write_private(record_path(home), json.dumps(body))


def _entries(home: PodHome) -> list[dict[str, Any]]:
    try:
        body = json.loads(record_path(home).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(body, dict) or body.get("version") != _RECORD_VERSION:
        return []
    entries = body.get("records")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict)]


def read_record(home: PodHome, key: str) -> Record | None:
    """The record written under ``key``; None if there is none (or it is malformed)."""
    body = next((e for e in _entries(home) if e.get("key") == key), None)
    if body is None:
        return None
    try:
        env = body["env"]
        cwd = body["cwd"]
        if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
            return None
        spawned = Spawned(
            name=str(body["name"]),
            argv=tuple(str(a) for a in body["argv"]),
            env={str(k): v for k, v in env.items()},
            cwd=cwd if isinstance(cwd, str) else None,
        )
        ports = tuple((str(h), int(p), bool(u)) for h, p, u in body["ports"])
        return Record(spawned, tuple(str(p) for p in body["absent"]), ports)
    except (ValueError, KeyError, TypeError):
        return None


# -- the early process ----------------------------------------------------------------


class EarlyStart:
    """A service spawned from the record, until the supervisor adopts or discards it."""

    def __init__(self, spawned: Spawned, popen: subprocess.Popen[bytes], offset: int) -> None:
        self.spawned = spawned
        self.offset = offset  # where its readiness probe reads the log from
        self.started_at = time.time()
        self._popen: subprocess.Popen[bytes] | None = popen

    def adopt(self) -> AdoptedProcess:
        assert self._popen is not None, "adopted or discarded already"
        popen, self._popen = self._popen, None
        return AdoptedProcess(popen)

    def discard(self, timeout: float = 5.0) -> None:
        """Stop it and everything it started (its process group); idempotent."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def spawn_early(home: PodHome, spawned: Spawned) -> EarlyStart:
    """Spawn ``spawned`` as the supervisor would (``services._process.spawn``)."""
    log = home.log_file(spawned.name)
    offset = open_service_log(log, spawned.name, " (head start)")
    with log.open("ab") as out:
        popen = subprocess.Popen(spawned.argv, **spawn_options(spawned.env, out, spawned.cwd))
    return EarlyStart(spawned, popen, offset)


# -- `up -d` with a head start ---------------------------------------------------------

SupervisorMain = Callable[[PodHome, IO[str] | None, EarlyStart | None], int]


def up_with_head_start(home: PodHome, supervise: SupervisorMain) -> Forked | None:
    """Fork the detached supervisor of ``home`` now, with its recorded first service
    spawned before anything else, if the record's key matches; None when it does not
    (or a supervisor runs already, or forking is unsafe here): then ``up -d`` goes the
    usual way. ``supervise(home, lock, early)`` runs the supervisor in the child."""
    if not can_fork() or live_supervisor_pid(home) is not None:
        return None
    key = head_start_key(home, os.environ)
    record = read_record(home, key) if key is not None else None
    if key is None or record is None or not record.applies():
        return None
    home.state_file.unlink(missing_ok=True)
    log = home.log_file("supervisor")
    log.parent.mkdir(parents=True, exist_ok=True)

    def child() -> int:
        os.umask(POD_UMASK)
        lock = try_lock_supervisor(home)
        # Re-read under the lock: another `up` may have changed the pod meanwhile.
        again = read_record(home, key) if lock is not None else None
        early = spawn_early(home, again.spawned) if again and again.applies() else None
        try:
            return supervise(home, lock, early)
        finally:
            if early is not None:
                early.discard()  # a no-op once adopted

    return fork_detached(log, child)


#: How long ``up -d`` waits for a change of any service's state (``--timeout``).
UP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class DetachedUp:
    """A command line that is ``up -d`` and nothing more."""

    home: str | None = None
    debug: bool = False
    timeout: float = UP_TIMEOUT_S


def detached_up(argv: Sequence[str]) -> DetachedUp | None:
    """``beampod [--home H] [--debug] up -d|--detach [--timeout S]`` exactly (what a head
    start may serve); None for any other command line, which argparse then parses (and
    refuses, if it is wrong: ``--timeout soon``)."""
    home: str | None = None
    debug = False
    args = list(argv)
    while args and args[0] != "up":
        opt = args.pop(0)
        if opt == "--home" and args:
            home = args.pop(0)
        elif opt.startswith("--home="):
            home = opt.partition("=")[2]
        elif opt == "--debug":
            debug = True
        else:
            return None
    detach = False
    timeout = UP_TIMEOUT_S
    rest = args[1:]
    while rest:
        opt = rest.pop(0)
        if opt in ("-d", "--detach"):
            detach = True
            continue
        if opt == "--timeout" and rest:
            value = rest.pop(0)
        elif opt.startswith("--timeout="):
            value = opt.partition("=")[2]
        else:
            return None
        try:
            timeout = float(value)
        except ValueError:
            return None
    return DetachedUp(home, debug, timeout) if args and detach else None
