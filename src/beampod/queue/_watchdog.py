"""start-re-manager's watchdog, judging the RE Manager's heartbeats by the time it was
awake to receive them.

The watchdog (the queue service's own process) forks the RE Manager and restarts it
when no heartbeat came for a while (the manager's event loop sends one every 0.5 s).
Upstream (bluesky-queueserver 0.0.2x, ``WatchdogProcess.run``) compares wall-clock time
(``time.time()``) with a fixed 5 s, and restarts the manager when 5 to 15 s passed since
the last heartbeat. So it restarted a healthy, idle manager whenever every process
stopped for 5-15 s and the watchdog ran first when they went on: a paused or
snapshotted VM, a stalled host, a step of the wall clock. The test suite's machine (a
VM) is snapshotted now and then; both shared pods' watchdogs restarted their managers
within 0.1 s of one such snapshot, and each left the killed manager as a zombie.

Here, as in upstream otherwise:

- time is the monotonic clock, less what the watchdog itself did not see
  (:class:`AwakeClock`): between two of its looks (1 s apart) at most
  :data:`MAX_LOOK_GAP_S` counts; a longer gap means that the watchdog was not running,
  the manager most likely neither, and the rest is not counted against the manager.
  A manager that stops sending heartbeats while the watchdog runs is restarted after
  ``queue.heartbeat_timeout_s`` of the pod's config (default 10 s, upstream 5 s);
- a restarted manager is killed and reaped before the new one starts (upstream left
  the killed process as a zombie child of the watchdog).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: The longest gap between two looks of the watchdog (it looks every
#: ``_lean.IDLE_WAIT_S``, 1 s) that counts fully against a silent manager.
MAX_LOOK_GAP_S = 2.0

#: How long the watchdog waits for a killed manager to be gone before it starts the next.
REAP_TIMEOUT_S = 10.0


class AwakeClock:
    """Monotonic seconds, less the part of each gap between two :meth:`look` calls that
    exceeds ``max_gap``: the time the looking thread was running to see. Thread-safe;
    :meth:`now` may be read from any thread."""

    def __init__(self, max_gap: float, source: Callable[[], float] = time.monotonic) -> None:
        self._max_gap = max_gap
        self._source = source
        self._lock = threading.Lock()
        self._unseen = 0.0
        self._last_look = source()

    def now(self) -> float:
        with self._lock:
            return self._source() - self._unseen

    def look(self) -> float:
        """Called by the looking thread each time round; returns the seconds not counted
        now (0.0 when it ran on time)."""
        with self._lock:
            at = self._source()
            unseen = max(0.0, at - self._last_look - self._max_gap)
            self._unseen += unseen
            self._last_look = at
            return unseen


def steady_watchdog(watchdog_class: type[Any], heartbeat_timeout_s: float) -> type[Any]:
    """start-re-manager's ``WatchdogProcess`` (or a subclass of it) with the clock, the
    timeout and the reaping this module describes. Its ``run`` replaces upstream's loop;
    the handlers the manager calls over the pipe are upstream's."""

    class SteadyWatchdog(watchdog_class):
        def __init__(self, **kwargs: Any) -> None:
            self._clock = AwakeClock(MAX_LOOK_GAP_S)
            super().__init__(**kwargs)
            self._heartbeat_timeout = heartbeat_timeout_s

        def _init_watchdog_state(self) -> None:  # a heartbeat, a (re)start, "enable"
            with self._watchdog_state_lock:
                self._watchdog_state = self._clock.now()

        def _silent_for(self) -> float:
            with self._watchdog_state_lock:
                return float(self._clock.now() - self._watchdog_state)

        def _restart_manager(self, silent_s: float) -> None:
            logger.error(
                "no heartbeat from the RE Manager for %.1f s (queue.heartbeat_timeout_s: %g)",
                silent_s,
                self._heartbeat_timeout,
            )
            # upstream's line, which operators and tests look for
            logging.getLogger("bluesky_queueserver.manager.start_manager").error(
                "Timeout detected by Watchdog. RE Manager malfunctioned and must be restarted"
            )
            self._re_manager.kill()
            self._re_manager.join(REAP_TIMEOUT_S)  # reaped: no zombie left behind
            self._start_re_manager()

        def run(self) -> None:
            from bluesky_queueserver.manager.logging_setup import setup_loggers

            logging.basicConfig(level=max(logging.WARNING, self._log_level))
            setup_loggers(log_level=self._log_level)
            comm = self._comm_to_manager
            # Requests
            comm.add_method(self._watchdog_enable_handler, "watchdog_enable")
            comm.add_method(self._start_re_worker_handler, "start_re_worker")
            comm.add_method(self._join_re_worker_handler, "join_re_worker")
            comm.add_method(self._kill_re_worker_handler, "kill_re_worker")
            comm.add_method(self._is_worker_alive_handler, "is_worker_alive")
            # Notifications
            comm.add_method(self._manager_stopping_handler, "manager_stopping")
            comm.add_method(self._register_heartbeat_handler, "heartbeat")
            comm.start()
            self._start_re_manager()
            while True:
                self._re_manager.join(0.1)  # _lean.quiet_join: 1 s; at once if it exits
                if self._manager_is_stopping and not self._re_manager.is_alive():
                    break
                unseen = self._clock.look()
                if unseen > 0.0:
                    logger.warning(
                        "the watchdog did not run for %.1f s (the machine or this process "
                        "was paused or starved): that time is not counted against the RE "
                        "Manager's heartbeat",
                        unseen + MAX_LOOK_GAP_S,
                    )
                if not self._watchdog_enabled or self._manager_is_stopping:
                    continue
                silent_s = self._silent_for()
                if silent_s >= self._heartbeat_timeout:
                    self._restart_manager(silent_s)
            comm.stop()
            logging.getLogger("bluesky_queueserver.manager.start_manager").info(
                "RE Watchdog is stopped"
            )

    SteadyWatchdog.__name__ = SteadyWatchdog.__qualname__ = watchdog_class.__name__
    return SteadyWatchdog
