"""Commands that read from a pod that is not running say so at once, in one line that
names what did not answer and what to check: no retries first, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import beampod_cli


@pytest.fixture(scope="module")
def stopped_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pod initialised on free ports and never started."""
    root = tmp_path_factory.mktemp("no-pod") / "pod"
    beampod_cli(root, "init", "--free-ports")
    return root


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (("runs",), "cannot reach the pod's Tiled server at http://127.0.0.1:"),
        (("plot", "1", "-o", "out.png"), "cannot reach the pod's Tiled server at http://"),
        (("dlq", "list"), "cannot connect to NATS at nats://127.0.0.1:"),
        # nats-py would retry the refused port until the connect's bound (6 s).
        (("tail",), "cannot connect to NATS at nats://127.0.0.1:"),
        # The devices would wait out their connection timeout (5 s), after libca's
        # lines about starting a CA repeater of its own.
        (("run", "count([pinhole], 3)"), "the IOCs of instrument 'demo' do not answer:"),
    ],
    ids=["runs", "plot", "dlq", "tail", "run"],
)
def test_a_command_facing_a_stopped_pod_says_so(
    stopped_home: Path, command: tuple[str, ...], what: str
) -> None:
    out = beampod_cli(stopped_home, *command, check=False)
    assert out.returncode == 1, out
    lines = out.stderr.splitlines()
    # One line: tiled's client, retrying a refused connection for ~25 s, would first
    # have printed "Retrying…".
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"beampod: error: {what}"), lines
    assert lines[0].endswith("; is the pod up? (`beampod status`)"), lines
    if "NATS" in what:
        assert ": nothing listens there (Connection refused);" in lines[0], lines
    if "IOCs" in what:
        assert "nothing listens at 127.0.0.1:" in lines[0], lines
        assert "CA Repeater" not in out.stderr and not out.stdout, out


def test_refused_is_told_from_listening() -> None:
    import socket

    from beampod._net import refuses_connections

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert refuses_connections(f"http://127.0.0.1:{port}/api") is None
    # Closed now: nothing listens on the port.
    assert refuses_connections(f"http://127.0.0.1:{port}/api") == "Connection refused"


def test_a_session_on_a_stopped_pod_starts_at_once_and_says_why_once(stopped_home: Path) -> None:
    """The session still starts (data and plans can be looked at) without waiting for
    devices that cannot connect, and without libca's lines about starting a CA
    repeater of its own."""
    out = beampod_cli(
        stopped_home, "shell", "-c", "print('DEVICES', len(instrument.devices))", check=False
    )
    assert out.returncode == 0, out
    assert "DEVICES 14" in out.stdout, out
    lines = out.stderr.splitlines()
    assert lines[0].startswith(
        "beampod: warning: the IOCs of instrument 'demo' do not answer: nothing listens at "
    ), lines
    assert "CA Repeater" not in out.stderr and "caRepeater" not in out.stderr, out.stderr
    assert not any("not connected after" in line for line in lines), lines  # no wait
    # The bus's line (documents would go to the local spool) is the only other one.
    assert len(lines) == 2 and "bus unreachable" in lines[1], lines
