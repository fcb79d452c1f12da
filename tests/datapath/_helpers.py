"""Helpers for the data-path fault tests: a session process that records what its
RunEngine emitted, pod control through the real CLI, and a document-by-document
comparison of what the RunEngine emitted with what Tiled holds.

No fixed sleeps: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beampod.config import LoadedPod
from tests._zygote import ForkedProcess, start_forked
from tests.conftest import beampod_in_process

Doc = tuple[str, dict[str, Any]]
REPO = Path(__file__).resolve().parents[2]
EMITTER = Path(__file__).with_name("_emitter.py")
POLL_S = 0.1  # polling interval of the deadline loops below, not a readiness guess


def wait_for(
    predicate: Callable[[], Any], deadline_s: float, what: str, interval: float = POLL_S
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may fail while a service is down
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {deadline_s:.0f}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def fill_disk(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


# -- the pod, through its command line ----------------------------------------------------


def status(pod: LoadedPod) -> dict[str, Any]:
    """``beampod status --json`` (its entry, in this process: a poll loop's confirmations
    cost no Python start each)."""
    out = beampod_in_process(pod.home.root, "status", "--json", check=False).stdout
    return json.loads(out) if out.strip() else {}


def service(pod: LoadedPod, name: str) -> dict[str, Any]:
    return status(pod)["services"][name]


def state_now(pod: LoadedPod) -> dict[str, Any]:
    """What ``beampod status --json`` reads (the same function), without starting a
    process: for polling loops, so that waiting does not take the CPU the pod needs to
    recover. The loops below confirm what they waited for through the command (`status`)."""
    from beampod.errors import PodNotRunningError
    from beampod.services import pod_status

    try:
        return pod_status(pod.home).to_json()
    except (PodNotRunningError, OSError):  # not running (yet): nothing is ready
        return {}


def _wait_then_confirm(
    check: Callable[[dict[str, Any]], Any], pod: LoadedPod, deadline_s: float, what: str
) -> Any:
    """Poll ``check`` on the state in-process, then until it holds on `beampod status`."""
    end = time.monotonic() + deadline_s
    wait_for(lambda: check(state_now(pod)), deadline_s, what)
    return wait_for(lambda: check(status(pod)), max(end - time.monotonic(), 30.0), what)


def wait_service_state(
    pod: LoadedPod,
    name: str,
    holds: Callable[[dict[str, Any]], bool],
    deadline_s: float,
    what: str,
    confirm: bool = True,
) -> dict[str, Any]:
    """Service ``name``'s status once ``holds(status)``: polled in-process, then (with
    ``confirm``) until it holds on `beampod status` too. ``confirm=False`` for a state
    that lasts only seconds (degraded before a restart): the in-process state is what
    `beampod status` prints, read without a process per poll."""

    def check(st: dict[str, Any]) -> dict[str, Any] | None:
        svc = st.get("services", {}).get(name)
        return svc if svc and holds(svc) else None

    if not confirm:
        return wait_for(lambda: check(state_now(pod)), deadline_s, what)
    return _wait_then_confirm(check, pod, deadline_s, what)


def wait_service_ready(
    pod: LoadedPod, name: str, deadline_s: float = 120.0, not_pid: int | None = None
) -> dict[str, Any]:
    def ready(st: dict[str, Any]) -> dict[str, Any] | None:
        svc = st.get("services", {}).get(name)
        if svc and svc["state"] == "ready" and svc["pid"] and svc["pid"] != not_pid:
            return svc
        return None

    return _wait_then_confirm(ready, pod, deadline_s, f"service {name} ready")


def wait_pod_ready(pod: LoadedPod, deadline_s: float = 120.0) -> dict[str, Any]:
    """Every service ready again (a fault must not leave anything failed behind)."""

    def ready(st: dict[str, Any]) -> dict[str, Any] | None:
        svcs = st.get("services", {})
        if svcs and all(s["state"] == "ready" for s in svcs.values()):
            return st
        return None

    try:
        return _wait_then_confirm(ready, pod, deadline_s, "every service ready")
    except AssertionError:
        bad = {
            n: (s["state"], s.get("message"))
            for n, s in status(pod)["services"].items()
            if s["state"] != "ready"
        }
        raise AssertionError(f"services not ready after the fault: {bad}") from None


# -- a session process that records what its RunEngine emitted -----------------------------


@dataclass
class Emitter:
    """``python tests/datapath/_emitter.py``: one run through ``make_run_engine(pod)``,
    forked from the session's pre-imported process (``tests/_zygote.py``)."""

    pod: LoadedPod
    workdir: Path
    min_events: int = 20
    delay: float = 0.05
    open_ended: bool = True  # keep going (after min_events) until finish() is called
    flush_s: float = 30.0
    tag: str = "datapath"
    instrument: str | None = None  # a facility's instrument (default: the default one)
    hold_after: int | None = None
    hold_gated: bool = False  # hold only after hold_now() (and 3 events more)
    proc: ForkedProcess | None = None
    lines: list[str] = field(default_factory=list)
    events: int = 0
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.record = self.workdir / f"{self.tag}.pickle"
        self.until = self.workdir / f"{self.tag}.finish"
        self.log = self.workdir / f"{self.tag}.stderr"
        self.hold_file = self.workdir / f"{self.tag}.hold"

    def start(self) -> Emitter:
        argv = [
            sys.executable,
            str(EMITTER),
            "--home",
            str(self.pod.home.root),
            "--record",
            str(self.record),
            "--min-events",
            str(self.min_events),
            "--delay",
            str(self.delay),
            "--flush",
            str(self.flush_s),
            "--tag",
            self.tag,
        ]
        if self.open_ended:
            argv += ["--until", str(self.until)]
        if self.instrument is not None:
            argv += ["--instrument", self.instrument]
        if self.hold_after is not None:
            argv += ["--hold-after", str(self.hold_after)]
        if self.hold_gated:
            argv += ["--hold-file", str(self.hold_file)]
        env = {k: v for k, v in os.environ.items() if k != "BEAMPOD_HOME"}
        # Forked from a process that imported bluesky and ophyd once (tests/_zygote.py),
        # not a fresh interpreter: ~1.6 CPU-s less per session process.
        with self.log.open("w") as stderr:
            self.proc = start_forked(
                "tests.datapath._emitter", argv[1:], cwd=str(REPO), env=env, stderr=stderr
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("event "):
                self.events = int(line.split()[1])

    def wait_events(self, n: int, deadline_s: float = 90.0) -> int:
        def enough() -> bool:
            if self.proc is not None and self.proc.poll() is not None and self.events < n:
                raise AssertionError(f"emitter exited early:\n{self.stderr()}")
            return self.events >= n

        wait_for(enough, deadline_s, f"{n} events emitted", interval=0.02)
        return self.events

    def hold_now(self) -> None:
        """Let a ``hold_gated`` emitter hold, after three more events."""
        self.hold_file.touch()

    def finish(self) -> None:
        self.until.touch()

    def result(self, deadline_s: float = 90.0) -> tuple[list[Doc], dict[str, Any]]:
        """Wait for the process to exit; (what the RunEngine emitted, its final report)."""
        assert self.proc is not None
        try:
            code = self.proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"emitter did not finish in {deadline_s}s:\n{self.stderr()}"
            ) from None
        if self._reader is not None:
            self._reader.join(10)
        assert code == 0, f"emitter exited {code}:\n{self.stderr()}"
        report = next(
            json.loads(line[len("result ") :]) for line in self.lines if line.startswith("result ")
        )
        with self.record.open("rb") as fh:
            emitted: list[Doc] = pickle.load(fh)
        return emitted, report

    def streamed(self) -> list[Doc]:
        """What the RunEngine had emitted so far (also after the process was killed)."""
        docs: list[Doc] = []
        with open(str(self.record) + ".stream", "rb") as fh:
            while True:
                try:
                    docs.append(pickle.load(fh))
                except EOFError:
                    return docs

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- what the store holds ------------------------------------------------------------------


