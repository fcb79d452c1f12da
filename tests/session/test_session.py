"""The session over real CA: scans follow the physics, errors give non-zero exits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from beampod.errors import PlanError
from beampod.session import run_code
from tests.session.conftest import run_session
from tests.sim._iocfix import RunningIocs

SCAN_CODE = """
import json
rows = []
def grab(name, doc):
    if name == "event":
        rows.append((doc["data"]["motor_ph"], doc["data"]["pinhole"]))
uids = RE(scan([pinhole], motor_ph, -10, 10, 25), grab)
print("ROWS", json.dumps(rows))
print("POS", motor_ph.position)
"""


@pytest.mark.pod
def test_scan_over_ca_follows_the_pinhole_physics(session_iocs: RunningIocs) -> None:
    proc = run_session(session_iocs.pod.home.root, "shell", SCAN_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(_line(proc.stdout, "ROWS"))
    xs = [x for x, _ in rows]
    ys = [y for _, y in rows]
    assert len(rows) == 25
    assert xs[0] == pytest.approx(-10) and xs[-1] == pytest.approx(10)
    assert xs == pytest.approx([-10 + i * 20 / 24 for i in range(25)], abs=1e-6)
    peak = max(ys)
    assert abs(xs[ys.index(peak)]) < 2
    assert ys[0] < 0.2 * peak and ys[-1] < 0.2 * peak
    # Counts fall away from the centre on both sides.
    assert ys[3] < ys[8] < ys[12] and ys[21] < ys[16] < ys[12]
    assert float(_line(proc.stdout, "POS")) == pytest.approx(10)
    assert "motor_ph" in proc.stdout and "pinhole" in proc.stdout  # the LiveTable


@pytest.mark.pod
def test_namespace_has_the_session_names(session_iocs: RunningIocs) -> None:
    code = """
need = {"RE", "db", "bp", "bps", "bpp", "bec", "scan", "count", "align_peak",
        "pinhole", "motor_ph", "edge", "motor_edge", "slit", "motor_slit",
        "ring_current", "rw_horiz", "rw_vert", "simple", "thermo"}
missing = need - set(globals())
assert not missing, missing
assert RE.md["instrument"] == "demo"
RE(mv(motor_edge, 2.5))
assert abs(motor_edge.position - 2.5) < 1e-9
print("DB", repr(db))
"""
    proc = run_session(session_iocs.pod.home.root, "shell", code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _line(proc.stdout, "DB").startswith("<db")


INSTRUMENT_PLANS_CODE = """
RE(align_peak([pinhole], motor_ph, -10, 10, 21))
print("POS", motor_ph.position)
thermo.K.put(0.3)  # settle in about a second instead of ~20 s
temps = []
RE(thermo_ramp([ring_current], thermo, [40, 60]),
   lambda name, doc: temps.append(doc["data"]["thermo"]) if name == "event" else None)
