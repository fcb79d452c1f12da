"""The live window: grows while batches are stored well within the latency budget,
halves when one is not, and stays between the configured wait and its ceiling."""

from __future__ import annotations

from beampod.writer._window import LiveWindow, oldest_event_time


def test_window_grows_within_budget_and_halves_past_it() -> None:
    w = LiveWindow(0.05, budget_s=0.15)
    for _ in range(50):  # each batch stored 20 ms after its oldest event
        w.stored(100.0, 100.02)
    assert w.wait_s == w.ceiling_s == 0.15
    w.stored(100.0, 100.5)  # one batch late: fewer events wait next time
    assert w.wait_s == 0.075
    for _ in range(10):
        w.stored(100.0, 101.0)
    assert w.wait_s == 0.05  # never below the configured wait
    w.stored(None, 200.0)  # a batch without events says nothing about latency
    assert w.wait_s == 0.05


def test_a_configured_wait_above_the_ceiling_is_kept() -> None:
    w = LiveWindow(0.5)
    w.stored(100.0, 100.01)
    assert w.wait_s == 0.5


def test_oldest_event_time_reads_events_and_pages() -> None:
    docs = [
        ("start", {"time": 1.0}),
        ("event", {"time": 7.0}),
        ("event_page", {"time": [5.0, 6.0]}),
        ("event", {"time": "bad"}),
    ]
    assert oldest_event_time(docs) == 5.0
    assert oldest_event_time([("stop", {"time": 1.0})]) is None
