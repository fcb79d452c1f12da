"""``python -m beampod.queue._http_main [--instrument NAME ...]``: bluesky-httpserver
behind the beampod gate.

Reads the generated config (``run/queue/http.yml``, mode 0600) the way
``start-bluesky-httpserver`` does, adds an internal single-user API key that never
leaves this process, builds the httpserver's FastAPI app and serves it wrapped in
:class:`~beampod.queue._gate.QueueGate` with uvicorn. Without ``--instrument``, the
queue server named by ``BEAMPOD_QUEUE_INSTRUMENT``; with several, each instrument's own
app on its own port, in this one process (a pool, :mod:`beampod.queue._http_pool`).
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from typing import Any

from beampod.config import LoadedPod, PodHome, QueueServer, load_pod, queue_server
from beampod.errors import BeampodError, UsageError
from beampod.queue._files import QueueFiles, control_address, default_group, process_server
from beampod.queue._gate import GateSettings, QueueGate

log = logging.getLogger("beampod.queue.http")

#: Imported by bluesky-queueserver's ``conversions`` module (which bluesky-httpserver's
#: routes import) at module level, used only to read an uploaded spreadsheet
#: (``/api/queue/upload/spreadsheet``): ~80 MB resident with pyarrow and numexpr, in
#: every instrument's HTTP server. Deferred, they load on the first upload instead
#: (ADR 0013).
DEFERRED_IMPORTS = ("pandas", "numpy")
#: httpx's command line (rich, pygments, click), imported by httpx only if installed;
#: watchfiles, imported by uvicorn (under ``try/except ImportError``) for ``--reload``.
UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "watchfiles")


def lean_imports() -> None:
    """The HTTP server's import policy; first thing in the process (tests apply it too).

    Also puts stand-ins in place of bluesky-httpserver's authentication database
    (SQLAlchemy, alembic; :data:`beampod.queue._lean.HTTP_DATABASE_MODULES`): the
    gate authenticates, the httpserver runs single-user and never opens it (ADR 0022).
    """
    from beampod._lazy import defer_imports, skip_imports
    from beampod.queue._lean import HTTP_DATABASE_MODULES, forward_modules

    skip_imports(UNUSED_OPTIONAL_IMPORTS)
    defer_imports(DEFERRED_IMPORTS)
    forward_modules(HTTP_DATABASE_MODULES)


class ManagerCatalog:
    """Allowed plans and devices from the RE Manager over 0MQ, cached by their uids."""

    def __init__(self, pod: LoadedPod, server: QueueServer) -> None:
        self._pod = pod
        self._server = server
        self._group = default_group(pod, server)
        self._rm: Any = None
        self._cache: tuple[str, str, dict[str, Any], dict[str, Any]] | None = None

    def _client(self) -> Any:
        if self._rm is None:
            from bluesky_queueserver_api.zmq.aio import REManagerAPI

            from beampod.queue._lean import quiet_manager_api

            self._rm = quiet_manager_api(REManagerAPI)(
                zmq_control_addr=control_address(self._pod, self._server),
                zmq_public_key=self._server.zmq_public_key,
                timeout_recv=5.0,
            )
        return self._rm

    async def lists(self) -> tuple[dict[str, Any], dict[str, Any]]:
        rm = self._client()
        status = await rm.status()
        p_uid, d_uid = status["plans_allowed_uid"], status["devices_allowed_uid"]
        if self._cache is None or self._cache[:2] != (p_uid, d_uid):
            plans = (await rm.plans_allowed(user_group=self._group))["plans_allowed"]
            devices = (await rm.devices_allowed(user_group=self._group))["devices_allowed"]
            self._cache = (p_uid, d_uid, plans, devices)
        return self._cache[2], self._cache[3]


def quiet_client() -> None:
    """The client the httpserver creates at startup (a module global of its app
    module), made quiet (:func:`beampod.queue._lean.quiet_manager_api`); once."""
    from bluesky_httpserver import app as httpserver_app

    from beampod.queue._lean import quiet_manager_api

    httpserver_app.REManagerAPI = quiet_manager_api(httpserver_app.REManagerAPI)


def build(
    pod: LoadedPod, server: QueueServer, internal_key: str
) -> tuple[QueueGate, dict[str, Any]]:
    """The gated app and uvicorn's keyword arguments. ``internal_key``: the
    httpserver's single-user key, known only to this process (one for a pool: upstream
    keeps its settings in one cached object, :func:`shared_settings`)."""
    from bluesky_httpserver import app as httpserver_app
    from bluesky_httpserver.config import construct_build_app_kwargs, parse_configs

    path = str(QueueFiles.of(pod.home, server).http_config)
    parsed = parse_configs(path)
    parsed.setdefault("authentication", {})["single_user_api_key"] = internal_key
    uvicorn_kwargs = parsed.pop("uvicorn", {})
    app = httpserver_app.build_app(**construct_build_app_kwargs(parsed, source_filepath=path))
    gate = QueueGate(
        app,
        GateSettings(
            control_key=server.control_key.get_secret_value(),
            observer_key=server.observer_key.get_secret_value(),
            internal_key=internal_key,
            allow_loopback=pod.config.pod.allow_loopback_unauthenticated,
        ),
        ManagerCatalog(pod, server),
    )
    return gate, uvicorn_kwargs


def shared_settings(pod: LoadedPod, servers: list[QueueServer]) -> None:
    """bluesky-httpserver's apps each write their ``authentication`` section into one
    cached settings object (``settings.get_settings``): members of a pool must agree on
    it, which beampod's generated configs do; a BeampodError if they do not."""
    from bluesky_httpserver.config import parse_configs

    sections = [
        parse_configs(str(QueueFiles.of(pod.home, s).http_config)).get("authentication")
        for s in servers
    ]
    if any(section != sections[0] for section in sections[1:]):
        raise BeampodError(
            "the pool's queue HTTP configs differ in their 'authentication' section, which "
            "bluesky-httpserver keeps once per process: serve them in separate processes"
        )


