"""The CPU a service's process tree used counts the children its threads started: the
queue server's manager starts its worker from a thread other than its main one, and a
tree read through the main thread's children alone missed the worker's start."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from beampod.services._process import tree_cpu_seconds

# A parent whose second thread starts a child that burns ~0.6 CPU-s, then says so and
# waits (the parent's own CPU stays near zero).
PARENT = """
import subprocess, sys, threading
BURN = (
    "import time\\nend = time.process_time() + 0.6\\n"
    "while time.process_time() < end: pass\\n"
    "print('burnt', flush=True)\\ntime.sleep(600)"
)
def start():
    child = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    print(child.stdout.readline().strip(), child.pid, flush=True)
    child.wait()
threading.Thread(target=start, daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.timeout(60)
def test_the_tree_counts_a_child_started_by_another_thread() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()  # blocks until the child has burnt
        assert line[:1] == ["burnt"], line
        child_pid = int(line[1])
        total = tree_cpu_seconds(parent.pid)
        alone = tree_cpu_seconds(child_pid)
        assert total is not None and alone is not None
        assert alone >= 0.5
        assert total >= alone, (total, alone)
    finally:
        if child_pid:
            # The parent's thread waits for the child, so it reaps it: killed first.
            subprocess.run(["kill", "-9", str(child_pid)], check=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and tree_cpu_seconds(child_pid) is not None:
                time.sleep(0.05)  # polling interval until the parent has reaped it
            assert tree_cpu_seconds(child_pid) is None, "the child outlived the test"
        parent.kill()
        parent.wait(timeout=10)
