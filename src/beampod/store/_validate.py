"""Document validation for the writer: is this document permanently bad, and why?

event-model's jsonschema validators cost ~150 us per event, more than every other
per-event step together, which would cap catch-up well below 10,000 events/s. Events
therefore take a structural check that mirrors the event schema exactly
(required keys, types, no unknown keys); only when that check fails does the full
validator run, to produce the readable reason (and to accept anything the fast
check was stricter about, e.g. numpy scalar types).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import jsonschema
from event_model import DocumentNames, schema_validators

EVENT_KEYS = frozenset({"uid", "time", "seq_num", "descriptor", "data", "timestamps", "filled"})
EVENT_REQUIRED = frozenset({"uid", "time", "seq_num", "descriptor", "data", "timestamps"})


def fast_event_ok(doc: Mapping[str, Any]) -> bool:
    keys = doc.keys()
    if not (EVENT_REQUIRED <= keys <= EVENT_KEYS):
        return False
    seq, time = doc["seq_num"], doc["time"]
    filled = doc.get("filled", {})
    # Exact types first: decoded messages hold plain int/float, and the ABC checks
    # (numbers.Integral/Real) cost more than the rest of this function.
    return (
        type(doc["uid"]) is str
        and type(doc["descriptor"]) is str
        and (type(seq) is int or (isinstance(seq, Integral) and not isinstance(seq, bool)))
        and (
            type(time) is float
            or type(time) is int
            or (isinstance(time, Real) and not isinstance(time, bool))
        )
        and type(doc["data"]) is dict
        and type(doc["timestamps"]) is dict
        and type(filled) is dict
        and (not filled or all(isinstance(v, bool | str) for v in filled.values()))
    )


def fast_page_ok(doc: Mapping[str, Any]) -> bool:
    """The same structural check for an event_page, with decoded columns (lists).
    Validating a page of 500 events with the schema cost the writer ~30 us per event,
    a third of its CPU per event at a facility's bursts (docs/benchmarks.md)."""
    keys = doc.keys()
    if not (EVENT_REQUIRED <= keys <= EVENT_KEYS):
        return False
    uid, time, seq = doc["uid"], doc["time"], doc["seq_num"]
    data, stamps, filled = doc["data"], doc["timestamps"], doc.get("filled", {})
    if not (
        type(doc["descriptor"]) is str
        and type(uid) is list
        and type(time) is list
        and type(seq) is list
        and type(data) is dict
        and type(stamps) is dict
        and type(filled) is dict
    ):
        return False
    return (
        all(type(u) is str for u in uid)
        and all(type(n) is int for n in seq)
        and all(type(t) is float or type(t) is int for t in time)
        and all(type(column) is list for column in data.values())
        and all(type(column) is list for column in stamps.values())
        and all(
            type(column) is list and all(isinstance(v, bool | str) for v in column)
            for column in filled.values()
        )
    )


def schema_problem(name: str, doc: Mapping[str, Any]) -> str | None:
    """None if ``doc`` is a valid ``name`` document, else a one-line reason."""
    if name == "event" and fast_event_ok(doc):
        return None
    if name == "event_page" and fast_page_ok(doc):
        return None
    try:
        validator = schema_validators[DocumentNames[name]]
    except KeyError:
        return f"unknown document name {name!r}"
    try:
        validator.validate(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"{name} fails event-model schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def event_keys_problem(doc: Mapping[str, Any], data_keys: frozenset[str]) -> str | None:
    """Event data must name exactly the descriptor's data keys (a missing or extra
    column would otherwise fail the whole table append, taking good events with it)."""
    data, stamps = doc["data"].keys(), doc["timestamps"].keys()
    if data == data_keys and stamps == data_keys:
        return None
    missing = sorted(data_keys - data)
    extra = sorted(data - data_keys)
    parts = []
    if missing:
        parts.append(f"missing data keys {missing}")
    if extra:
        parts.append(f"data keys not in the descriptor {extra}")
    if stamps != data:
        parts.append("timestamps keys differ from data keys")
    return "event does not match its descriptor: " + "; ".join(parts)
