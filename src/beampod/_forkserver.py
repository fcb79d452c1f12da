"""A pre-imported Python parent that forks the pod's Python services (ADR 39).

Every Python service of a pod starts by importing the same libraries before its own:
pydantic and the pod's configuration models, httpx, anyio, msgpack, nats-py, uvicorn
(~0.2 CPU-s each, six services). On two cores that CPU is taken from Tiled's start, the
one ``up -d`` waits for. So the supervisor spawns this process once
(``python -m beampod._forkserver``): it imports those libraries, freezes them out of
the garbage collector's reach (so that the children share their pages) and then forks
one child per request, which becomes the service as ``python -m MODULE ARGS`` or
``python -c CODE ARGS`` would have: its own session, environment, working directory,
log on stdout and stderr, arguments, and a normal interpreter exit.

The children are this process's, not the supervisor's: this process reports each one's
pid (with a pidfd, so the supervisor watches the process itself, not a pid that could
be reused) and its exit status. A child dies with this process (parent-death signal),
and this process dies with the supervisor, so a SIGKILLed supervisor leaves nothing.

The protocol is one JSON message per datagram on a ``SOCK_SEQPACKET`` socket pair
(:func:`encode`, :func:`decode`; the log's descriptor, the pipe of the child's
environment and the child's pidfd travel as ``SCM_RIGHTS``). Standard library only,
``beampod._lazy`` (its import policies), ``beampod._spawning`` (a child's standard
streams and parent-death signal, as every service's) and ``beampod._proctitle`` (what
a child shows as its command line and environment).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from beampod import _proctitle
from beampod._spawning import die_with_parent, stdio_to

#: What the fork server ignores (its children get the defaults back).
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The largest message (a request's command line, in practice a few hundred bytes).
MAX_MESSAGE = 1 << 20


# -- the protocol: pure, tested without sockets -------------------------------------


@dataclass(frozen=True)
class Request:
    """Fork a child that runs ``argv`` (``python -m ...`` or ``python -c ...``).

    The child's environment is not in the request: it reaches the child alone, through
    a pipe (:func:`env_data`), so that this long-lived process, and every child forked
    after it, never holds another service's credentials. The request carries what the
    server checks of it: the variables :func:`read_at_start` and its size."""

    id: int
    argv: tuple[str, ...]
    cwd: str | None
    start_env: dict[str, str]
    env_size: int


def request_for(id: int, argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> Request:
    return Request(id, tuple(argv), cwd, started_with(env), _proctitle.environ_size(env))


def env_data(env: Mapping[str, str]) -> bytes:
    return _dumps(dict(env))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def read_env(fd: int) -> dict[str, str]:
    """The environment written to the pipe ``fd`` (read to its end, then closed)."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    env = json.loads(b"".join(chunks))
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise ValueError("the environment must map names to strings")
    return env


def encode(message: Mapping[str, Any]) -> bytes:
    data = _dumps(message)
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a fork server message of {len(data)} bytes (at most {MAX_MESSAGE})")
    return data


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a fork server message is a JSON object")
    return message


def request_message(request: Request) -> dict[str, Any]:
    return {
        "spawn": request.id,
        "argv": list(request.argv),
        "cwd": request.cwd,
        "start_env": dict(request.start_env),
        "env_size": request.env_size,
    }


def parse_request(message: Mapping[str, Any]) -> Request:
    argv, cwd, start_env = message.get("argv"), message.get("cwd"), message.get("start_env")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        raise ValueError("argv must be a list of strings")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError("cwd must be a string or null")
    if not (isinstance(start_env, dict) and all(isinstance(v, str) for v in start_env.values())):
        raise ValueError("start_env must map names to strings")
    env_size = message.get("env_size")
    if not isinstance(env_size, int) or env_size < 0:
        raise ValueError("env_size must be a size in bytes")
    return Request(int(message["spawn"]), tuple(argv), cwd, dict(start_env), env_size)


def read_at_start(name: str) -> bool:
    """An environment variable that a process reads once, before its imports: Python's
    own (the path, the hash seed, the allocator), the locale (its standard streams' and
    file names' encoding), the dynamic loader's and pydantic's plugin switch."""
    return name.startswith(("PYTHON", "LC_", "LD_")) or name in (
        "LANG",
        "LANGUAGE",
        "PYDANTIC_DISABLE_PLUGINS",
    )


