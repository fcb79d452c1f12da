"""The writer service: documents from the bus into the instrument's Tiled container."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
    from beampod.writer._loop import DURABLE, Writer, WriterStats

# Lazy, so ``python -m beampod.writer`` can import tiled's client at low priority first
# (beampod._preload) instead of while its package is imported.
__getattr__ = lazy_exports(
    __name__,
    {
        "DURABLE": ("beampod.writer._loop", "DURABLE"),
        "Writer": ("beampod.writer._loop", "Writer"),
        "WriterStats": ("beampod.writer._loop", "WriterStats"),
    },
)

__all__ = ["DURABLE", "Writer", "WriterStats"]
