"""The fork server (ADR 39): a service forked from it runs as its command line would in
a new interpreter, shows its own command line and environment, reports its exit, and
dies with it; what it cannot become starts a new interpreter instead."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from beampod import _forkserver, _proctitle
from beampod._headstart import Spawned
from beampod._podhome import PodHome
from beampod.services._forked import ForkedProcess, ForkServer, Spawner, start_spawner
from beampod.services._probes import TcpProbe
from beampod.services._process import SpawnedProcess
from beampod.services._spec import ServiceSpec

pytestmark = pytest.mark.timeout(60)

# -- the protocol, without sockets ---------------------------------------------------


def test_a_request_goes_through_the_wire_format_unchanged_without_its_environment() -> None:
    env = {"PYTHONUNBUFFERED": "1", "BEAMPOD_AGENT_PASSWORD": "s3cret"}
    request = _forkserver.request_for(7, (sys.executable, "-m", "x", "--a"), env, "/tmp")
    data = _forkserver.encode(_forkserver.request_message(request))
    assert _forkserver.parse_request(_forkserver.decode(data)) == request
    # The server sees what it checks and the size, never the values it has no use for.
    assert request.start_env == {"PYTHONUNBUFFERED": "1"}
    assert request.env_size == len(b"PYTHONUNBUFFERED=1\0BEAMPOD_AGENT_PASSWORD=s3cret\0")
    assert b"s3cret" not in data


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"spawn": 1, "argv": "python -m x", "start_env": {}, "env_size": 0}, "argv"),
        ({"spawn": 1, "argv": ["p"], "start_env": {"K": 1}, "env_size": 0}, "start_env"),
        ({"spawn": 1, "argv": ["p"], "cwd": 3, "start_env": {}, "env_size": 0}, "cwd"),
        ({"spawn": 1, "argv": ["p"], "start_env": {}, "env_size": -1}, "env_size"),
    ],
)
def test_a_malformed_request_is_named(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _forkserver.parse_request(message)


def test_a_message_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        _forkserver.decode(b"[1, 2]")


def _request(argv: tuple[str, ...], env: dict[str, str] | None = None) -> _forkserver.Request:
    return _forkserver.request_for(1, argv, env or {}, None)


def test_only_this_interpreter_started_the_same_way_can_be_forked() -> None:
    py = sys.executable
    own = {"PYTHONUNBUFFERED": "1"}
    assert _forkserver.refusal(_request((py, "-m", "mod"), own), py, own) is None
    assert _forkserver.refusal(_request((py, "-c", "pass"), own), py, own) is None
    # Another interpreter (an environment cycle's), other flags, no module at all.
    assert "not" in str(_forkserver.refusal(_request(("/other/python", "-m", "m"), own), py, own))
    assert _forkserver.refusal(_request((py, "-X", "dev", "-m", "m"), own), py, own)
    assert _forkserver.refusal(_request((py, "-m"), own), py, own)
    # What Python (or pydantic) reads only at its start must be the same.
    for name in ("PYTHONPATH", "PYTHONHASHSEED", "PYDANTIC_DISABLE_PLUGINS"):
        why = _forkserver.refusal(_request((py, "-m", "m"), {**own, name: "x"}), py, own)
        assert why == f"{name} differs from the fork server's"
    assert _forkserver.refusal(_request((py, "-m", "m"), {}), py, own) == (
        "PYTHONUNBUFFERED differs from the fork server's"
    )
    # Anything else is the child's own.
    assert _forkserver.refusal(_request((py, "-m", "m"), {**own, "EPICS_CA": "1"}), py, own) is None


def test_an_area_is_packed_to_its_exact_size_or_not_at_all() -> None:
    assert _proctitle.packed(["ab", "c"], 8) == b"ab\0c\0\0\0\0"
    assert _proctitle.packed(["ab", "c"], 5) == b"ab\0c\0"
    assert _proctitle.packed(["ab", "c"], 4) is None
    assert _proctitle.env_items({"A": "1", "B": "x=y"}) == ["A=1", "B=x=y"]
    assert len(_proctitle.room(["abc", "é"], margin=10)) == 13
    assert _proctitle.environ_size({"A": "1", "B": "é"}) == len("A=1\0B=é\0".encode())


# -- real processes ------------------------------------------------------------------

REPORT = """
import atexit, json, os, sys
atexit.register(lambda: print("at exit, __main__ is", getattr(sys.modules["__main__"],
    "__file__", "-"), flush=True))