def refusal(request: Request, executable: str, own_env: Mapping[str, str]) -> str | None:
    """Why this process cannot become ``request`` (None: it can). A fork runs this
    interpreter, started and imported already: another interpreter, a command line
    other than ``-m`` or ``-c``, or a variable :func:`read_at_start` set differently
    needs a new process."""
    argv, env = request.argv, request.start_env
    if len(argv) < 3 or argv[0] != executable or argv[1] not in ("-m", "-c"):
        return f"not `{executable} -m MODULE` or `-c CODE`: {' '.join(argv[:3])}"
    for name in sorted(set(env) | set(own_env)):
        if read_at_start(name) and env.get(name) != own_env.get(name):
            return f"{name} differs from the fork server's"
    return None


# -- the server ---------------------------------------------------------------------


def started_with(environ: Mapping[str, str]) -> dict[str, str]:
    """What of ``environ`` (this process's as it started) a request must match."""
    return {k: v for k, v in environ.items() if read_at_start(k)}


def serve(sock: socket.socket, own_env: Mapping[str, str]) -> tuple[Request, int]:
    """Answer requests on ``sock`` until it closes (then exit). Returns only in a forked
    child, with the request it is to become and the pipe its environment comes from:
    the caller runs it (:func:`become`) as the last thing of its ``__main__``, so the
    child ends as an interpreter does. ``own_env``: :func:`started_with` this process's
    environment."""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, None)
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        while True:
            for key, _ in sel.select():
                if key.data is None:
                    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
                    if not data:
                        raise SystemExit(0)  # the supervisor closed its end, or is gone
                    child = _handle(sock, data, fds, own_env, sel, children)
                    if child is not None:
                        return child
                else:
                    pidfd = key.fd
                    pid = children.pop(pidfd)
                    sel.unregister(pidfd)
                    os.close(pidfd)
                    _, status = os.waitpid(pid, 0)
                    _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
    except (BrokenPipeError, ConnectionResetError):
        raise SystemExit(0) from None  # the supervisor is gone: so are its services


def _handle(
    sock: socket.socket,
    data: bytes,
    fds: list[int],
    own_env: Mapping[str, str],
    sel: selectors.BaseSelector,
    children: dict[int, int],
) -> tuple[Request, int] | None:
    try:
        message = decode(data)
        request = parse_request(message)
    except (ValueError, KeyError, TypeError) as exc:
        _close(fds)
        _send(sock, {"error": f"bad request: {exc}", "spawn": -1})
        return None
    if len(fds) != 2:
        why: str | None = "a request brings its log and its environment's pipe"
    else:
        why = refusal(request, sys.executable, own_env)
        why = why or _proctitle.fits(request.argv, request.env_size)
    if why is not None:
        _close(fds)
        _send(sock, {"spawn": request.id, "error": why})
        return None
    log_fd, env_fd = fds
    try:
        forked = _fork(log_fd, env_fd, list(children), sel, sock)
    except OSError as exc:  # no process or no pidfd to be had: this one is not started
        _send(sock, {"spawn": request.id, "error": f"cannot fork: {exc}"})
        return None
    if isinstance(forked, int):
        return request, env_fd  # in the child
    pid, pidfd = forked
    children[pidfd] = pid
    sel.register(pidfd, selectors.EVENT_READ, pid)
    socket.send_fds(sock, [encode({"spawn": request.id, "pid": pid})], [pidfd])
    return None


def _fork(
    log_fd: int,
    env_fd: int,
    others: Sequence[int],
    sel: selectors.BaseSelector,
    sock: socket.socket,
) -> tuple[int, int] | int:
    """Fork; in the child (detached, :func:`_detach`) return the pipe of its
    environment, in this process (the request's descriptors closed) the child's pid and
    pidfd, once the child leads its own session: the supervisor may signal its group,
    or set its session's priority, the moment it has the answer."""
    started, ready = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        _close([started, ready, log_fd, env_fd])
        raise
    if pid == 0:
        os.close(started)
        _detach(log_fd, others, sel, sock)
        os.write(ready, b"\0")
        os.close(ready)
        return env_fd
    _close([ready, log_fd, env_fd])
    try:
        os.read(started, 1)  # b"" if it died first: its exit is reported as any other
    finally:
        os.close(started)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return pid, pidfd


def _detach(
    log_fd: int, fds: Sequence[int], sel: selectors.BaseSelector, sock: socket.socket
) -> None:
    """In the child: a session of its own, death with this server, the log as stdout
    and stderr, /dev/null as stdin, none of the server's descriptors."""
    parent = os.getppid()
    os.setsid()
    die_with_parent()
    if os.getppid() != parent:  # the server died before the signal was armed
        os._exit(1)
    stdio_to(log_fd)
    sel.close()
    sock.close()
    _close(fds)  # the other children's pidfds
    for sig in IGNORED_SIGNALS:  # back to an interpreter's defaults
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def _send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    sock.send(encode(message))


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