def start_uid(docs: list[Doc]) -> str:
    return next(str(d["uid"]) for n, d in docs if n == "start")


def stored_run(pod: LoadedPod, uid: str, instrument: str | None = None) -> Any:
    from beampod.store import open_catalog

    return open_catalog(pod, instrument)[uid]


STORE_POLL_S = 0.5  # polling interval of the loops that ask Tiled (see run_lookup)


def run_lookup(pod: LoadedPod, instrument: str | None = None) -> Callable[[str], Any]:
    """``stored_run`` for a polling loop: one Tiled client for all its polls. Opening a
    client costs more CPU than the lookup itself, in this process and in Tiled; polled
    every 0.1 s, a fresh client per poll kept most of a core busy while the pod under
    test needed it. Opened again after a poll failed otherwise than "no such run" (Tiled
    restarted, not reachable)."""
    from beampod.store import RunNotFoundError, open_catalog

    opened: list[Any] = []

    def lookup(uid: str) -> Any:
        try:
            if not opened:
                opened.append(open_catalog(pod, instrument))
            return opened[0][uid]
        except RunNotFoundError:
            raise
        except Exception:
            opened.clear()
            raise

    return lookup


def event_table(run: Any, stream: str = "primary") -> Any:
    """The stream's appendable event table straight from Tiled (one row per stored event)."""
    return run.base[stream].base["internal"].read()