def instruments_of(argv: list[str]) -> list[str]:
    """The ``--instrument NAME`` arguments, in order; a UsageError for anything else."""
    names: list[str] = []
    args = iter(argv)
    for arg in args:
        name = next(args, None) if arg == "--instrument" else None
        if not name:
            raise UsageError("usage: python -m beampod.queue._http_main [--instrument NAME]...")
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    from beampod._gcstart import pause_gc, resume_gc
    from beampod._preload import preload

    members = instruments_of(sys.argv[1:] if argv is None else argv)
    pause_gc()  # until the apps are built: the start is imports (beampod._gcstart)
    lean_imports()
    resources = None
    if len(members) > 1:
        from beampod.queue._http_pool import install_resources_by_instrument

        resources = install_resources_by_instrument()
    # Started early (ADR 0014): import the HTTP server without slowing Tiled down.
    preload(["uvicorn", "bluesky_httpserver.app", "bluesky_httpserver.config"])
    from beampod import _uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bluesky_httpserver").setLevel(logging.INFO)
    pod = load_pod(PodHome.resolve(None))
    servers = [queue_server(pod, name) for name in members] or [process_server(pod)]
    quiet_client()
    internal_key = secrets.token_hex(32)
    if resources is not None:
        shared_settings(pod, servers)  # a pool's members must agree (one process alone does)
    built = [build(pod, server, internal_key) for server in servers]
    for server, (_, kwargs) in zip(servers, built, strict=True):
        log.warning(
            "beampod queue-http: %s's queue, serving %s:%s (loopback without key: %s) at %s",
            server.instrument,
            kwargs.get("host"),
            kwargs.get("port"),
            "allowed" if pod.config.pod.allow_loopback_unauthenticated else "refused",
            time.ctime(),
        )
    resume_gc()
    if resources is None:
        gate, kwargs = built[0]
        # access_log off: request lines would include any ?api_key=... query parameter.
        _uvicorn.run(
            gate,
            host=kwargs["host"],
            port=int(kwargs["port"]),
            access_log=False,
            log_level="warning",
        )
        return 0
    return serve_pool(resources, built)


def serve_pool(resources: Any, built: list[tuple[QueueGate, dict[str, Any]]]) -> int:
    """Every member's gate on its own port, in one event loop (ADR 0034)."""
    import asyncio

    from beampod.queue._http_pool import MemberApp, member_server, serve_members

    servers = [
        member_server(MemberApp(gate, resources), kwargs["host"], int(kwargs["port"]))
        for gate, kwargs in built
    ]
    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        return runner.run(serve_members(servers))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BeampodError as exc:
        sys.exit(f"beampod queue-http: {exc}")
