"""``beampod up -d`` with a head start (``beampod._headstart``, ADR 35): before the
command line imports its parser and the configuration models, fork the supervisor with
the pod's first service spawned from its record, where one applies; then wait for the
pod as ``up -d`` always does.

The record applies only to a config that was validated and checked as it is now (its
key: the config and secrets files' bytes) and that ``up -d`` has nothing to warn about
(no unusable key, no instrument environments): the supervisor validates it again, and
the command line reports what the supervisor says."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import IO

from beampod._headstart import DetachedUp, EarlyStart, Forked, detached_up, up_with_head_start
from beampod._podhome import PodHome
from beampod.cli._lines import owner_only, pod_ready, progress, starting


def head_start_up(argv: Sequence[str]) -> tuple[DetachedUp, Forked] | None:
    """The ``up -d`` request and its forked supervisor if ``argv`` is ``up -d`` and the
    pod's record applies; None otherwise (the usual path then starts the pod, or says
    why not)."""
    request = detached_up(argv)
    if request is None:
        return None
    try:
        forked = up_with_head_start(PodHome.resolve(request.home), _supervise)
    except OSError:
        return None  # an unreadable home: the usual path says what is wrong with it
    return (request, forked) if forked is not None else None


def wait_for_pod(request: DetachedUp, forked: Forked) -> int:
    """``up -d``'s output and wait, for the supervisor the head start forked."""
    from beampod.services import start_detached

    home = PodHome.resolve(request.home)
    owner_only(home)
    starting(home)
    started = time.monotonic()
    state = start_detached(home, progress, timeout=request.timeout, launched=forked)
    pod_ready(len(state.services), time.monotonic() - started)
    return 0


def _supervise(home: PodHome, lock: IO[str] | None, early: EarlyStart | None) -> int:
    from beampod.services import supervise_detached

    return supervise_detached(home, lock, early)
