"""Run a script in a fresh interpreter and read what it printed last, as JSON: for checks
of import policies and of process-wide state (the garbage collector, ``sys.modules``)
that a test process, which has imported everything already, cannot make."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any


def fresh_json(code: str, timeout: float = 120) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
