"""What a forked process shows as its command line and environment (ADR 39).

``ps``, ``pgrep -f``, psutil and ``/proc/PID/cmdline`` and ``/proc/PID/environ`` read a
process's command line and environment from two areas of its memory that the kernel
filled at ``exec``. A service forked from the fork server (``beampod._forkserver``)
would show the fork server's there. Its own are written over them, as setproctitle
does, once nothing points into them any more (Python copied both at its start; the C
library's environment is rebuilt by ``os.environ``'s ``putenv`` before this runs). The
areas cannot grow: the supervisor gives the fork server room in both (a blank argument,
a blank variable), and a service whose command line or environment would not fit is
not forked.

Linux only; standard library only.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Mapping, Sequence

#: The variable that makes room in the fork server's environment; not in a child's.
ROOM_VARIABLE = "BEAMPOD_FORKSERVER_ROOM"


def areas() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(start, end) of this process's command line and of its environment, or None
    where /proc does not say (not Linux)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # After "pid (comm)", proc(5)'s field N is fields[N - 3]: arg_start is field 48,
        # arg_end 49, env_start 50, env_end 51.
        arg = (int(fields[45]), int(fields[46]))
        env = (int(fields[47]), int(fields[48]))
    except (OSError, IndexError, ValueError):
        return None
    if arg[1] <= arg[0] or env[1] < env[0]:
        return None
    return arg, env


def packed(items: Iterable[str], size: int) -> bytes | None:
    """``items`` NUL-terminated one after another and NUL-padded to exactly ``size``
    bytes, as the kernel shows such an area; None if they do not fit."""
    data = b"".join(item.encode(errors="surrogateescape") + b"\0" for item in items)
    if len(data) > size:
        return None
    return data.ljust(size, b"\0")


def env_items(env: Mapping[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in env.items()]


def environ_size(env: Mapping[str, str]) -> int:
    """The bytes ``env`` takes in an environment area."""
    return sum(len(item.encode(errors="surrogateescape")) + 1 for item in env_items(env))


def fits(argv: Sequence[str], env_size: int) -> str | None:
    """Why ``argv`` and an environment of ``env_size`` bytes cannot be shown in this
    process's areas (None: they can)."""
    found = areas()
    if found is None:
        return "this platform does not show a process's own command line"
    (a0, a1), (e0, e1) = found
    if packed(argv, a1 - a0) is None:
        return f"a command line longer than the fork server's room ({a1 - a0} bytes)"
    if env_size > e1 - e0:
        return f"an environment larger than the fork server's room ({e1 - e0} bytes)"
    return None


def show(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Write ``argv`` and ``env`` over this process's areas; False if either does not
    fit (nothing is written then) or the areas are unknown."""
    found = areas()
    if found is None:
        return False
    (a0, a1), (e0, e1) = found
    args, environ = packed(argv, a1 - a0), packed(env_items(env), e1 - e0)
    if args is None or environ is None:
        return False
    ctypes.memmove(a0, args, len(args))
    ctypes.memmove(e0, environ, len(environ))
    return True


def room(strings: Iterable[str], margin: int = 256) -> str:
    """A blank value as long as the longest of ``strings`` (encoded) plus ``margin``:
    for an argument or a variable that makes room in a process's areas."""
    longest = max((len(s.encode(errors="surrogateescape")) for s in strings), default=0)
    return "-" * (longest + margin)
