"""One subscription's frames taken from nats-py's read buffer before its parser.

nats-py's protocol parser costs a regular expression or two, a dict of arguments and
an awaited call per message. A reader that knows its own frames (the writer's
``BatchPuller``: ``HMSG`` replies to its pull inbox, ADR 0029; the publisher's
``AckTracker``: ``MSG`` acks to its inbox, ADR 0030) takes the run of complete ones at
the head of the buffer itself, only between frames; anything else (another
subscription's message, PING, INFO, -ERR, a frame split across reads that nats-py
already began) is left to nats-py's parser, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``take(buf)`` -> (bytes of ``buf`` it consumed, whether a frame of its own follows
#: that is not complete yet: then nats-py's parser must not start on it).
TakeFrames = Callable[[bytearray], tuple[int, bool]]


def take_frames_first(nc: Any, head: bytes, take: TakeFrames) -> bool:
    """Put ``take`` in front of ``nc``'s parser for buffers that start with ``head``.
    False (nothing changed) for a nats-py without the parser state this relies on."""
    parser = getattr(nc, "_ps", None)
    if parser is None or not hasattr(parser, "buf") or not hasattr(parser, "state"):
        return False
    from nats.protocol.parser import AWAITING_CONTROL_LINE

    original = parser.parse

    async def parse(data: bytes = b"") -> None:
        buf = parser.buf
        if data:
            buf.extend(data)
        more = False
        if parser.state == AWAITING_CONTROL_LINE and buf.startswith(head):
            done, more = take(buf)
            if done:
                del buf[:done]
        if buf and not more:
            await original()

    parser.parse = parse
    return True
