"""The writer service: documents from the bus into the instrument's Tiled container."""

from typing import TYPE_CHECKING

from beampod._lazy import lazy_exports

if TYPE_CHECKING:
    from beampod.writer._loop import DURABLE, Writer
    from beampod.writer._store import WriterStats

# Lazy (PEP 562), so ``python -m beampod.writer`` can mark unused optional libraries
# absent and import tiled's client at low priority (beampod._preload) before the
# package's imports run.
__getattr__ = lazy_exports(
    __name__,
    {
        "DURABLE": ("beampod.writer._loop", "DURABLE"),
        "Writer": ("beampod.writer._loop", "Writer"),
        "WriterStats": ("beampod.writer._store", "WriterStats"),
    },
)

__all__ = ["DURABLE", "Writer", "WriterStats"]
