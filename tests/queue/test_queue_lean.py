"""The queue server's processes load only what beampod uses and keep working (ADR 0022).

Each case runs in a fresh interpreter: the policies change ``sys.modules`` for good. The
running processes are checked in tests/services/test_service_imports.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_http_server_builds_without_its_authentication_database() -> None:
    # The HTTP server's import policy: importing the app (and its authentication module,
    # which imports the database modules by name) runs neither SQLAlchemy nor alembic;
    # the database code still works when something calls it.
    run(
        """
        import sys
        from beampod.queue._http_main import lean_imports
        lean_imports()
        import bluesky_httpserver.app, bluesky_httpserver.config
        from bluesky_httpserver import authentication
        loaded = [m for m in ("sqlalchemy", "alembic", "mako") if sys.modules.get(m)]
        assert not loaded, loaded
        # A configuration with a database (not beampod's) gets the real modules on use.
        assert authentication.orm.Principal.__tablename__ == "principals"
        import sqlalchemy
        from bluesky_httpserver.database.core import initialize_database
        engine = sqlalchemy.create_engine("sqlite://")
        initialize_database(engine)
        assert "alembic" in sys.modules
        # The name the app module bound at import (a forwarder) reaches the real code.
        bluesky_httpserver.app.purge_expired(engine, authentication.orm.Session)()
        """
    )


def test_http_server_builds_without_jwt_and_still_signs_tokens_when_asked() -> None:
    # python-jose's JWT (and cryptography, its backend) is for bluesky-httpserver's own
    # tokens, which single-user mode behind the gate never issues: not imported by the
    # app; a configuration that issues tokens still signs and checks them.
    run(
        """
        import sys
        from datetime import timedelta
        from beampod.queue._http_main import lean_imports
        lean_imports()
        import bluesky_httpserver.app, bluesky_httpserver.config
        from bluesky_httpserver import authentication
        loaded = [m for m in ("cryptography", "jose.jws", "jose.jwk") if m in sys.modules]
        assert not loaded, loaded
        token = authentication.create_access_token(
            {"sub": "alice"}, expires_delta=timedelta(minutes=1), secret_key="k"
        )
        assert authentication.decode_token(token, ["k"])["sub"] == "alice"
        from fastapi import HTTPException
        try:
            authentication.decode_token(token, ["other"])
        except HTTPException:
            pass
        else:
            raise AssertionError("a token signed with another key was accepted")
        """
    )


def test_run_engine_records_ophyd_async_version_without_importing_it() -> None:
    # The worker builds its RunEngine without ophyd-async (bluesky imports it only for
    # RE.md["versions"]), the version is still recorded, and a plan can import it later.
    run(
        """
        import importlib.metadata, sys
        from bluesky import RunEngine
        from beampod.queue._lean import versions_without_import
        assert "ophyd_async" not in sys.modules
        with versions_without_import() as record:
            RE = RunEngine({})
        record(RE)
        assert "ophyd_async" not in sys.modules
        assert RE.md["versions"]["ophyd_async"] == importlib.metadata.version("ophyd-async")
        import ophyd_async
        assert ophyd_async.__version__ == RE.md["versions"]["ophyd_async"]
        """
    )


def test_run_engine_keeps_ophyd_async_an_instrument_imported() -> None:
    run(
        """
        import sys
        import ophyd_async
        from bluesky import RunEngine
        from beampod.queue._lean import versions_without_import
        with versions_without_import() as record:
            RE = RunEngine({})
        record(RE)
        assert sys.modules["ophyd_async"] is ophyd_async
        assert RE.md["versions"]["ophyd_async"] == ophyd_async.__version__
        """
    )


def test_quiet_pipes_still_answer_requests() -> None:
    # The watchdog's and worker's receiving pipe with its longer idle wait: a request
    # is still received and answered (data wakes the thread, not the timeout), and the
    # thread still stops.
    run(
        """
        import multiprocessing, json, threading
        from beampod.queue._lean import IDLE_WAIT_S, quiet_pipe
        from bluesky_queueserver.manager.comms import PipeJsonRpcReceive
        ours, theirs = multiprocessing.Pipe()
        pipe = quiet_pipe(PipeJsonRpcReceive)(conn=theirs, name="test")
        assert pipe._conn_polling_timeout >= IDLE_WAIT_S
        pipe.add_method(lambda value: value * 2, "double")
        pipe.start()
        request = {"method": "double", "params": {"value": 21}, "jsonrpc": "2.0", "id": 1}
        ours.send(json.dumps(request))
        assert ours.poll(60), "no answer"
        assert json.loads(ours.recv())["result"] == 42
        pipe.stop()
        for thread in (pipe._thread_conn, pipe._thread_proc):
            thread.join(60)
            assert not thread.is_alive()
        """
    )


def test_the_watchdogs_modules_stay_shared_with_the_processes_it_forks() -> None:
    # The watchdog freezes what it imported before forking the manager and the worker
    # (ADR 0025): a child's garbage collection then leaves the inherited pages shared.
    # Unfrozen, the child's first collection copied ~16 MB of them (GC headers).
    run(
        """
        import gc, os, sys, time
        from beampod._lazy import defer_imports
        from beampod.queue._manager_main import DEFERRED_IMPORTS, freeze_before_fork
        defer_imports(DEFERRED_IMPORTS)
        import bluesky_queueserver.manager.start_manager
        from beampod.queue._files import process_server
        freeze_before_fork()
        assert gc.get_freeze_count() > 50_000, gc.get_freeze_count()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            gc.collect()
            os.write(w, b"x")
            time.sleep(60)
            os._exit(0)
        try:
            os.read(r, 1)  # the child has collected
            private = 0
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    private += int(line.split()[1])
            assert private < 8 * 1024, f"the child copied {private} kB"
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        """
    )


def test_only_the_manager_loads_redis_and_with_the_queues_credentials() -> None:
    # The watchdog (and so the worker it forks) imports the manager's module without
    # its Redis queue module; the manager loads it, with redis-py's from_url given the
    # queue's Redis user and password, when it creates its queue.
    run(
        """
        import sys
        from beampod._lazy import defer_imports
        from beampod.queue._manager_main import DEFERRED_IMPORTS, lazy_plan_queue
        defer_imports(DEFERRED_IMPORTS)
        lazy_plan_queue("pw", "bl01-queue")
        from bluesky_queueserver.manager import manager
        from bluesky_queueserver.manager.start_manager import start_manager
        assert not [m for m in sys.modules if m.split(".")[0] in ("redis", "hiredis")]
        uid = manager.PlanQueueOperations.new_item_uid()  # a static method, as upstream
        assert len(uid) == 36
        pq = manager.PlanQueueOperations(redis_host="localhost:1/0", name_prefix="bl01")
        from bluesky_queueserver.manager.plan_queue_ops import PlanQueueOperations
        assert type(pq) is PlanQueueOperations  # the real class
        import redis.asyncio
        client = redis.asyncio.from_url("redis://localhost:1/0")
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("bl01-queue", "pw"), kwargs
        """
    )


def test_the_worker_decodes_ca_strings_without_charset_normalizer_until_needed() -> None:
    # pyepics imports charset_normalizer for its fallback decoding only: a stand-in (set
    # by the watchdog, inherited by the worker) loads it when a string needs it.
    run(
        """
        import sys
        from beampod.queue._lean import WORKER_FALLBACK_MODULES, forward_modules
        forward_modules(WORKER_FALLBACK_MODULES)
        from epics.utils import bytes2str
        assert bytes2str(b"pinhole") == "pinhole"
        assert type(sys.modules["charset_normalizer"]).__name__ == "ForwardingModule"
        assert "charset_normalizer.api" not in sys.modules
        assert bytes2str("\u00e9t\u00e9".encode("latin-1") * 8)  # not UTF-8: the fallback
        assert "charset_normalizer.api" in sys.modules
        """
    )


def test_an_idle_manager_asks_its_worker_less_often_and_wakes_on_a_request() -> None:
    # The state request of the manager's periodic task waits for a request while the
    # queue is idle; a read (``status``) does not end the wait, anything else does, and
    # while the worker is busy nothing waits. (bluesky-queueserver's RE Manager needs a
    # whole queue server to construct: the real ones run in tests/queue/test_queue_pod.py.)
    import asyncio

    from beampod.queue._lean import idle_state_polls

    class Manager:
        def __init__(self) -> None:
            self._manager_state = type("S", (), {"value": "idle"})()
            self._worker_state_info: dict[str, object] = {
                "environment_state": "idle",
                "re_state": "idle",
            }
            self._worker_status_task: asyncio.Task[object] | None = None
            self.requests = 0

        async def _zmq_execute(self, msg: object) -> str:
            return "answered"

        async def _worker_request_state(self) -> tuple[dict[str, object], str]:
            self.requests += 1
            return self._worker_state_info, ""

    async def scenario() -> None:
        manager = idle_state_polls(Manager)()

        async def periodic() -> object:
            return await manager._worker_request_state()

        # Not the periodic task (a request's own state query): never held back.
        assert (await manager._worker_request_state())[1] == ""
        manager._worker_status_task = task = asyncio.ensure_future(periodic())
        await asyncio.sleep(0)  # the task starts its wait
        assert await manager._zmq_execute({"method": "status"}) == "answered"
        await asyncio.sleep(0)
        assert not task.done() and manager.requests == 1  # a read: still waiting
        await manager._zmq_execute({"method": "queue_start"})
        await asyncio.wait_for(task, 60)  # woken by the request, not the period
        assert manager.requests == 2
        # Active for a while after it, and while the worker runs: no wait at all.
        manager._worker_status_task = task = asyncio.ensure_future(periodic())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        manager._beampod_active_until = 0.0
        manager._worker_state_info["re_state"] = "running"
        manager._worker_status_task = task = asyncio.ensure_future(periodic())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done() and manager.requests == 4

    asyncio.run(scenario())


def test_describing_the_devices_does_not_import_area_detectors() -> None:
    # The worker describes its devices at each environment open; for an instrument
    # without area detectors that no longer imports ophyd's area detector support, and
    # the description is the one the unwrapped function gives.
    run(
        """
        import sys
        from beampod.instrument._ophyd_lean import lean_ophyd
        assert lean_ophyd()
        from ophyd import Component, Device, Signal
        from bluesky import plans as bp
        from bluesky_queueserver.manager import profile_ops
        from beampod.queue._lean import without_areadetector_import

        class Stage(Device):
            x = Component(Signal, value=1.0)
            y = Component(Signal, value=2.0)

        nspace = {"stage": Stage(name="stage"), "count": bp.count}
        original = profile_ops._prepare_devices
        profile_ops._prepare_devices = without_areadetector_import(original)
        _, lean, _, _ = profile_ops.existing_plans_and_devices_from_nspace(nspace=nspace)
        assert "ophyd.areadetector" not in sys.modules
        assert set(lean["stage"]["components"]) == {"x", "y"}, lean
        profile_ops._prepare_devices = original
        _, full, _, _ = profile_ops.existing_plans_and_devices_from_nspace(nspace=nspace)
        assert "ophyd.areadetector" in sys.modules
        assert lean == full, (lean, full)
        """
    )


def test_an_instrument_with_area_detectors_gets_the_real_check() -> None:
    # Area detectors are described without their subdevices (upstream's rule): the
    # wrapper must not change that once the area detector support is imported.
    run(
        """
        from ophyd.areadetector import SimDetector
        from bluesky_queueserver.manager import profile_ops
        from beampod.queue._lean import without_areadetector_import

        nspace = {"det": SimDetector("SIM:", name="det")}
        original = profile_ops._prepare_devices
        profile_ops._prepare_devices = without_areadetector_import(original)
        _, wrapped, _, _ = profile_ops.existing_plans_and_devices_from_nspace(nspace=nspace)
        profile_ops._prepare_devices = original
        _, full, _, _ = profile_ops.existing_plans_and_devices_from_nspace(nspace=nspace)
        assert "components" not in wrapped["det"], wrapped
        assert wrapped == full
        """
    )


def test_the_watchdog_starts_the_manager_without_waiting_for_console_monitors() -> None:
    # start-re-manager sleeps 1 s before it publishes console output, for monitors to
    # connect; beampod skips that one sleep (on every `up`'s path) and no other.
    run(
        """
        import inspect, time
        import bluesky_queueserver.manager.start_manager as watchdog_module
        from beampod.queue._manager_main import MONITOR_WAIT_S, without_monitor_wait

        # Upstream still waits there: a release that drops or moves it shows here.
        source = inspect.getsource(watchdog_module.start_manager)
        assert "ttime.sleep(1)" in source and MONITOR_WAIT_S == 1.0
        slept = []
        time.sleep = slept.append  # this interpreter only
        without_monitor_wait(watchdog_module)
        watchdog_module.ttime.sleep(1)
        watchdog_module.ttime.sleep(0.01)  # its polls still sleep
        assert slept == [0.01], slept
        assert watchdog_module.ttime.time() > 0  # the rest of the time module
        """
    )


def test_the_workers_plan_loop_waits_longer_and_still_wakes_on_a_plan() -> None:
    # The worker's main thread waits for a plan with get(timeout=0.1) only to look at its
    # exit flags: with the quiet queue an idle wait lasts IDLE_WAIT_S, and a plan put
    # while it waits is taken at once.
    run(
        """
        import queue, threading, time
        from beampod.queue._lean import IDLE_WAIT_S, QuietQueue, quiet_worker_loop
        from bluesky_queueserver.manager import worker
        quiet_worker_loop()
        assert worker.queue.Queue is QuietQueue and worker.queue.Empty is queue.Empty
        q = worker.queue.Queue()
        t0 = time.monotonic()
        try:
            q.get(block=True, timeout=0.1)
        except queue.Empty:
            waited = time.monotonic() - t0
        assert waited >= IDLE_WAIT_S * 0.99, waited
        got = []
        getter = threading.Thread(target=lambda: got.append(q.get(block=True, timeout=0.1)))
        getter.start()
        deadline = time.monotonic() + 60
        while not q.not_empty._waiters:  # the getter waits on the queue
            assert time.monotonic() < deadline
            time.sleep(0.001)
        q.put(("plan", "new"))
        getter.join(60)
        assert got == [("plan", "new")]
        """
    )
