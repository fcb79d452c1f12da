"""``beampod logs SERVICE -f`` as a user runs it, while the log rotates under it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from beampod.services._logrotate import rotate
from tests.conftest import beampod_cli
from tests.datapath._helpers import wait_for


def _lines(first: int, last: int) -> bytes:
    return b"".join(f"line {i:06d} {'.' * 50}\n".encode() for i in range(first, last))


def test_logs_follow_goes_on_across_a_rotation(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    beampod_cli(root, "init", "--free-ports")
    log = root / "logs" / "writer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(_lines(0, 100))
    proc = subprocess.Popen(
        [sys.executable, "-m", "beampod", "--home", str(root), "logs", "writer", "-f", "-n", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any("line 000099" in s for s in seen), 30.0, "the last two lines shown")
        with log.open("ab") as out:  # the service appends, as through O_APPEND
            out.write(_lines(100, 3000))
            out.flush()
            rotate(log, keep=2)
            out.write(_lines(3000, 3100))
            out.flush()
        wait_for(lambda: any("line 003099" in s for s in seen), 30.0, "the line after it")
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)
    numbers = [int(s.split()[1]) for s in seen if s.startswith("line ")]
    assert numbers == list(range(98, 3100)), "every line once, in order, across the rotation"
    assert (root / "logs" / "writer.log.1").exists()
