"""The live window: as long as the latency targets allow, measured on every stored batch
(the typical event for the p50, the oldest for the p99), between the configured wait
and its ceiling. The simulated pod below is the in-memory seam: a RunEngine emitting at
a steady rate, the publisher's interval, the writer's pull window and an append whose
cost is mostly per request, as on a real pod."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from beampod.writer._window import (
    LAG_SAMPLE,
    OLDEST_S,
    STORE_FACTOR,
    TYPICAL_S,
    BatchLag,
    LiveWindow,
    batch_lag,
    sample,
)


def test_window_grows_within_the_targets_and_shrinks_past_them() -> None:
    w = LiveWindow(0.05)
    for _ in range(50):  # every batch well within both targets
        w.stored(BatchLag(typical_s=0.03, oldest_s=0.06))
    assert w.wait_s == w.ceiling_s
    top = w.wait_s
    w.stored(BatchLag(typical_s=TYPICAL_S * 1.5, oldest_s=0.2))  # typical event late
    assert w.wait_s < top
    w.wait_s = top
    w.stored(BatchLag(typical_s=0.03, oldest_s=OLDEST_S * 1.2))  # the oldest one late
    assert w.wait_s < top
    for _ in range(30):
        w.stored(BatchLag(typical_s=1.0, oldest_s=1.0))
    assert w.wait_s == 0.05  # never below the configured wait
    w.stored(None)  # a batch without events says nothing about latency
    assert w.wait_s == 0.05
    w.stored(BatchLag(typical_s=TYPICAL_S * 0.95, oldest_s=0.2))  # inside the band: kept
    assert w.wait_s == 0.05


def test_a_slower_store_raises_the_shortest_window_and_a_faster_one_lowers_it() -> None:
    """A Tiled that answers later (busy with other writers) gets fewer appends from a
    writer that shares it (``paced``): the window does not shrink below
    ``STORE_FACTOR`` times the recent store, even when the latency is past its target;
    the configured wait and the ceiling still bound it."""
    alone = LiveWindow(0.05)  # a pod of one: the store time does not count
    for _ in range(10):
        alone.stored(BatchLag(typical_s=TYPICAL_S * 3, oldest_s=OLDEST_S * 2), store_s=0.1)
    assert alone.lowest_s == alone.wait_s == 0.05
    w = LiveWindow(0.05, paced=True)
    assert w.lowest_s == 0.05  # nothing stored yet
    late = BatchLag(typical_s=TYPICAL_S * 3, oldest_s=OLDEST_S * 2)
    for _ in range(30):
        w.stored(late, store_s=0.1)
    assert w.store_s is not None and abs(w.store_s - 0.1) < 1e-9
    assert w.lowest_s == w.wait_s == STORE_FACTOR * 0.1  # late, yet not shorter
    for _ in range(30):
        w.stored(late, store_s=1.0)  # slower still: held at the ceiling
    assert w.lowest_s == w.wait_s == w.ceiling_s
    for _ in range(60):
        w.stored(late, store_s=0.01)  # Tiled fast again: back to the configured wait
    assert w.lowest_s == w.wait_s == 0.05
    w.stored(None, store_s=0.2)  # a batch without events still says how long it took
    assert w.store_s > 0.01


def test_a_configured_wait_above_the_ceiling_is_kept() -> None:
    w = LiveWindow(0.5)
    w.stored(BatchLag(typical_s=0.01, oldest_s=0.01))
    assert w.wait_s == 0.5


def test_batch_lag_reads_events_and_pages() -> None:
    docs = [
        ("start", {"time": 1.0}),
        ("event", {"time": 7.0}),
        ("event_page", {"time": [5.0, 6.0]}),
        ("event", {"time": "bad"}),
    ]
    lag = batch_lag(docs, 10.0)
    assert lag == BatchLag(typical_s=4.0, oldest_s=5.0)
    assert batch_lag([("stop", {"time": 1.0})], 10.0) is None


@dataclass
class SimulatedPod:
    """Events emitted every ``1 / rate`` s, handed to the bus every ``publish_s``; the
    writer pulls for ``window.wait_s`` (the next pull starts when the last returns),
    stores batches one after the other, each append costing ``append_s`` plus
    ``per_row_s`` a row, and tells the window each batch's lag."""

    window: LiveWindow
    rate: float = 1000.0
    publish_s: float = 0.05
    append_s: float = 0.035
    per_row_s: float = 5e-6
    appends: list[tuple[float, int]] = field(default_factory=list)  # (stored at, rows)
    lags: list[float] = field(default_factory=list)  # every event's emitted -> stored
    _sent: int = 0
    _pull_at: float = 0.0
    _store_free: float = 0.0

    def in_stream(self, t: float) -> int:
        """Events the publisher had handed to the bus by ``t`` (its last interval)."""
        return int(t // self.publish_s * self.publish_s * self.rate)

    def run_for(self, seconds: float) -> None:
        # The writer's loop: a pull returns at once with what is waiting, else after
        # the window with what came meanwhile; its batch is stored once the one before
        # is, and the next pull starts as that store starts.
        end = self._pull_at + seconds
        while self._pull_at < end:
            t = self._pull_at
            returns = t if self.in_stream(t) > self._sent else t + self.window.wait_s
            emitted = [i / self.rate for i in range(self._sent, self.in_stream(returns))]
            self._pull_at = returns
            if not emitted:
                continue
            self._sent += len(emitted)
            start = max(returns, self._store_free)
            self._store_free = stored = start + self.append_s + self.per_row_s * len(emitted)
            self._pull_at = start
            self.appends.append((stored, len(emitted)))
            self.lags += [stored - t for t in emitted]
            self.window.stored(BatchLag(stored - statistics.fmean(emitted), stored - emitted[0]))

    def appends_per_s(self, since: float) -> float:
        times = [t for t, _ in self.appends if t >= since]
        return len(times) / (times[-1] - times[0])


def test_fewer_larger_appends_within_the_latency_target() -> None:
    fixed = SimulatedPod(LiveWindow(0.05))
    fixed.window.typical_s = fixed.window.oldest_s = 0.0  # never grows: the old floor
    adaptive = SimulatedPod(LiveWindow(0.05))
    for pod in (fixed, adaptive):
        pod.run_for(20.0)
    # Settled (the last 10 s): markedly fewer appends, each with more rows ...
    assert adaptive.appends_per_s(10.0) < 0.7 * fixed.appends_per_s(10.0)
    assert adaptive.window.wait_s > 0.05
    # ... while the typical event is stored within the target and the worst well
    # within the p99's.
    late = adaptive.lags[len(adaptive.lags) // 2 :]
    assert statistics.median(late) <= TYPICAL_S
    assert max(late) <= OLDEST_S


def _mean_window(pod: SimulatedPod, seconds: float) -> float:
    """The window's mean over ``seconds`` of running (it moves batch by batch)."""
    waits = []
    for _ in range(int(seconds * 4)):
        pod.run_for(0.25)
        waits.append(pod.window.wait_s)
    return statistics.fmean(waits[len(waits) // 2 :])


def test_a_slower_append_shrinks_the_window_and_a_faster_one_grows_it() -> None:
    pod = SimulatedPod(LiveWindow(0.05))
    grown = _mean_window(pod, 10.0)
    assert grown > 0.07
    pod.append_s = 0.09  # Tiled got slower (a busy machine): no room for waiting
    assert _mean_window(pod, 10.0) == 0.05
    pod.append_s = 0.035  # and faster again
    assert _mean_window(pod, 10.0) > 0.07


def test_a_ready_writer_collects_young_garbage_less_often() -> None:
    """Once ready, the writer process freezes what it loaded and raises the young
    generation's threshold (a catch-up batch's objects are not walked over and over);
    the other generations keep theirs."""
    import gc

    from beampod.writer.__main__ import YOUNG_GC_THRESHOLD, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, before[1], before[2])
        assert before[0] < YOUNG_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_large_batch_lag_is_read_from_a_sample_with_its_first_event() -> None:
    """A catch-up batch's lag comes from about ``LAG_SAMPLE`` of its events, evenly
    spread and always the first: close to the whole batch's, at a fraction of the cost."""
    docs = [("event", {"time": 100.0 + i * 0.001}) for i in range(5000)]
    picked = sample(docs)
    assert picked[0] is docs[0]
    assert LAG_SAMPLE // 2 < len(picked) <= LAG_SAMPLE
    whole, sampled = batch_lag(docs, 110.0), batch_lag(picked, 110.0)
    assert whole is not None and sampled is not None
    assert sampled.oldest_s == whole.oldest_s == 10.0
    assert abs(sampled.typical_s - whole.typical_s) < 0.01  # of a 5 s spread
    short = docs[:10]
    assert sample(short) is short
