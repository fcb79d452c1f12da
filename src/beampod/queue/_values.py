"""Checks on the *values* of a queue item, the same on every channel.

JSON and the queue server's wire formats carry things a plan cannot use or that break
the RunEngine only when the plan runs: integers beyond 64 bits, NaN and infinities,
non-string dict keys (a Python client's ``md={1: 2}``), absurdly deep nesting, and
metadata that overrides what the RunEngine sets itself. Each problem is one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Nesting deeper than this (lists and dicts) is refused, in the raw body and in items.
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Start-document keys the RunEngine sets itself; a plan's ``md`` may not override them.
RESERVED_MD_KEYS = ("uid", "time")


def json_depth_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the raw JSON text nests lists/objects deeper than ``limit`` (checked
    before parsing, so a 10,000-deep body never reaches the recursive parser)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def check_values(item: Mapping[str, Any]) -> list[str]:
    """Problems with the values of a queue item's ``args``, ``kwargs`` and ``meta``."""
    problems: list[str] = []
    for n, value in enumerate(item.get("args") or []):
        _walk(value, f"argument {n + 1}", 1, problems)
    kwargs = item.get("kwargs") or {}
    if isinstance(kwargs, Mapping):
        for key, value in kwargs.items():
            if not isinstance(key, str):
                problems.append(f"keyword {key!r} is not a string")
                continue
            _walk(value, f"argument {key!r}", 1, problems)
        if "md" in kwargs:
            problems += check_metadata(kwargs["md"], "argument 'md'")
    meta = item.get("meta")
    if meta is not None:
        for m in meta if isinstance(meta, list | tuple) else [meta]:
            _walk(m, "'meta'", 1, problems)
    return problems


def check_metadata(md: object, where: str) -> list[str]:
    """Run metadata: a JSON object (string keys, JSON values) that does not set the
    keys the RunEngine owns; ``scan_id``, if given, a non-negative integer."""
    if md is None:
        return []
    if not isinstance(md, Mapping):
        return [f"{where} must be a dict of metadata, got {type(md).__name__}"]
    problems: list[str] = []
    for key in RESERVED_MD_KEYS:
        if key in md:
            problems.append(f"{where} may not set {key!r} (the RunEngine sets it)")
    if "scan_id" in md:
        sid = md["scan_id"]
        if isinstance(sid, bool) or not isinstance(sid, int) or sid < 0:
            problems.append(f"{where}: 'scan_id' must be a non-negative integer, got {sid!r}")
    problems += _not_json(md, where, 1)
    return problems


def _not_json(value: object, where: str, depth: int) -> list[str]:
    if value is None or isinstance(value, bool | int | float | str) or depth > MAX_DEPTH:
        return []  # (too deep is reported by _walk)
    if isinstance(value, list | tuple):
        return [p for v in value for p in _not_json(v, where, depth + 1)]
    if isinstance(value, Mapping):
        return [p for v in value.values() for p in _not_json(v, where, depth + 1)]
    return [f"{where}: {type(value).__name__} value {value!r:.40} is not JSON-serialisable"]


def _walk(value: object, where: str, depth: int, problems: list[str]) -> None:
    if depth > MAX_DEPTH:
        problems.append(f"{where} is nested deeper than {MAX_DEPTH} levels")
        return
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            shown = str(value) if value.bit_length() < 200 else f"a {value.bit_length()}-bit int"
            problems.append(f"{where}: integer {shown} does not fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(f"{where}: {value} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for v in value:
            _walk(v, where, depth + 1, problems)
            if len(problems) > 20:
                return
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(f"{where}: dict key {k!r} is not a string")
                continue
            _walk(v, where, depth + 1, problems)
            if len(problems) > 20:
                return