def stored_events(pod: LoadedPod, em: Emitter, lookup: Callable[[str], Any] | None = None) -> int:
    """Events of the emitter's (current) run that Tiled holds now; 0 before it exists.
    ``lookup``: a ``run_lookup`` to reuse (in a polling loop)."""
    uid = next((ln.split()[1] for ln in em.lines if ln.startswith("uid ")), None)
    if uid is None:
        return 0
    try:
        run = lookup(uid) if lookup else stored_run(pod, uid, em.instrument)
        return len(event_table(run))
    except KeyError:
        return 0


def wait_stored(pod: LoadedPod, em: Emitter, rows: int, deadline_s: float = 60.0) -> int:
    """Wait until the run is in Tiled with at least ``rows`` events: a fault injected
    then really hits a run the writer is in the middle of."""
    lookup = run_lookup(pod, em.instrument)
    return int(
        wait_for(
            lambda: (n := stored_events(pod, em, lookup)) >= rows and n,
            deadline_s,
            f"{rows} events of the run stored",
            interval=STORE_POLL_S,
        )
    )


def kill_writer_mid_run(pod: LoadedPod, em: Emitter, rows: int = 10) -> None:
    """SIGKILL the writer once ``rows`` events of ``em``'s run are stored; the
    supervisor restarts it, the run goes on, and Tiled ends up with exactly what the
    RunEngine emitted."""
    import signal

    wait_stored(pod, em, rows)
    before = service(pod, "writer")
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = em.events
    after = wait_service_ready(pod, "writer", not_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1
    em.wait_events(killed_at + 10)  # the run goes on after the writer is back
    finish_and_assert_stored(pod, em)


def finish_and_assert_stored(pod: LoadedPod, em: Emitter, deadline_s: float = 90.0) -> None:
    """End ``em``'s run; every document reached the bus and Tiled holds exactly what the
    RunEngine emitted (``deadline_s`` for each of the two waits)."""
    em.finish()
    emitted, report = em.result(deadline_s=deadline_s)
    assert report["delivered"], report
    assert_stored_exactly(pod, emitted, deadline_s=max(deadline_s, 120.0), instrument=em.instrument)


def wait_for_stored_run(
    pod: LoadedPod, emitted: list[Doc], deadline_s: float = 120.0, instrument: str | None = None
) -> Any:
    """The run, once Tiled holds its stop document and at least as many rows as events
    were emitted (more rows would be duplicates: the comparison then fails)."""
    uid = start_uid(emitted)
    n_events = sum(1 for n, _ in emitted if n == "event")
    lookup = run_lookup(pod, instrument)

    def complete() -> Any:
        run = lookup(uid)
        if "stop" not in run.metadata or run.metadata["stop"] is None:
            return None
        if len(event_table(run)) < n_events:
            return None
        return run

    return wait_for(complete, deadline_s, f"run {uid} complete in Tiled", interval=STORE_POLL_S)


def _plain(value: Any) -> Any:
    """JSON-like normal form: tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _differences(what: str, got: Any, want: Any, path: str = "") -> str:
    """Where a stored document differs from the emitted one, as readable lines."""
    lines: list[str] = []

    def walk(g: Any, w: Any, at: str) -> None:
        if isinstance(g, dict) and isinstance(w, dict):
            for k in sorted(set(g) | set(w), key=str):
                if k not in g:
                    lines.append(f"{at}/{k}: missing in the store (emitted {w[k]!r})")
                elif k not in w:
                    lines.append(f"{at}/{k}: only in the store ({g[k]!r})")
                else:
                    walk(g[k], w[k], f"{at}/{k}")
        elif g != w:
            lines.append(f"{at}: stored {g!r}, emitted {w!r}")

    walk(got, want, path)
    return f"{what} differs:\n" + "\n".join(lines[:20])


def _strip_dtype_numpy(desc: dict[str, Any], emitted: dict[str, Any]) -> dict[str, Any]:
    """TiledWriter adds ``dtype_numpy`` to every data key (top level and configuration)
    it stores; drop it where the emitted descriptor had none, so the rest compares
    exactly."""
    out = dict(desc)

    def strip(stored_keys: dict[str, Any], emitted_keys: dict[str, Any]) -> dict[str, Any]:
        return {
            k: {
                f: v
                for f, v in spec.items()
                if not (f == "dtype_numpy" and "dtype_numpy" not in emitted_keys.get(k, {}))
            }
            for k, spec in stored_keys.items()
        }

    out["data_keys"] = strip(desc.get("data_keys", {}), emitted.get("data_keys", {}))
    conf = {}
    for obj, c in desc.get("configuration", {}).items():
        c = dict(c)
        c["data_keys"] = strip(
            c.get("data_keys", {}),
            emitted.get("configuration", {}).get(obj, {}).get("data_keys", {}),
        )
        conf[obj] = c
    out["configuration"] = conf
    return out


def assert_stored_exactly(
    pod: LoadedPod, emitted: list[Doc], deadline_s: float = 120.0, instrument: str | None = None
) -> Any:
    """Document by document: the store holds exactly what the RunEngine emitted, once.

    start and stop equal; each descriptor equal (modulo TiledWriter's added
    ``dtype_numpy``); the event table has one row per emitted event -- none missing,
    none duplicated -- with the same seq_num, time, data values and timestamps.
    """
    from tiled.queries import Eq

    from beampod.store import open_catalog

    names = [n for n, _ in emitted]
    assert names[0] == "start" and names[-1] == "stop", names[:3] + names[-3:]
    assert set(names) <= {"start", "descriptor", "event", "stop"}, set(names)
    run = wait_for_stored_run(pod, emitted, deadline_s, instrument)
    start = emitted[0][1]
    stop = emitted[-1][1]
    assert _plain(dict(run.metadata["start"])) == _plain(start)
    assert _plain(dict(run.metadata["stop"])) == _plain(stop)
    # Exactly one run with this uid in the catalog.
    assert len(open_catalog(pod, instrument).client.search(Eq("start.uid", start["uid"]))) == 1

    descriptors = [d for n, d in emitted if n == "descriptor"]
    stored_desc = {d["uid"]: d for d in run.descriptors}
    assert sorted(stored_desc) == sorted(d["uid"] for d in descriptors)
    for want in descriptors:
        got = _strip_dtype_numpy(dict(stored_desc[want["uid"]]), want)
        assert _plain(got) == _plain(want), _differences(
            f"descriptor {want['uid']}", _plain(got), _plain(want)
        )

    for want in descriptors:
        events = sorted(
            (d for n, d in emitted if n == "event" and d["descriptor"] == want["uid"]),
            key=lambda e: e["seq_num"],
        )
        seqs = [e["seq_num"] for e in events]
        assert seqs == list(range(1, len(events) + 1)), "the emitted events are not 1..N"
        table = event_table(run, want["name"])
        stored_seq = [int(s) for s in table["seq_num"]]
        dups = len(stored_seq) - len(set(stored_seq))
        missing = sorted(set(seqs) - set(stored_seq))
        assert dups == 0 and not missing and len(stored_seq) == len(seqs), (
            f"stream {want['name']}: {len(seqs)} emitted, {len(stored_seq)} rows stored, "
            f"{dups} duplicated, missing seq_nums {missing[:20]}"
        )
        if stored_seq != seqs:
            at = next(i for i, (a, b) in enumerate(zip(stored_seq, seqs, strict=True)) if a != b)
            raise AssertionError(
                f"stream {want['name']}: rows are not in seq_num order from "
                f"row {at}: {stored_seq[max(0, at - 3) : at + 12]}"
            )
        np.testing.assert_array_equal(
            table["time"].to_numpy(), np.array([e["time"] for e in events])
        )
        for key in want["data_keys"]:
            np.testing.assert_array_equal(
                table[key].to_numpy(),
                np.array([e["data"][key] for e in events]),
                err_msg=f"data {key}",
            )
            np.testing.assert_array_equal(
                table[f"ts_{key}"].to_numpy(),
                np.array([e["timestamps"][key] for e in events]),
                err_msg=f"timestamps {key}",
            )
    return run


def stop_emitters(made: list[Emitter], body_passed: bool) -> None:
    """Teardown of a test's session processes: kill them all; none may have outlived a
    test whose body passed (one that failed midway leaves them to this teardown)."""
    alive = [e for e in made if e.proc is not None and e.proc.poll() is None]
    for e in made:
        e.kill()
    if body_passed:
        assert not alive, f"session processes still running at the end: {[e.tag for e in alive]}"
