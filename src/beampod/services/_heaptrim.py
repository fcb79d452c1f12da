"""Give the memory the supervisor freed back to the OS, now and then.

The supervisor runs for weeks, and what it does each health check comes and goes: its
memory in use stays flat (glibc's ``malloc_stats``: the main arena's bytes in use moved
by 24 KB in 17 minutes of a soak), but the C allocator keeps freed chunks in the middle
of its heap resident, and with every check's allocations landing in different holes,
the heap's resident pages crept up by ~3 MB an hour (a facility of three instruments
under load, docs/benchmarks.md "A long steady load"). glibc gives back only the free
top of the heap by itself; ``malloc_trim(0)`` also releases every whole free page
inside it (``MADV_DONTNEED``), in about a millisecond. Where there is no glibc (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

TRIM_EVERY_S = 300.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None. ctypes loads on the first call only."""
    import ctypes

    try:
        fn = ctypes.CDLL(None).malloc_trim  # this process's symbols: libc's among them
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS. True: some memory was released;
    False: none, or no glibc."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


async def keep_heap_trimmed(
    interval_s: float = TRIM_EVERY_S, release: Callable[[], bool] = release_free_memory
) -> None:
    """Release free memory every ``interval_s`` until cancelled."""
    if _malloc_trim() is None and release is release_free_memory:
        return
    while True:
        await asyncio.sleep(interval_s)
        release()
