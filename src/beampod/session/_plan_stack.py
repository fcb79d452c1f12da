"""bluesky's ``Plan`` without formatting the call stack of every plan call.

bluesky wraps each plan function (``@plan``: ``count``, ``trigger_and_read``,
``one_shot``, ...) in ``bluesky.utils.Plan``, which keeps the caller's stack to warn
"plan was never iterated, did you mean to use ``yield from``?" if it is dropped
unused. It keeps it as ``traceback.format_stack()``: every frame looked up in
linecache (an ``os.stat`` of its file) and formatted, on every call, though the text
is needed only for that rare warning. Inside a RunEngine the stack is the event loop's
and every nested plan's frames: py-spy on ``beampod shell -c "RE(count([pinhole],
2000))"`` found a third of the session's CPU in ``format_stack`` under
``Plan.__init__``.

:func:`cheap_plan_stacks` keeps the same stack as ``(file, line, function)`` per frame,
read from the frames at once (a frame's line moves on after the call), and formats it
only when the warning is given: the same frames and message, without the source
columns' carets of Python 3.11's tracebacks. Applied once per process, to the class
(every RunEngine of the process gains).

Pinned: ``Plan.__init__`` and ``Plan.__del__`` (which joins the kept stack into the
warning) by the hash of their source (:data:`PINNED_PLAN_SHA256`); with any other
bluesky the class is left as it is (logged) and ``tests/session/test_plan_stack.py``
fails, so it is read again.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from beampod._sourcepin import source_sha256

log = logging.getLogger("beampod.session")

# sha256 of ``inspect.getsource`` of each, in the locked bluesky.
PINNED_PLAN_SHA256 = {
    "__init__": "edbcf2374c628c94bbed526f368e1a79798c215bb8d68e9cc33c7277741830aa",
    "__del__": "5ebed5b752c931528da90af3f592e6aae9144f6dd858f1e0514fbe2d723648cf",
}
_MARK = "_beampod_cheap_stack"


class CallerStack:
    """The stack above a plan's caller, outermost first, and the warning's last line;
    iterated (``"".join``, as ``Plan.__del__`` does) it gives ``format_stack``'s lines
    and then that line."""

    __slots__ = ("_frames", "_message")

    def __init__(self, frames: list[tuple[str, int, str]], message: str) -> None:
        self._frames, self._message = frames, message

    def __iter__(self) -> Iterator[str]:
        frames = [traceback.FrameSummary(*frame) for frame in self._frames]
        yield from traceback.StackSummary.from_list(frames).format()
        yield self._message


def caller_frames(depth: int) -> list[tuple[str, int, str]]:
    """``(file, line, function)`` of each frame from the one ``depth`` above this
    call's caller out to the outermost, outermost first."""
    frames = []
    frame: FrameType | None = sys._getframe(depth + 1)
    while frame is not None:
        code = frame.f_code
        frames.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    frames.reverse()
    return frames


def upstream_plan_hashes() -> dict[str, str]:
    """The hashes of bluesky's own methods, also once replaced here (``__wrapped__``)."""
    from bluesky.utils import Plan

    return {name: source_sha256(getattr(Plan, name)) for name in PINNED_PLAN_SHA256}


def cheap_plan_stacks() -> bool:
    """Give bluesky's ``Plan`` the cheap stack (this process, once). Returns whether it
    is in place."""
    from bluesky.utils import Plan

    if getattr(Plan.__init__, _MARK, False):
        return True
    if upstream_plan_hashes() != PINNED_PLAN_SHA256:
        log.warning("bluesky's Plan changed; its stack is kept as bluesky keeps it")
        return False

    def __init__(self: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._iter = f(*args, **kwargs)
        # bluesky's format_stack()[:-2]: up to the caller of the decorator's wrapper.
        self._stack = CallerStack(
            caller_frames(2),
            f"RuntimeWarning: plan `{f.__name__}` was never iterated, did you mean to "
            "use `yield from`?",
        )

    setattr(__init__, _MARK, True)
    __init__.__wrapped__ = Plan.__init__  # type: ignore[attr-defined]  # bluesky's, for its pin
    Plan.__init__ = __init__  # type: ignore[method-assign]
    return True
