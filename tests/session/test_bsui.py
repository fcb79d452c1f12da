"""bsui habits in ``beampod shell``: bluesky's magics in a real IPython shell, plots
saved as PNG files in headless sessions, ``bec.peaks``."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.session.conftest import run_session
from tests.sim._iocfix import RunningIocs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAGICS = """\
%mov motor_ph 2.5
print("AFTER_MOV", motor_ph.position)
%movr motor_ph 1
print("AFTER_MOVR", motor_ph.position)
%wa motors
%ct
exit
"""


def _shell(home: Path, stdin: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``beampod shell`` (IPython) fed commands on stdin, as a user types them."""
    return subprocess.run(
        [sys.executable, "-m", "beampod", "--home", str(home), "shell"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _value(out: str, pattern: str) -> str:
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"{pattern!r} not in:\n{out}"
    return found.group(1)


@pytest.mark.pod
def test_bluesky_magics_in_the_ipython_shell(session_iocs: RunningIocs) -> None:
    proc = _shell(session_iocs.pod.home.root, MAGICS)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "UsageError" not in out and "not found" not in out, out
    assert float(_value(out, r"AFTER_MOV (\S+)")) == pytest.approx(2.5)
    assert float(_value(out, r"AFTER_MOVR (\S+)")) == pytest.approx(3.5)
    # %wa motors: the label, then a row per motor with its position.
    assert re.search(r"^(In \[\d+\]: )?motors$", out, re.MULTILINE), out
    # (A row: name, value, low and high limit, offset. Not the "motor_ph [In progress.
    # No progress bar available.]" that %mov prints when a move takes a while.)
    row = r"^\s*{}\s+(-?\d[\d.e+-]*)\s+-?\d[\d.e+-]*\s+-?\d[\d.e+-]*\s+-?\d[\d.e+-]*\s*$"
    assert float(_value(out, row.format("motor_ph"))) == pytest.approx(3.5)
    for motor in ("motor_edge", "motor_slit", "motor_dot_x", "motor_dot_y"):
        assert re.search(row.format(motor), out, re.MULTILINE), motor
    # %ct: one count of every detector, printed as "name  value".
    assert "[This data will not be saved." in out
    counts = {
        d: float(_value(out, rf"^(?:.*\] )?{d}\s+(\S+)$")) for d in ("pinhole", "edge", "slit")
    }
    assert counts["pinhole"] > 0 and counts["edge"] > 0
    assert re.search(r"^dot\s+\S+$", out, re.MULTILINE), out


PLOT_CODE = """
import json
RE(scan([pinhole], motor_ph, -10, 10, 21))
x_max, y_max = bec.peaks["max"]["pinhole"]
print("PEAKS", json.dumps({"cen": float(bec.peaks["cen"]["pinhole"]),
                           "x_max": float(x_max), "y_max": float(y_max)}))
print("SAME", peaks is bec.peaks)
"""


@pytest.mark.pod
def test_headless_scan_writes_a_png_and_fills_bec_peaks(session_iocs: RunningIocs) -> None:
    home = session_iocs.pod.home.root
    # A user's usual umask: what the session writes into the pod home stays the owner's.
    proc = run_session(home, "shell", PLOT_CODE, umask=0o022)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = Path(_value(proc.stdout, r"^plot: (\S+\.png)$"))
    assert path.parent == home / "plots"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    counter = session_iocs.pod.home.data_dir / "scan_id" / session_iocs.pod.config.instrument_name
    for private in (path, counter):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert re.fullmatch(r"\d+-[0-9a-f]{8}\.png", path.name), path.name
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    peaks = json.loads(_value(proc.stdout, r"^PEAKS (.*)$"))
    assert abs(peaks["cen"]) < 2.0  # the pinhole is centred at 0
    assert abs(peaks["x_max"]) < 2.0 and peaks["y_max"] > 0
    assert "SAME True" in proc.stdout