# -- the child ----------------------------------------------------------------------


def become(request: Request, env_fd: int) -> None:
    """Run ``request`` in this (forked) process as ``python -m``/``-c`` would: its
    environment (read from ``env_fd``), working directory, ``sys.argv`` and
    ``sys.path[0]``, its module as ``__main__``. Its exit (``SystemExit``, an
    exception) propagates to the caller."""
    env = read_env(env_fd)
    os.environ.clear()
    os.environ.update(env)
    if request.cwd is not None:
        os.chdir(request.cwd)
    gc.enable()  # the server's imports are frozen; what the service allocates is not
    _proctitle.show(request.argv, env)  # after the environment's rebuild above
    flag, target, *args = request.argv[1:]
    sys.orig_argv = list(request.argv)
    # A fresh ``__main__`` that stays (atexit handlers, pickles by ``__main__``, a
    # multiprocessing child see the service's), not this process's.
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    if flag == "-m":
        import runpy

        if not sys.flags.safe_path:  # PYTHONSAFEPATH: no directory was put first
            sys.path[0] = os.getcwd()
        sys.argv = [target, *args]
        # ``python -m`` runs a module that nothing imported yet (a later ``import``
        # of it loads a second copy); a package stays, as ``-m`` imports it first.
        loaded = sys.modules.get(target)
        if loaded is not None and not hasattr(loaded, "__path__"):
            del sys.modules[target]
        sys.modules.pop(f"{target}.__main__", None)
        # What ``python -m`` itself calls: the module runs in ``__main__``, which keeps
        # its ``__spec__``, ``__file__`` and ``sys.argv[0]`` (not restored after).
        runpy._run_module_as_main(target, alter_argv=True)  # type: ignore[attr-defined]
        return
    if not sys.flags.safe_path:
        sys.path[0] = ""
    sys.argv = ["-c", *args]
    exec(compile(target, "<string>", "exec"), main.__dict__)  # what `python -c` does


# -- python -m beampod._forkserver --------------------------------------------------


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m beampod._forkserver")
    parser.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    parser.add_argument("--preload", action="append", default=[], help="a module to import")
    parser.add_argument("--skip", action="append", default=[], help="a module marked absent")
    parser.add_argument("--defer", action="append", default=[], help="a module deferred")
    # Blank room in this command line for the children's (beampod._proctitle): NULs
    # once started, so ``ps`` shows this process's own arguments without it.
    parser.add_argument("--room", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[socket.socket, dict[str, str]]:
    """Import what the children share and say so on the socket. The imports run beside
    Tiled's start: this session at low priority (ADR 32), for good (what it does later
    is fork). Not the thread's nice value, which every child would inherit."""
    from beampod._autogroup import leads_session, set_autogroup_nice
    from beampod._lazy import defer_imports, skip_imports, without_pydantic_plugins
    from beampod._preload import SESSION_NICE

    sock = socket.socket(fileno=args.fd)
    # Before pydantic's switch below is defaulted: an unset one means the same to a
    # service started anew (its entry point defaults it alike).
    own_env = started_with(os.environ)
    # The C library's environment rebuilt off the area that _proctitle writes over.
    environ = dict(os.environ)
    environ.pop(_proctitle.ROOM_VARIABLE, None)
    os.environ.clear()
    os.environ.update(environ)
    _proctitle.show([sys.executable, "-m", "beampod._forkserver"], environ)
    # A terminal's Ctrl-C, a unit's or an operator's SIGTERM are for the supervisor,
    # which stops the services gracefully first: this process ends when it closes the
    # socket, or with it (and the services with this process).
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    die_with_parent()
    if leads_session():
        set_autogroup_nice(SESSION_NICE, wait_s=0.2)
    gc.disable()
    without_pydantic_plugins()
    skip_imports(args.skip)
    defer_imports(args.defer)
    for name in args.preload:
        importlib.import_module(name)
    # Moved out of every collection: a child's collector never writes to these pages,
    # so they stay shared with it (copy-on-write).
    gc.freeze()
    _send(sock, {"ready": os.getpid()})
    return sock, own_env


def main(argv: Sequence[str] | None = None) -> tuple[Request, int]:
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        sock, own_env = prepare(args)
    except BaseException:  # noqa: BLE001 - reported to the supervisor's log, then exit
        traceback.print_exc()
        raise SystemExit(1) from None
    return serve(sock, own_env)


if __name__ == "__main__":
    become(*main())
