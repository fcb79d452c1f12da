"""The supervisor's end of the fork server (``beampod._forkserver``, ADR 39): spawn a
Python service as a fork of a pre-imported process where one can be, by ``exec``
otherwise, behind one interface (:class:`Spawner`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from beampod import _forkserver, _proctitle
from beampod._headstart import Spawned
from beampod._preload import early_argv
from beampod._spawning import open_service_log, service_env, spawn_options
from beampod.config import PodHome
from beampod.services import _process
from beampod.services._spec import ServiceSpec

#: What every forked service imports first: the pod's config models (pydantic, yaml),
#: the HTTP client and server stack, the bus client. Nothing that one of them must not
#: have: no numpy (the IOC process and the CA repeater mark it absent), no pandas (the
#: writers), no tiled (its start is the one the pod waits for, alone or not).
SHARED_IMPORTS = (
    "asyncio",
    "beampod.config",
    "beampod.bus",
    "httpx",
    "anyio",
    "msgpack",
    "nats",
    "uvicorn",
    "starlette.applications",
)
#: Import policies every forked service shares (``beampod._lazy``): httpx's command
#: line and uvicorn's reloader are never used; aiohttp only for a ``ws://`` bus URL.
SHARED_SKIPPED = ("httpx._main", "watchfiles")
SHARED_DEFERRED = ("aiohttp",)
#: The longest a spawn waits for the fork server's imports before it execs instead.
READY_TIMEOUT_S = 20.0
#: The longest a spawn waits for the fork server's answer (a fork takes milliseconds).
REPLY_TIMEOUT_S = 10.0
SERVICE_NAME = "forkserver"  # its log: logs/forkserver.log


class ForkedProcess:
    """A service forked by the fork server: ``asyncio.subprocess.Process``'s ``pid``,
    ``returncode`` and ``wait()``. Its exit status comes from the fork server (its
    parent); if the fork server is gone first, from its pidfd (it was SIGKILLed by its
    parent-death signal, or exited meanwhile: reported as -SIGKILL)."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd: int | None = pidfd
        self.returncode: int | None = None
        self._exited = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        # Shielded: a caller's timeout must not cancel the one future all share.
        await asyncio.shield(self._exited)
        assert self.returncode is not None
        return self.returncode

    def exited(self, code: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = code
        self._close_pidfd()
        if not self._exited.done():
            self._exited.set_result(None)

    def parent_gone(self) -> None:
        """The fork server ended: learn this process's end from its pidfd."""
        if self._pidfd is None or self.returncode is not None:
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self.exited, -signal.SIGKILL)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


