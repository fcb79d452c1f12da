"""Wire format: msgpack of ``(name, doc)`` with numpy support.

This is exactly what bluesky-kafka's ``Publisher`` writes (``msgpack.dumps(..., default=
msgpack_numpy.encode)``), so an existing bluesky-kafka consumer can read a beampod subject.
Pure functions, no I/O: tested without sockets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgpack

from beampod.errors import BeampodError


def _numpy_hooks() -> ModuleType:
    """msgpack-numpy, imported by the first message that needs it: it imports numpy
    (~0.1 CPU-s), which a process that only forwards documents or decodes plain ones
    (the web console's live view) need not load at its start."""
    import msgpack_numpy

    return msgpack_numpy


class DecodeError(BeampodError):
    """A message is not a msgpack ``(name, doc)`` pair."""


DOCUMENT_NAMES = frozenset(
    {
        "start",
        "descriptor",
        "event",
        "event_page",
        "stop",
        "resource",
        "datum",
        "datum_page",
        "stream_resource",
        "stream_datum",
    }
)


def encode(name: str, doc: dict[str, Any]) -> bytes:
    return msgpack.packb((name, doc), default=_numpy_hooks().encode, use_bin_type=True)


Encoder = Callable[[str, dict[str, Any]], bytes]


def make_encoder() -> Encoder:
    """``encode`` with one ``msgpack.Packer`` kept: ``packb`` builds a packer per call
    (~1.5 µs of the ~3 µs an event document takes). Same bytes. Not thread-safe: one
    per caller that serialises its calls (the publisher encodes under its lock)."""
    pack = msgpack.Packer(default=_numpy_hooks().encode, use_bin_type=True).pack

    def encode_kept(name: str, doc: dict[str, Any]) -> bytes:
        return pack((name, doc))

    return encode_kept


#: msgpack-numpy's decode hook acts only on a map with the bytes key ``b"nd"`` (an array
#: or a numpy scalar) or ``b"complex"``; packed, each is bin 8 (0xc4), its length, its name.
_NUMPY_KEY = re.compile(rb"\xc4(?:\x02nd|\x07complex)").search  # one pass over the bytes


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    # The hook is a Python call for every map of the message (an event has four): a
    # third of the writer's CPU in a catch-up. Without those keys in the bytes it would
    # return every map unchanged, so the message is decoded without it: same result.
    numpy_maps = type(data) is not bytes or _NUMPY_KEY(data) is not None
    try:
        if numpy_maps:
            obj = msgpack.unpackb(
                data, object_hook=_numpy_hooks().decode, raw=False, strict_map_key=False
            )
        else:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    # msgpack raises ValueError subclasses (ExtraData, FormatError, StackError,
    # UnicodeDecodeError) or TypeError (unhashable map key); msgpack-numpy's hook raises
    # KeyError/ValueError on a malformed array map.
    except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not ((type(obj) is list or isinstance(obj, list | tuple)) and len(obj) == 2):
        raise DecodeError(f"expected a (name, doc) pair, got {type(obj).__name__}")
    name, doc = obj
    if name not in DOCUMENT_NAMES:
        raise DecodeError(f"unknown document name {name!r}")
    if type(doc) is not dict and not isinstance(doc, dict):
        raise DecodeError(f"document body of {name!r} is {type(doc).__name__}, not a mapping")
    return name, doc


def run_uid_of(name: str, doc: dict[str, Any], descriptor_runs: dict[str, str]) -> str | None:
    """The run a document belongs to. Events name their descriptor, so callers keep a
    descriptor uid -> run uid map (``descriptor_runs``), which this updates."""
    if name == "start":
        return doc.get("uid")
    if name in ("stop", "descriptor", "resource", "stream_resource"):
        run = doc.get("run_start")
        if name == "descriptor" and run is not None and "uid" in doc:
            descriptor_runs[doc["uid"]] = run
        return run
    if name in ("event", "event_page"):
        return descriptor_runs.get(doc.get("descriptor", ""))
    return None


def message_id(name: str, doc: dict[str, Any], run_uid: str | None) -> str:
    """An id stable across retries, used for bus- and writer-side de-duplication.

    start/descriptor/stop/resource: their own uid. event: descriptor + seq_num (event
    uids are fine too, but descriptor+seq_num also catches a re-emitted event with a new
    uid). event_page: descriptor + first..last seq_num. datum: datum_id. datum_page and
    stream_datum: their first datum id / uid.
    """
    run = run_uid or "-"
    if name == "event":
        key = f"{doc['descriptor']}:{doc['seq_num']}"
    elif name == "event_page":
        seq = doc["seq_num"]
        key = f"{doc['descriptor']}:{seq[0]}-{seq[-1]}"
    elif name == "datum":
        key = doc["datum_id"]
    elif name == "datum_page":
        key = f"{doc['datum_id'][0]}-{doc['datum_id'][-1]}"
    else:
        key = doc["uid"]
    return f"{run}:{name}:{key}"


def opens_a_stream(block: bytes) -> bool:
    """Whether the message whose raw headers (or ``Nats-Msg-Id``) are ``block`` is a
    run's start or a stream's descriptor, by its :func:`message_id`, without decoding
    the message."""
    return b":start:" in block or b":descriptor:" in block
