"""The supervisor gives the memory it freed back to the OS (``services/_heaptrim.py``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap

import pytest

from beampod.services._heaptrim import _malloc_trim, keep_heap_trimmed

glibc = pytest.mark.skipif(_malloc_trim() is None, reason="no glibc malloc_trim here")

# 40,000 chunks of 4 KB on the C heap (160 MB), all freed but the last: that one keeps
# the heap's top in use, so glibc cannot give the free pages below it back by itself.
_FRAGMENTED = textwrap.dedent(
    """
    import os, sys
    from beampod.services._heaptrim import release_free_memory

    def rss_kb():
        with open(f"/proc/{os.getpid()}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    chunks = [bytearray(4000) for _ in range(40_000)]
    keep = chunks[-1]
    del chunks
    before = rss_kb()
    released = release_free_memory()
    print(before, rss_kb(), released)
    """
)


@glibc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_free_pages_inside_the_heap_go_back_to_the_os() -> None:
    # A process of its own: the test session's heap is not this test's to judge.
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MALLOC_ARENA_MAX": "1"},
        check=True,
    ).stdout.split()
    before, after, released = int(out[0]), int(out[1]), out[2]
    assert released == "True"
    assert before - after > 100_000, f"RSS {before} -> {after} kB"


def test_trims_every_interval_until_cancelled() -> None:
    calls: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def release() -> bool:
            calls.append(loop.time())
            return True

        task = asyncio.create_task(keep_heap_trimmed(0.01, release))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(calls) >= 3 and all(b > a for a, b in itertools.pairwise(calls))