print(json.dumps({
    "orig_argv": sys.orig_argv,
    "name": __name__,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "path0": sys.path[0],
    "probe": os.environ.get("PROBE"),
    "leads_session": os.getsid(0) == os.getpid(),
    "stdin": sys.stdin.read(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}), flush=True)
if "--stay" in sys.argv:
    import time
    while True:
        time.sleep(60)
raise SystemExit(3)
"""


def _run(scenario: Callable[[ForkServer, Path], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        server = await ForkServer.start(tmp_path / "forkserver.log", ("-" * 512, "-" * 512))
        try:
            assert await server.ready(30.0), (tmp_path / "forkserver.log").read_text()
            await scenario(server, tmp_path)
        finally:
            await server.close()
        assert server._proc.returncode is not None  # the fork server ended with close()

    asyncio.run(main())


def _report(log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        if lines:
            return json.loads(lines[-1])
        time.sleep(0.02)  # polling the child's log, bounded by the deadline
    raise AssertionError(f"no report in {log}: {log.read_text()!r}")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_forked_module_runs_as_python_m_would(tmp_path: Path) -> None:
    (tmp_path / "report_service.py").write_text(REPORT)
    log = tmp_path / "report.log"

    async def scenario(server: ForkServer, where: Path) -> None:
        launch = Spawned(
            "report",
            (sys.executable, "-m", "report_service", "a", "--flag"),
            {"PROBE": "forked"},
            str(where),
        )
        child = await server.spawn(launch, log)
        assert isinstance(child, ForkedProcess), child
        assert await asyncio.wait_for(child.wait(), 20) == 3
        assert child.returncode == 3

    _run(scenario, tmp_path)
    report = _report(log)
    assert report["name"] == "__main__"
    assert report["argv"] == [str(tmp_path / "report_service.py"), "a", "--flag"]
    assert report["cwd"] == report["path0"] == str(tmp_path)
    assert report["probe"] == "forked"
    assert report["leads_session"] is True
    assert report["stdin"] == ""
    assert report["fds"] == [0, 1, 2, 3]  # 3: the listing's own; none of the server's
    assert report["orig_argv"] == [sys.executable, "-m", "report_service", "a", "--flag"]
    # Its module stays __main__ to the end, as under `python -m`.
    assert f"at exit, __main__ is {tmp_path / 'report_service.py'}" in log.read_text()


def test_a_forked_service_shows_its_own_command_line_and_environment(tmp_path: Path) -> None:
    log = tmp_path / "stay.log"
    argv = (sys.executable, "-c", REPORT, "--stay")
    seen: dict[str, Any] = {}

    async def scenario(server: ForkServer, where: Path) -> None:
        child = await server.spawn(Spawned("stay", argv, {"PROBE": "shown"}, None), log)
        assert isinstance(child, ForkedProcess), child
        report = await asyncio.to_thread(_report, log)
        seen["argv"] = report["argv"]
        seen["ppid"] = _ppid(child.pid)
        seen["cmdline"] = Path(f"/proc/{child.pid}/cmdline").read_bytes().rstrip(b"\0")
        environ = Path(f"/proc/{child.pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
        seen["environ"] = dict(e.decode().partition("=")[::2] for e in environ)
        os.killpg(child.pid, signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), 20) == -signal.SIGTERM
        seen["server"] = server.pid

    _run(scenario, tmp_path)
    assert seen["argv"] == ["-c", "--stay"]
    assert seen["ppid"] == seen["server"]
    assert seen["cmdline"].split(b"\0") == [a.encode() for a in argv]
    assert seen["environ"]["PROBE"] == "shown"
    assert _proctitle.ROOM_VARIABLE not in seen["environ"]
    assert seen["environ"]["PYTHONUNBUFFERED"] == "1"


def test_what_cannot_be_forked_starts_a_new_interpreter(tmp_path: Path) -> None:
    log = tmp_path / "sh.log"
    progress: list[str] = []

    async def scenario(server: ForkServer, where: Path) -> None:
        spawner = Spawner(server, progress.append)
        # Another program (or interpreter: an environment cycle's) is not even asked.
        launch = Spawned("sh", ("/bin/sh", "-c", "echo from-sh; exit 4"), {}, None)
        proc = await spawner.spawn(launch, log, fork=True)
        assert isinstance(proc, SpawnedProcess)
        assert await asyncio.wait_for(proc.wait(), 20) == 4
        # This interpreter with a path the fork server did not start with: refused,
        # said once, and started anew with that path.
        code = "import sys; print('path', sys.path[1]); raise SystemExit(6)"
        odd = Spawned("odd", (sys.executable, "-c", code), {"PYTHONPATH": "/nowhere"}, None)
        for _ in range(2):
            proc = await spawner.spawn(odd, log, fork=True)
            assert isinstance(proc, SpawnedProcess)
            assert await asyncio.wait_for(proc.wait(), 20) == 6
        # Too long for the room the server was given: refused before any fork.
        long = Spawned("long", (sys.executable, "-c", "pass", "x" * 4096), {}, None)
        assert "command line longer" in str(await server.spawn(long, log))

    _run(scenario, tmp_path)
    assert "from-sh" in log.read_text()
    assert log.read_text().count("path /nowhere") == 2
    assert progress == [
        "odd not forked: PYTHONPATH differs from the fork server's; starting a new interpreter"
    ]


def test_an_environment_the_pipe_cannot_hold_starts_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel will not grow a pipe (a user past ``fs.pipe-user-pages-soft``),
    an environment larger than the pipe is not written blocking the event loop: the
    service starts anew."""
    import fcntl

    real = fcntl.fcntl

    def refusing_growth(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETPIPE_SZ:
            return real(fd, fcntl.F_GETPIPE_SZ)  # "set", and nothing changed
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing_growth)
    log = tmp_path / "large.log"
    large = {"LARGE": "x" * (100 << 10)}  # over a default pipe's 64 KiB
    code = "import os; print('large', len(os.environ['LARGE']))"
    launch = Spawned("large", (sys.executable, "-c", code), large, None)

    async def scenario(server: ForkServer, where: Path) -> None:
        why = await server.spawn(launch, log)
        assert isinstance(why, str) and why.startswith("no pipe for its environment"), why
        proc = await Spawner(server).spawn(launch, log, fork=True)
        assert isinstance(proc, SpawnedProcess)
        assert await asyncio.wait_for(proc.wait(), 20) == 0

    _run(scenario, tmp_path)
    assert f"large {100 << 10}" in log.read_text()


def test_forked_services_die_with_the_fork_server(tmp_path: Path) -> None:
    log = tmp_path / "orphan.log"
    seen: dict[str, int] = {}

    async def scenario(server: ForkServer, where: Path) -> None:
        argv = (sys.executable, "-c", REPORT, "--stay")
        child = await server.spawn(Spawned("orphan", argv, {}, None), log)
        assert isinstance(child, ForkedProcess), child
        await asyncio.to_thread(_report, log)
        ended: list[bool] = []
        server.on_end = lambda: ended.append(True)
        # A unit's or an operator's SIGTERM (or a terminal's SIGINT, SIGHUP) is the
        # supervisor's to act on: the fork server and its services stay.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            os.kill(server.pid, sig)
        again = await server.spawn(Spawned("again", (sys.executable, "-c", "pass"), {}, None), log)
        assert isinstance(again, ForkedProcess), again
        assert await asyncio.wait_for(again.wait(), 20) == 0
        assert child.returncode is None and not ended
        os.kill(server.pid, signal.SIGKILL)
        seen["code"] = await asyncio.wait_for(child.wait(), 20)
        assert ended == [True]
        seen["pid"] = child.pid
        assert server.gone
        later = await Spawner(server).spawn(Spawned("x", argv, {}, None), log, fork=True)
        assert isinstance(later, SpawnedProcess)  # a new interpreter, since none forks
        os.killpg(later.pid, signal.SIGKILL)
        await later.wait()

    _run(scenario, tmp_path)
    assert seen["code"] == -signal.SIGKILL
    # Gone, not only reported gone (a zombie of init's would still be listed).
    stat = Path(f"/proc/{seen['pid']}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_an_exit_read_with_the_spawns_answer_is_not_lost(tmp_path: Path) -> None:
    """A service that exits at once: its exit can arrive in the same read as the answer
    to its spawn, before the spawn that waits for that answer resumes."""
    codes: dict[str, int | None] = {}

    async def scenario(server: ForkServer, where: Path) -> None:
        stay = (sys.executable, "-c", "import time; time.sleep(60)")
        # Each leads its group, as a forked service does (it is signalled as a group).
        sleeper = await asyncio.create_subprocess_exec(*stay, start_new_session=True)
        reply = asyncio.get_running_loop().create_future()
        server._replies[41] = reply
        pidfd = os.pidfd_open(sleeper.pid)
        server._dispatch({"spawn": 41, "pid": sleeper.pid}, [pidfd])
        server._dispatch({"exited": sleeper.pid, "code": 5}, [])
        child = await reply
        codes["reported"] = await asyncio.wait_for(child.wait(), 5)
        # An answer nobody waits for any more: that process is not kept running.
        late = await asyncio.create_subprocess_exec(*stay, start_new_session=True)
        server._dispatch({"spawn": 42, "pid": late.pid}, [os.pidfd_open(late.pid)])
        codes["late"] = await asyncio.wait_for(late.wait(), 5)
        sleeper.kill()
        await sleeper.wait()

    _run(scenario, tmp_path)
    assert codes == {"reported": 5, "late": -signal.SIGKILL}


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the readable memory of process ``pid``."""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            bounds, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in bounds.split("-"))
            try:
                mem.seek(start)
                found = found or needle in mem.read(end - start)
            except (OSError, ValueError, OverflowError):  # [vvar] and the like
                continue
    return found


def test_a_services_environment_reaches_it_alone(tmp_path: Path) -> None:
    """Credentials in one service's environment (an instrument's agent password) are
    never in the fork server's memory, nor so in any service forked after it."""
    first, second = os.urandom(16).hex().encode(), os.urandom(16).hex().encode()
    argv = (sys.executable, "-c", REPORT, "--stay")
    held: dict[str, bool] = {}

    async def scenario(server: ForkServer, where: Path) -> None:
        children = []
        for name, token in (("one", first), ("two", second)):
            launch = Spawned(name, argv, {"PROBE": token.decode()}, None)
            child = await server.spawn(launch, where / f"{name}.log")
            assert isinstance(child, ForkedProcess), child
            await asyncio.to_thread(_report, where / f"{name}.log")
            children.append(child)
        one, two = children
        held["first in its own"] = _memory_holds(one.pid, first)  # the check can see it
        held["first in the server"] = _memory_holds(server.pid, first)
        held["first in the next"] = _memory_holds(two.pid, first)
        held["second in the server"] = _memory_holds(server.pid, second)
        for child in children:
            os.killpg(child.pid, signal.SIGKILL)
            await child.wait()

    _run(scenario, tmp_path)
    assert held == {
        "first in its own": True,
        "first in the server": False,
        "first in the next": False,
        "second in the server": False,
    }


def _spec(name: str, forkable: bool) -> ServiceSpec:
    return ServiceSpec(
        name, (sys.executable, "-c", "pass"), TcpProbe("127.0.0.1", 1), forkable=forkable
    )


def test_a_fork_server_runs_only_where_it_is_wanted_and_has_work(tmp_path: Path) -> None:
    home = PodHome(tmp_path)

    async def spawners() -> list[Spawner]:
        made = [
            await start_spawner(home, [_spec("a", True)], fork=False, progress=print),
            await start_spawner(home, [_spec("a", False)], fork=True, progress=print),
            await start_spawner(home, [_spec("a", True)], fork=True, progress=print),
        ]
        for spawner in made:
            await spawner.close()
        return made

    off, idle, on = asyncio.run(spawners())
    assert off.server is None and idle.server is None
    assert on.server is not None and on.server.gone
