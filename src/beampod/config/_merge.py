"""``instrument_defaults``: one block of settings merged under every instrument entry.

The merge runs on the raw mapping read from the file, before validation, so each
merged entry is validated exactly like one written out in full:

- a mapping merges key by key with the default mapping (recursively);
- a scalar or a list replaces the default (an instrument's ``iocs`` list replaces the
  default list whole; ``null`` replaces a default too);
- an empty entry (``bl02:`` or ``bl02: {}``) is the defaults alone;
- ``{instrument}`` in an IOC ``prefix`` becomes the instrument's name after the merge
  (also in an entry's own IOCs, with or without defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INSTRUMENT_PLACEHOLDER = "{instrument}"


def merge(default: Any, override: Any) -> Any:
    """``override`` on top of ``default``: mappings merge, everything else replaces."""
    if isinstance(default, Mapping) and isinstance(override, Mapping):
        out = dict(default)
        for key, value in override.items():
            out[key] = merge(default[key], value) if key in default else value
        return out
    return override


def apply_instrument_defaults(data: object) -> object:
    """Return ``data`` with ``instrument_defaults`` merged under every instrument entry.

    Anything that is not the expected shape is returned unchanged, for validation to
    report.
    """
    if not isinstance(data, Mapping):
        return data
    instruments = data.get("instruments")
    defaults = data.get("instrument_defaults")
    if not isinstance(instruments, Mapping):
        return data
    if defaults is not None and not isinstance(defaults, Mapping):
        return data
    merged: dict[Any, Any] = {}
    for name, entry in instruments.items():
        if defaults is not None:
            entry = merge(defaults, {} if entry is None else entry)
        merged[name] = _expand_prefixes(entry, str(name))
    return {**data, "instruments": merged}


def _expand_prefixes(entry: Any, name: str) -> Any:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("iocs"), list):
        return entry
    iocs = [
        {**ioc, "prefix": ioc["prefix"].replace(INSTRUMENT_PLACEHOLDER, name)}
        if isinstance(ioc, Mapping) and isinstance(ioc.get("prefix"), str)
        else ioc
        for ioc in entry["iocs"]
    ]
    return {**entry, "iocs": iocs}