class ForkServer:
    """A running fork server and the supervisor's socket to it."""

    def __init__(self, proc: _process.SpawnedProcess, sock: socket.socket) -> None:
        self._proc = proc
        self._sock = sock
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[bool] = loop.create_future()
        self._replies: dict[int, asyncio.Future[ForkedProcess | str]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()  # one request in flight: replies come in order
        self.gone = False
        self.unresponsive: str | None = None
        self.on_end: Callable[[], None] | None = None  # called once, when it ends
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    async def start(
        cls,
        log_path: Path,
        room: tuple[str, str] = ("", ""),
        env: Mapping[str, str] | None = None,
    ) -> ForkServer:
        """Spawn the fork server. ``room``: blanks for its command line and its
        environment, where a child writes its own (``beampod._proctitle``). ``env``:
        added to the supervisor's."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "beampod._forkserver", "--fd", str(theirs.fileno())]
        policies = (
            ("--preload", SHARED_IMPORTS),
            ("--skip", SHARED_SKIPPED),
            ("--defer", SHARED_DEFERRED),
        )
        for flag, names in policies:
            for name in names:
                argv += [flag, name]
        argv.append(f"--room={room[0]}")  # one word: the blank starts with "-"
        open_service_log(log_path, SERVICE_NAME)
        try:
            with log_path.open("ab") as log:
                extra = {**(env or {}), _proctitle.ROOM_VARIABLE: room[1]}
                options = spawn_options(extra, log, None)
                proc = await asyncio.create_subprocess_exec(
                    *argv, pass_fds=(theirs.fileno(),), **options
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(_process.SpawnedProcess(proc), ours)

    @property
    def usable(self) -> bool:
        """Running, and it answered in time so far: once it did not, every later start
        is a new interpreter at once (a hung fork server would otherwise hold each one
        up for as long again). It stays: its services still run."""
        return not self.gone and self.unresponsive is None

    async def ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """The fork server has imported what it shares (False: it failed, or took
        longer than ``timeout``)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.unresponsive = f"not ready after {timeout:.0f} s"
            return False

    async def spawn(self, launch: Spawned, log_path: Path) -> ForkedProcess | str:
        """Fork ``launch`` with its output appended to ``log_path``; or why not (then
        nothing was started)."""
        if self.unresponsive is not None:
            return f"the fork server was {self.unresponsive}"
        if not await self.ready():
            return "the fork server is not ready"
        env = service_env(launch.env)
        request = _forkserver.request_for(self._next_id, launch.argv, env, launch.cwd)
        self._next_id += 1
        async with self._lock:
            if self.gone:
                return "the fork server has ended"
            try:
                env_fd = _env_pipe(_forkserver.env_data(env))
            except OSError as exc:
                return f"no pipe for its environment: {exc}"
            reply = asyncio.get_running_loop().create_future()
            self._replies[request.id] = reply
            log_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with log_path.open("ab") as log:
                    data = _forkserver.encode(_forkserver.request_message(request))
                    socket.send_fds(self._sock, [data], [log.fileno(), env_fd])
            except OSError as exc:
                self._replies.pop(request.id, None)
                return f"the fork server cannot be reached: {exc}"
            finally:
                os.close(env_fd)
            try:
                return await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
            except TimeoutError:
                self.unresponsive = f"without an answer for {REPLY_TIMEOUT_S:.0f} s"
                return f"no answer from the fork server in {REPLY_TIMEOUT_S:.0f} s"

    async def close(self, timeout: float = 5.0) -> None:
        """End the fork server (its services are stopped already) and wait for it."""
        self._end()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), timeout)
        if self._proc.returncode is None:
            _process.signal_group(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()

    # -- the socket ------------------------------------------------------------------

    def _on_readable(self) -> None:
        while not self.gone:
            try:
                data, fds, flags, _addr = socket.recv_fds(self._sock, _forkserver.MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._end()
                return
            if flags & socket.MSG_CTRUNC:  # a pidfd the kernel could not hand over
                fds = []  # (this process at its descriptor limit): see _dispatch
            try:
                self._dispatch(_forkserver.decode(data), fds)
            except (ValueError, KeyError, TypeError):
                for fd in fds:
                    os.close(fd)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        if "ready" in message:
            if not self._ready.done():
                self._ready.set_result(True)
        elif "exited" in message:
            child = self._children.pop(int(message["exited"]), None)
            if child is not None:
                child.exited(int(message["code"]))
        elif "spawn" in message:
            reply = self._replies.pop(int(message["spawn"]), None)
            if "pid" in message and not fds:
                # Forked, but its pidfd did not arrive: not one to keep unwatched (it
                # leads its session already). The spawn starts it anew.
                _process.signal_group(int(message["pid"]), signal.SIGKILL)
                if reply is not None and not reply.done():
                    reply.set_result("its pidfd did not arrive (too many open files?)")
                return
            if "pid" in message:
                # Kept at once: its exit may be the very next message, read in this same
                # callback before the spawn that asked for it resumes.
                child = ForkedProcess(int(message["pid"]), fds[0])
                self._children[child.pid] = child
                if reply is None or reply.done():
                    # Nobody waits for it any more (the spawn timed out): not to be kept.
                    signal.pidfd_send_signal(fds[0], signal.SIGKILL)
                else:
                    reply.set_result(child)
                return
            for fd in fds:
                os.close(fd)
            if reply is not None and not reply.done():
                reply.set_result(str(message.get("error", "refused")))

    def _end(self) -> None:
        if self.gone:
            return
        self.gone = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if not self._ready.done():
            self._ready.set_result(False)
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result("the fork server has ended")
        self._replies.clear()
        for child in self._children.values():
            child.parent_gone()
        self._children.clear()
        if self.on_end is not None:
            self.on_end()


def _env_pipe(data: bytes) -> int:
    """The read end of a pipe that holds ``data`` and then ends (its write end closed):
    a child's environment, which only the child reads after its fork. The pipe is made
    large enough to hold it, and written without blocking: where the kernel gives less
    (a user past ``fs.pipe-user-pages-soft`` gets 8 KiB pipes), BlockingIOError, and
    the service is started anew instead of the event loop waiting for a reader."""
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        capacity = fcntl.fcntl(write, fcntl.F_GETPIPE_SZ)
        if len(data) > capacity:
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except OSError:
        os.close(read)
        raise
    finally:
        os.close(write)
    os.set_blocking(read, True)  # the child reads it to its end
    return read


class Spawner:
    """How the supervisor spawns a service: forked where its definition allows it
    (``fork``) and the fork server can, by ``exec`` otherwise."""

    def __init__(
        self, server: ForkServer | None = None, progress: Callable[[str], None] | None = None
    ) -> None:
        self.server = server
        self.refusals: dict[str, str] = {}  # service -> why it was not forked
        self._progress = progress or (lambda _msg: None)

    async def spawn(self, launch: Spawned, log_path: Path, *, fork: bool) -> _process.ChildProcess:
        # Another interpreter (an environment cycle's) is expected to start anew: not
        # asked, and not said each time.
        ours = bool(launch.argv) and launch.argv[0] == sys.executable
        if fork and ours and self.server is not None and self.server.usable:
            child = await self.server.spawn(launch, log_path)
            if not isinstance(child, str):
                self.refusals.pop(launch.name, None)
                return child
            if self.refusals.get(launch.name) != child:
                self._progress(f"{launch.name} not forked: {child}; starting a new interpreter")
            self.refusals[launch.name] = child
        return await _process.spawn(launch, log_path)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


async def start_spawner(
    home: PodHome, specs: Sequence[ServiceSpec], *, fork: bool, progress: Callable[[str], None]
) -> Spawner:
    """The supervisor's spawner: with a fork server where ``fork`` is on, a service may
    be forked, and the platform has what it takes (Linux: pidfds, ``SCM_RIGHTS``)."""
    if not (fork and any(spec.forkable for spec in specs) and forking_supported()):
        return Spawner()
    # Room for the longest command line (ADR 31's preload adds a module to some) and
    # the largest environment of its own that a service adds to the supervisor's.
    forkable = [spec for spec in specs if spec.forkable]
    room = (
        _proctitle.room("\0".join(early_argv(spec.argv)) for spec in forkable),
        _proctitle.room("\0".join(_proctitle.env_items(spec.env)) for spec in forkable),
    )
    try:
        # The pod it serves, as every service's environment says (services._starting).
        server = await ForkServer.start(
            home.log_file(SERVICE_NAME), room, {"BEAMPOD_HOME": str(home.root)}
        )
    except OSError as exc:  # the services are started anew, as without it
        progress(f"fork server not started ({exc}); every service starts a new interpreter")
        return Spawner()
    return Spawner(server, progress)


def forking_supported() -> bool:
    """Linux with pidfds and descriptors passed over a ``SOCK_SEQPACKET`` socket pair."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "send_fds")
        and hasattr(socket, "SOCK_SEQPACKET")
        and _process.pidfds_work()
    )
