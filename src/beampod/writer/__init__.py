"""The writer service: documents from the bus into the instrument's Tiled container."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
    from beampod.writer._loop import DURABLE, Writer, WriterStats

# Lazy (PEP 562), so `python -m beampod.writer` can mark unused optional libraries
# absent before the writer's imports (tiled, bluesky-tiled-plugins) run.
__getattr__ = lazy_exports(
    __name__,
    {name: ("beampod.writer._loop", name) for name in ("DURABLE", "Writer", "WriterStats")},
)

__all__ = ["DURABLE", "Writer", "WriterStats"]