print("TEMPS", temps)
"""


@pytest.mark.pod
def test_instrument_plans(session_iocs: RunningIocs) -> None:
    proc = run_session(session_iocs.pod.home.root, "shell", INSTRUMENT_PLANS_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # align_peak ends at the pinhole's centre.
    assert abs(float(_line(proc.stdout, "POS"))) < 1.0
    # thermo_ramp reads once the readback is within tolerance of each setpoint.
    temps = json.loads(_line(proc.stdout, "TEMPS"))
    assert temps == pytest.approx([40, 60], abs=1.0)


@pytest.mark.pod
def test_run_shell_returns_non_zero_on_error(session_iocs: RunningIocs) -> None:
    code = "RE(count([pinhole]))\nundefined_name + 1"
    proc = run_session(session_iocs.pod.home.root, "shell", code)
    assert proc.returncode == 1
    assert "NameError: name 'undefined_name' is not defined" in proc.stderr
    assert 'File "<beampod shell -c>", line 2' in proc.stderr


@pytest.mark.pod
def test_run_plan_expression_returns_the_run_uid(session_iocs: RunningIocs) -> None:
    proc = run_session(
        session_iocs.pod.home.root, "run", "scan([pinhole, edge], motor_edge, -2, 2, 5)"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uids = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("UID ")]
    assert len(uids) == 1
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", uids[0])


BAD_EXPRESSIONS = [
    ("scan([pinhole], motor_ph, -1, 1, os.system('x'))", "a function call is not allowed"),
    ("scan([nothing], motor_ph, -1, 1, 3)", "unknown device 'nothing'"),
    ("count([pinhole], nmu=3)", "bad arguments for count"),
    ("nope([pinhole])", "unknown plan 'nope'"),
]


@pytest.mark.pod
def test_run_plan_expression_refuses_bad_input(session_iocs: RunningIocs) -> None:
    # One session process for all of them: each is parsed and refused before any run.
    proc = run_session(session_iocs.pod.home.root, "run", *(e for e, _ in BAD_EXPRESSIONS))
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == len(BAD_EXPRESSIONS), proc.stdout + proc.stderr
    for line, (_, message) in zip(errors, BAD_EXPRESSIONS, strict=True):
        assert line.startswith("ERROR PlanError ") and message in line, line
    assert "UID" not in proc.stdout


# -- run_code's error contract, in process (no devices needed) ------------------------


def _ns() -> dict[str, Any]:
    return {"__name__": "__main__"}


def test_run_code_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_code("print('hi')", _ns()) == 0
    assert capsys.readouterr().out == "hi\n"


def test_run_code_traceback_starts_at_user_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_code("def f():\n    return 1 / 0\nf()", _ns()) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback")
    assert "_shell.py" not in err  # beampod's own frames are not shown
    assert "return 1 / 0" in err and "ZeroDivisionError" in err


def test_run_code_beampod_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    ns = _ns() | {"PlanError": PlanError}
    assert run_code("raise PlanError('unknown plan nope')", ns) == 2
    assert capsys.readouterr().err == "error: unknown plan nope\n"


def test_run_code_syntax_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_code("RE(count([det])", _ns()) == 1
    err = capsys.readouterr().err
    assert "SyntaxError" in err and "Traceback" not in err


def test_run_code_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_code("import sys; sys.exit(4)", _ns()) == 4
    assert run_code("raise SystemExit", _ns()) == 0


def _line(out: str, tag: str) -> str:
    for line in out.splitlines():
        if line.startswith(tag + " "):
            return line[len(tag) + 1 :]
    raise AssertionError(f"no {tag} line in output:\n{out}")


@pytest.mark.pod
def test_two_pods_on_one_machine_do_not_see_each_other(
    session_iocs: RunningIocs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from beampod.sim import write_sync
    from tests.sim._iocfix import running_iocs

    with running_iocs(tmp_path_factory.mktemp("other-pod")) as other:
        # Same PV names, other ports: move the other pod's slit motor only.
        write_sync("127.0.0.1", other.port("mini:"), "mini:slit:mtr", 33.0)
        proc = run_session(session_iocs.pod.home.root, "shell", "print('POS', motor_slit.position)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert float(_line(proc.stdout, "POS")) == pytest.approx(0.0)
    # libca reports a PV found on two servers; the address list must prevent that.
    assert "Identical process variable" not in proc.stderr + proc.stdout


@pytest.mark.pod
def test_session_starts_connected_and_names_devices_whose_ioc_is_down(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Only the mini_beamline IOC runs: the session waits for its devices (a move right
    away works), names the devices that did not connect, and starts anyway."""
    from tests.sim._iocfix import running_iocs

    # One process per IOC: only the mini beamline's runs.
    with running_iocs(
        tmp_path_factory.mktemp("partial-pod"), families={"mini_beamline"}, processes="per_ioc"
    ) as iocs:
        proc = run_session(
            iocs.pod.home.root,
            "shell",
            "RE(mv(motor_slit, 1.5)); print('POS', motor_slit.position)",
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert float(_line(proc.stdout, "POS")) == pytest.approx(1.5)
    warning = next(ln for ln in proc.stderr.splitlines() if "not connected after" in ln)
    assert "thermo" in warning and "rw_horiz" in warning
    assert "motor_slit" not in warning and "pinhole" not in warning
    # Each named with a short reason, not ophyd's list of every signal and subscription.
    assert "thermo (5 PVs, e.g. thermo:" in warning, warning
    assert "Pending operations" not in warning and len(warning) < 500, warning
