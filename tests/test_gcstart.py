"""The cyclic collector paused for a service's start (beampod._gcstart): off while it
starts, back on (with the start's objects frozen) once it has, and back on after the
longest pause even if the start never says so. In fresh interpreters: the collector's
state is the process's."""

from __future__ import annotations

from tests._fresh import fresh_json


def test_paused_for_the_start_then_frozen_and_collecting_again() -> None:
    out = fresh_json(
        """
        import gc, json
        from beampod._gcstart import pause_gc, resume_gc
        pause_gc()
        paused = not gc.isenabled()
        # A cycle made during the start is not collected while paused ...
        class Node: pass
        a, b = Node(), Node(); a.other, b.other = b, a
        del a, b
        before = gc.get_count()[0]
        started = [[] for _ in range(10_000)]  # tracked allocations, no collection
        still_paused = not gc.isenabled() and gc.get_count()[0] >= before
        resume_gc()
        frozen = gc.get_freeze_count()
        # ... and the collector runs again for what comes after.
        c, d = Node(), Node(); c.other, d.other = d, c
        del c, d
        found = gc.collect()
        print(json.dumps({"paused": paused, "still_paused": still_paused,
                          "enabled": gc.isenabled(), "frozen": frozen, "found": found}))
        """,
        timeout=60,
    )
    assert out["paused"] and out["still_paused"]
    assert out["enabled"] is True
    assert out["frozen"] > 10_000  # the start's objects, out of the collector's reach
    assert out["found"] >= 2  # the cycle made after the start


def test_the_collector_comes_back_after_the_longest_pause() -> None:
    out = fresh_json(
        """
        import gc, json, time
        from beampod._gcstart import pause_gc
        pause_gc(longest_s=0.2)  # a start that never calls resume_gc
        paused = not gc.isenabled()
        deadline = time.monotonic() + 20
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling interval, bounded by the deadline
        print(json.dumps({"paused": paused, "enabled": gc.isenabled()}))
        """,
        timeout=60,
    )
    assert out == {"paused": True, "enabled": True}


def test_resuming_twice_and_a_timer_that_fires_after_it_change_nothing() -> None:
    out = fresh_json(
        """
        import gc, json, threading, time
        from beampod._gcstart import pause_gc, resume_gc
        pause_gc(longest_s=0.1)
        resume_gc()
        resume_gc()
        # The cancelled timer's thread ends (nothing left to fire), the collector stays on.
        deadline = time.monotonic() + 20
        def timer_alive():
            return any(t.name == "beampod-gc-resume" for t in threading.enumerate())
        while timer_alive() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling interval, bounded by the deadline
        print(json.dumps({"enabled": gc.isenabled(), "timer": timer_alive()}))
        """,
        timeout=60,
    )
    assert out == {"enabled": True, "timer": False}
