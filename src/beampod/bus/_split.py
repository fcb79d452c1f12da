"""Turn one document into bus messages that fit under the server's max_payload.

Only ``event_page`` can be split (into smaller event_pages). The split is deterministic
(halving by event count) and each piece's message id names its own seq_num range, so
re-splitting the same page with the same limit yields the same ids and the bus drops
re-sent pieces as duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beampod.bus._codec import Encoder, encode, message_id
from beampod.errors import BusError


class OversizeDocumentError(BusError):
    """A document is larger than max_payload and cannot be split."""


def _slice(value: Any, start: int, stop: int) -> Any:
    # Columns are lists or numpy arrays with the events along the first axis.
    return value[start:stop]


def slice_event_page(page: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    out = dict(page)
    for key in ("uid", "time", "seq_num"):
        if key in page:
            out[key] = _slice(page[key], start, stop)
    for key in ("data", "timestamps", "filled"):
        if key in page and isinstance(page[key], dict):
            out[key] = {k: _slice(v, start, stop) for k, v in page[key].items()}
    return out


def _count(page: dict[str, Any]) -> int:
    return len(page["seq_num"])


def split_event_page(
    page: dict[str, Any], limit: int, encoder: Encoder = encode
) -> list[tuple[dict[str, Any], bytes]]:
    """Pieces of ``page`` whose encoding fits in ``limit`` bytes, in event order."""
    data = encoder("event_page", page)
    if len(data) <= limit:
        return [(page, data)]
    n = _count(page)
    if n <= 1:
        raise OversizeDocumentError(
            f"one event of descriptor {page.get('descriptor')} encodes to {len(data)} bytes, "
            f"more than the bus max_payload allows ({limit}); raise bus.max_payload_mb or "
            "write large arrays externally (resource/datum)"
        )
    mid = n // 2
    return split_event_page(slice_event_page(page, 0, mid), limit, encoder) + split_event_page(
        slice_event_page(page, mid, n), limit, encoder
    )


def to_messages(
    name: str, doc: dict[str, Any], run_uid: str | None, limit: int, encoder: Encoder = encode
) -> Sequence[tuple[str, bytes]]:
    """(message id, wire bytes) for one document; event_pages split to fit ``limit``.
    ``encoder``: ``encode``, or one from ``make_encoder`` by a caller that serialises
    its calls."""
    if name == "event_page":
        return [
            (message_id(name, piece, run_uid), data)
            for piece, data in split_event_page(doc, limit, encoder)
        ]
    data = encoder(name, doc)
    if len(data) > limit:
        raise OversizeDocumentError(
            f"{name} document encodes to {len(data)} bytes, more than the bus max_payload "
            f"allows ({limit})"
        )
    return [(message_id(name, doc, run_uid), data)]
