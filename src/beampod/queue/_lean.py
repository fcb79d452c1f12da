"""What the queue server's processes load and how often they wake up (ADR 0013, 0022).

Each instrument runs a queue HTTP server and a queue server (watchdog, manager, worker);
a facility runs 25 of each. Two kinds of waste are paid per instrument:

- **modules** imported at module level for a path beampod never takes. bluesky-httpserver
  imports its authentication database (SQLAlchemy and alembic, with mako and pygments,
  ~28 MB) and python-jose's JWT (with cryptography, ~9 MB) in every process; beampod's
  gate authenticates, the httpserver runs in its single-user mode, where the database
  is never opened and no token is signed (no ``authentication`` providers, no
  ``database`` section in the generated config; the gate refuses bearer tokens and
  does not route ``/api/auth/*``). Those modules are replaced by
  :class:`ForwardingModule` stand-ins: importing names from them runs nothing, using
  one imports the real module (so a configuration that does use the database still
  works; it only pays the memory then).
- **idle wake-ups**: threads and tasks that wait with a 0.1 s timeout only to check
  whether they should stop. Data wakes them at once (a pipe's ``poll``, a queue's
  ``get``, an asyncio event); the timeout only bounds how long a stop takes. Raising
  it to :data:`IDLE_WAIT_S` removes most wake-ups of an idle queue without making it
  slower to react to a request or a document; stopping a thread takes up to
  :data:`IDLE_WAIT_S` instead of 0.1 s.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import queue
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

#: How long an idle thread or task of the queue server waits before looking at its
#: stop flag (upstream: 0.1 s). Bounds stop latency only, not reaction time.
IDLE_WAIT_S = 1.0

#: bluesky-httpserver's authentication database: module name -> the functions other
#: modules import from it by name (``from .database.core import purge_expired``).
HTTP_DATABASE_MODULES: dict[str, tuple[str, ...]] = {
    "bluesky_httpserver.database.orm": (),
    "bluesky_httpserver.database.core": (
        "create_user",
        "latest_principal_activity",
        "lookup_valid_api_key",
        "lookup_valid_session",
        "purge_expired",
    ),
    # python-jose's JWT (with its cryptography backend, ~9 MB RSS): bluesky-httpserver
    # signs and checks its own access and refresh tokens with it, which single-user
    # mode behind the gate never issues (the gate refuses bearer tokens). ``jose``
    # itself (its exception classes, used in ``except`` clauses) stays real.
    "jose.jwt": (),
}


class ForwardingModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module that is imported for real on the first use
    of one of its attributes (``orm.Identity``) or of one of its named functions
    (``create_user(...)``), which are forwarders so that ``from M import f`` binds
    without loading ``M``. Unlike :class:`beampod._lazy.DeferredModule`, asking a
    stand-in for a dunder (``__path__``, which ``from M import f`` asks) loads nothing."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(real_module(self.__name__), attr)


def real_module(name: str) -> types.ModuleType:
    """The real module ``name`` (imported now if only its stand-in is there)."""
    if isinstance(sys.modules.get(name), ForwardingModule):
        del sys.modules[name]  # so the import below runs the real module
    return importlib.import_module(name)


class LazyClass:
    """Stands for a class whose module is not imported yet (bound by ``from M import C``
    to a :class:`ForwardingModule`'s attribute): calling it, or asking it for any
    attribute (a static method), runs ``load`` once and then uses the class it returns.
    ``isinstance`` against it does not work; only for classes their importers construct
    and call static methods of."""

    def __init__(self, load: Callable[[], type[Any]]) -> None:
        self._load = load
        self._class: type[Any] | None = None

    def real(self) -> type[Any]:
        if self._class is None:
            self._class = self._load()
        return self._class

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.real(), attr)


def _forwarder(module: str, function: str) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return getattr(real_module(module), function)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = function
    return forward


def forward_modules(modules: Mapping[str, Iterable[str]]) -> None:
    """Put a :class:`ForwardingModule` in ``sys.modules`` for each module not imported
    yet (its package, for a submodule, is imported for real here)."""
    for name, functions in modules.items():
        if name in sys.modules:
            continue
        package, _, child = name.rpartition(".")
        parent = importlib.import_module(package) if package else None
        spec = importlib.util.find_spec(name)
        if spec is None or name in sys.modules:
            continue
        stand_in = ForwardingModule(name)
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        for function in functions:
            setattr(stand_in, function, _forwarder(name, function))
        sys.modules[name] = stand_in
        if parent is not None:
            setattr(parent, child, stand_in)


def quiet_pipe(pipe_class: type[Any], attr: str = "_conn_polling_timeout") -> type[Any]:
    """A bluesky-queueserver class with a polling thread (``PipeJsonRpcReceive``,
    ``PipeJsonRpcSendAsync``: ``_conn_polling_timeout``; ``PublishZMQStreamOutput``:
    ``_polling_timeout``) whose thread looks at its stop flag every
    :data:`IDLE_WAIT_S`, not every 0.1 s. Upstream's own comment: "The data will be
    read from the pipe instantly once it is available. The timeout determines how long
    it would take to stop the thread"."""

    class Quiet(pipe_class):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            setattr(self, attr, max(getattr(self, attr), IDLE_WAIT_S))

    Quiet.__name__ = Quiet.__qualname__ = pipe_class.__name__
    return Quiet


def quiet_join(process_class: type[Any]) -> type[Any]:
    """The RE Manager's process class, whose short ``join`` timeouts are raised to
    :data:`IDLE_WAIT_S`. The watchdog's loop joins the manager with 0.1 s, only to look
    at the time of the manager's last heartbeat in between: a manager that exits ends
    the join at once; one that stops sending heartbeats (5 s) is restarted up to 1 s
    later than before."""

    class Quiet(process_class):
        def join(self, timeout: float | None = None) -> None:
            super().join(None if timeout is None else max(timeout, IDLE_WAIT_S))

    Quiet.__name__ = Quiet.__qualname__ = process_class.__name__
    return Quiet


#: While nothing happens, the manager asks its worker for its state this often
#: (upstream: every 0.5 s, always). Any request but a read wakes it at once.
IDLE_STATE_PERIOD_S = 2.0
#: ... and it keeps asking every 0.5 s for this long after such a request.
ACTIVE_AFTER_REQUEST_S = 10.0
#: How often the RE Manager asks its worker while the environment opens (upstream: every
#: 0.5 s, so an open was seen 0.25 s late on average), for at most OPENING_POLL_FOR_S at
#: a time (then upstream's loop does its other work once and comes back).
OPENING_POLL_S = 0.05
OPENING_POLL_FOR_S = 10.0
#: Requests that only read: an idle queue is asked these (``status`` by the HTTP
#: server, the supervisor's health check, clients polling) and stays idle.
READ_ONLY_METHODS = frozenset(
    {
        "",
        "ping",
        "status",
        "config_get",
        "queue_get",
        "history_get",
        "plans_allowed",
        "devices_allowed",
        "plans_existing",
        "devices_existing",
        "permissions_get",
        "lock_info",
        "re_runs",
        "task_result",
        "task_status",
    }
)
_IDLE_ENVIRONMENT = (None, "idle", "closed")
#: What the worker has to tell the manager: not idle until the manager has heard it.
_NEWS_FLAGS = (
    "completed_tasks_available",
    "plans_and_devices_list_updated",
    "re_report_available",
    "run_list_updated",
    "unexpected_shutdown",
)


def idle_state_polls(manager_class: type[Any]) -> type[Any]:
    """The RE Manager's class whose periodic request for the worker's state (every 0.5 s
    upstream, ``_periodic_worker_state_request``) comes every
    :data:`IDLE_STATE_PERIOD_S` while the queue is idle: the manager idle, the worker's
    environment idle (or closed) with its RunEngine idle, and no request other than a
    read (:data:`READ_ONLY_METHODS`) in the last :data:`ACTIVE_AFTER_REQUEST_S`. Such a
    request (``queue_start``, ``environment_open``, ``function_execute``, ...) ends the
    longer wait at once; while anything runs the period is upstream's 0.5 s. Each
    request wakes the manager and the worker (a pipe round trip between threads of
    both): in a facility's idle queue servers, the most frequent thing they do."""
    import asyncio
    import time

    class IdlePolls(manager_class):
        _beampod_activity: Any = None
        _beampod_active_until = 0.0

        def _beampod_idle(self) -> bool:
            if time.monotonic() < self._beampod_active_until:
                return False
            if getattr(self._manager_state, "value", None) != "idle":
                return False
            ws = self._worker_state_info or {}
            return (
                ws.get("environment_state") in _IDLE_ENVIRONMENT
                and ws.get("re_state") in (None, "idle")
                and not any(ws.get(flag) for flag in _NEWS_FLAGS)
            )

        async def _zmq_execute(self, msg: Any) -> Any:
            method = msg.get("method", "") if isinstance(msg, dict) else ""
            if method not in READ_ONLY_METHODS:
                self._beampod_active_until = time.monotonic() + ACTIVE_AFTER_REQUEST_S
                if self._beampod_activity is not None:
                    self._beampod_activity.set()
            return await super()._zmq_execute(msg)

        async def _worker_request_state(self) -> Any:
            periodic = asyncio.current_task() is getattr(self, "_worker_status_task", None)
            if periodic and self._beampod_idle():
                if self._beampod_activity is None:
                    self._beampod_activity = asyncio.Event()
                self._beampod_activity.clear()
                # The loop slept 0.5 s already (nothing started lately, _plan_polls);
                # a request ends this wait.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._beampod_activity.wait(), IDLE_STATE_PERIOD_S - 0.5)
            reply = await super()._worker_request_state()
            # While the environment opens, ask again every OPENING_POLL_S until the worker
            # says how it ended, instead of at upstream's next 0.5 s: `up` (through the
            # queue's HTTP server and the console) waits for this answer.
            deadline = time.monotonic() + OPENING_POLL_FOR_S
            while (
                periodic
                and getattr(self._manager_state, "value", None) == "creating_environment"
                and (reply[0] or {}).get("environment_state") == "initializing"
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(OPENING_POLL_S)
                reply = await super()._worker_request_state()
            return reply

    IdlePolls.__name__ = IdlePolls.__qualname__ = manager_class.__name__
    return IdlePolls


def quiet_queueserver_pipes() -> None:
    """The polling threads of the watchdog and the worker (the forked processes inherit
    the classes): the receiving pipes, the console output publisher and the watchdog's
    join. The manager's sending pipe is wrapped by ``_manager_main`` (with its longer
    watchdog timeout)."""
    from bluesky_queueserver.manager import start_manager, worker

    for module in (start_manager, worker):
        module.PipeJsonRpcReceive = quiet_pipe(module.PipeJsonRpcReceive)
    start_manager.PublishZMQStreamOutput = quiet_pipe(
        start_manager.PublishZMQStreamOutput, "_polling_timeout"
    )
    from beampod.queue._plan_polls import plan_paced_state_polls

    watchdog_class = start_manager.WatchdogProcess
    manager_class = plan_paced_state_polls(
        idle_state_polls(quiet_join(start_manager.RunEngineManager)), READ_ONLY_METHODS
    )

    class QuietWatchdog(watchdog_class):  # type: ignore[valid-type,misc]
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("cls_run_engine_manager", manager_class)
            super().__init__(**kwargs)

    QuietWatchdog.__name__ = QuietWatchdog.__qualname__ = watchdog_class.__name__
    start_manager.WatchdogProcess = QuietWatchdog


class QuietQueue(queue.Queue):
    """A ``queue.Queue`` whose timed ``get`` waits at least :data:`IDLE_WAIT_S`: an item
    put on it still wakes the waiter at once."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and timeout is not None:
            timeout = max(timeout, IDLE_WAIT_S)
        return super().get(block, timeout)


def quiet_worker_loop() -> None:
    """The worker's main thread waits for a plan on a ``queue.Queue`` it makes itself,
    ``get(timeout=0.1)``, only to look at its exit flags in between (10 wake-ups a
    second while idle). Its module's ``queue`` name is rebound to a copy of the module
    whose ``Queue`` is :class:`QuietQueue`: a plan or a task starts as soon as it is
    put; closing the environment ends the loop up to :data:`IDLE_WAIT_S` later. Call
    before the worker process starts (the watchdog forks it)."""
    from bluesky_queueserver.manager import worker

    quiet = types.ModuleType("queue")
    quiet.__dict__.update(queue.__dict__)
    quiet.Queue = QuietQueue  # type: ignore[attr-defined]
    worker.queue = quiet


def quiet_ophyd_dispatcher() -> int:
    """ophyd's callback threads (7 in the worker) wait ``timeout`` (0.1 s) on their queues
    between looks at the stop event; a callback put on a queue wakes its thread at once.
    Returns how many threads were changed (0 when ophyd's dispatcher is not running)."""
    shim = sys.modules.get("ophyd._pyepics_shim")
    dispatcher = getattr(shim, "_dispatcher", None) if shim is not None else None
    if dispatcher is None:
        return 0
    threads = [t for t in dispatcher.threads.values() if t is not None]
    for thread in threads:
        thread.timeout = max(thread.timeout, IDLE_WAIT_S)
    return len(threads)


def quiet_manager_api(api_class: type[Any]) -> type[Any]:
    """bluesky-queueserver-api's asyncio ``REManagerAPI`` whose status task waits up to
    :data:`IDLE_WAIT_S` (not 0.1 s) for a status request between looks at its closing
    flag. A request (``await RM.status()``) sets the event and is served at once; the
    task's 0.1 s wait is used for nothing else (the ``wait_*`` helpers poll from their
    own task, every ``status_polling_period``)."""

    class QuietREManagerAPI(api_class):
        async def _event_wait(self, event: Any, timeout: float) -> bool:
            return bool(await super()._event_wait(event, max(timeout, IDLE_WAIT_S)))

    QuietREManagerAPI.__name__ = QuietREManagerAPI.__qualname__ = api_class.__name__
    return QuietREManagerAPI


#: Imported by pyepics (``epics.utils``, in the worker) for one fallback: decoding a
#: Channel Access string that is not valid in the configured encoding (~3 MB RSS). A
#: stand-in until that happens; then the real module decodes it as before.
WORKER_FALLBACK_MODULES: dict[str, tuple[str, ...]] = {"charset_normalizer": ("from_bytes",)}


#: Imported by bluesky's RunEngine only to write its version into ``RE.md``, under
#: ``try/except ImportError`` (ophyd-async with pydantic-numpy, ruamel.yaml,
#: compress-pickle, unittest.mock, tenacity: ~15 MB in every worker). An instrument
#: that uses ophyd-async has imported it before; then nothing changes.
VERSION_ONLY_IMPORTS = {"ophyd_async": "ophyd-async"}


@contextlib.contextmanager
def versions_without_import() -> Iterator[Callable[[Any], None]]:
    """While creating a RunEngine: the :data:`VERSION_ONLY_IMPORTS` nothing imported yet
    are marked absent; afterwards the marks are gone (a plan may import them) and the
    yielded function puts their installed versions into ``RE.md["versions"]``, so the
    run documents say what they said before."""
    marked = [name for name in VERSION_ONLY_IMPORTS if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None  # type: ignore[assignment]

    def record(run_engine: Any) -> None:
        versions = run_engine.md.setdefault("versions", {})
        for name in marked:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions.setdefault(name, importlib.metadata.version(VERSION_ONLY_IMPORTS[name]))

    try:
        yield record
    finally:
        for name in marked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def without_areadetector_import(prepare_devices: Callable[..., Any]) -> Callable[..., Any]:
    """bluesky-queueserver's ``_prepare_devices`` (it describes the worker's devices at
    each environment open) that does not import ophyd's area detector support only to
    ask ``isinstance(device, ADBase)``: where ``ophyd.areadetector`` was never imported,
    no device is an area detector (instrument/_ophyd_lean.py defers it: ~0.25 CPU-s and
    ~13 MB in every worker). For the call, its ``from ophyd.areadetector import ADBase``
    finds a stand-in with an ``ADBase`` nothing is an instance of; nothing else in the
    worker imports area detector code while the devices are described (they are all
    built by then). An instrument that imported it gets the real check."""

    @functools.wraps(prepare_devices)
    def prepare(*args: Any, **kwargs: Any) -> Any:
        if "ophyd.areadetector" in sys.modules:
            return prepare_devices(*args, **kwargs)
        stand_in = types.ModuleType("ophyd.areadetector")
        stand_in.ADBase = type("ADBase", (), {})  # type: ignore[attr-defined]
        sys.modules["ophyd.areadetector"] = stand_in
        try:
            return prepare_devices(*args, **kwargs)
        finally:
            if sys.modules.get("ophyd.areadetector") is stand_in:
                del sys.modules["ophyd.areadetector"]

    return prepare
