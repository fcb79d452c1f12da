"""The writer service: documents from the bus into the instrument's Tiled container."""

from beampod.writer._loop import DURABLE, Writer, WriterStats

__all__ = ["DURABLE", "Writer", "WriterStats"]
