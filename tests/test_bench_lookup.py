"""``bench/bench_lookup.py`` measures Tiled's node lookups on PostgreSQL; it says so, and
measures nothing, when the pod it is given stores in SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from beampod.config import PodHome, init_pod


def test_bench_lookup_refuses_a_pod_without_postgresql(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)  # the default store: SQLite
    script = Path(__file__).resolve().parent.parent / "bench" / "bench_lookup.py"
    done = subprocess.run(
        [sys.executable, str(script), "--home", str(home.root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"bench_lookup: {home.root} does not store in PostgreSQL"
    assert "machine:" not in done.stdout
