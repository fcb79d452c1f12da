"""Checks on a submitted queue item that the queue server does not make itself.

The RE Manager validates a plan's arguments against the plan's signature, but where a
parameter admits ``Any`` as well as a device (``scan``'s ``*args: Movable | Any``) a
misspelt motor name passes as a string and the plan only fails when it runs. Here, a
string bound to a parameter whose annotation admits a device must name a device of
the instrument. Unknown plans, unknown keywords and wrong argument counts are caught
here too, with messages that name the offender.

Inputs are the manager's ``plans_allowed`` / ``devices_allowed`` descriptions, so this
is pure and needs no running server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from beampod.queue._values import check_values

_DEVICE_TYPE_RE = re.compile(r"__(READABLE|MOVABLE|FLYABLE|DEVICE)__")
_POSITIONAL = {"POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"}
_MAX_LISTED = 12


def device_names(devices_allowed: Mapping[str, Any]) -> set[str]:
    """Top-level device names and dotted sub-device names (``motor_ph.user_readback``)."""
    names: set[str] = set()

    def walk(prefix: str, desc: Mapping[str, Any]) -> None:
        names.add(prefix)
        for comp, sub in (desc.get("components") or {}).items():
            if isinstance(sub, Mapping):
                walk(f"{prefix}.{comp}", sub)

    for name, desc in devices_allowed.items():
        walk(name, desc if isinstance(desc, Mapping) else {})
    return names


def check_item(
    item: object, plans_allowed: Mapping[str, Any], devices_allowed: Mapping[str, Any]
) -> list[str]:
    """Every problem with ``item`` (a queue item dict), one readable line each."""
    if not isinstance(item, Mapping):
        return [f"the item must be a JSON object, got {_json_type(item)}"]
    value_problems = check_values(item)
    if value_problems:
        return value_problems
    if item.get("item_type", "plan") != "plan":
        return []  # instructions and functions are checked by the manager
    name = item.get("name")
    if not isinstance(name, str) or not name:
        return ['the item has no plan name (expected "name": "<plan>")']
    args = item.get("args", [])
    kwargs = item.get("kwargs", {})
    problems: list[str] = []
    if not isinstance(args, list):
        problems.append(f"'args' must be a JSON list, got {_json_type(args)}")
    if not isinstance(kwargs, Mapping):
        problems.append(f"'kwargs' must be a JSON object, got {_json_type(kwargs)}")
    if name not in plans_allowed:
        problems.append(f"unknown plan {name!r} (allowed plans: {_listing(plans_allowed)})")
    if problems:
        return problems
    params = plans_allowed[name].get("parameters", [])
    bound, binding_problems = _bind(name, params, list(args), dict(kwargs))
    problems += binding_problems
    known = device_names(devices_allowed)
    for param, values in bound:
        if not _admits_device(param):
            continue
        for value in values:
            for s in _strings(value):
                if s not in known:
                    problems.append(
                        f"unknown device {s!r} in argument {param['name']!r} of plan {name!r} "
                        f"(known devices: {_listing(devices_allowed)})"
                    )
    return problems


def _bind(
    plan: str, params: list[Mapping[str, Any]], args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[tuple[Mapping[str, Any], list[Any]]], list[str]]:
    """Map arguments to parameter descriptions as Python would; report what cannot bind."""
    bound: list[tuple[Mapping[str, Any], list[Any]]] = []
    problems: list[str] = []
    positional = [p for p in params if _kind(p) in _POSITIONAL]
    var_pos = next((p for p in params if _kind(p) == "VAR_POSITIONAL"), None)
    var_kw = next((p for p in params if _kind(p) == "VAR_KEYWORD"), None)
    by_name = {p["name"]: p for p in params if _kind(p) != "POSITIONAL_ONLY"}
    for param, value in zip(positional, args, strict=False):
        bound.append((param, [value]))
    extra = args[len(positional) :]
    if extra:
        if var_pos is None:
            problems.append(
                f"plan {plan!r} takes at most {len(positional)} positional "
                f"argument(s), got {len(args)}"
            )
        else:
            bound.append((var_pos, extra))
    given = {p["name"] for p in positional[: len(args)]}
    for key, value in kwargs.items():
        named = by_name.get(key)
        if named is not None and _kind(named) not in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if key in given:
                problems.append(f"plan {plan!r} got argument {key!r} twice")
            bound.append((named, [value]))
            given.add(key)
        elif var_kw is not None:
            bound.append((var_kw, [value]))
        else:
            names = [p["name"] for p in params if _kind(p) not in ("VAR_POSITIONAL", "VAR_KEYWORD")]
            problems.append(
                f"plan {plan!r} has no parameter {key!r} (parameters: {', '.join(names) or 'none'})"
            )
    for p in params:
        if (
            _kind(p) in (*_POSITIONAL, "KEYWORD_ONLY")
            and "default" not in p
            and p["name"] not in given
        ):
            problems.append(f"plan {plan!r} is missing required argument {p['name']!r}")
    return bound, problems


def _kind(param: Mapping[str, Any]) -> str:
    kind = param.get("kind", {})
    return str(kind.get("name", "")) if isinstance(kind, Mapping) else str(kind)


def _admits_device(param: Mapping[str, Any]) -> bool:
    annotation = param.get("annotation") or {}
    text = str(annotation.get("type", "")) if isinstance(annotation, Mapping) else ""
    if _DEVICE_TYPE_RE.search(text):
        return True
    # A custom annotation may list device names explicitly ({"devices": {...}}).
    return isinstance(annotation, Mapping) and bool(annotation.get("devices"))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:_MAX_LISTED])
    more = len(ordered) - _MAX_LISTED
    return (shown + (f", ... ({more} more)" if more > 0 else "")) or "none"


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


_PYDANTIC_ERR = re.compile(
    r"^(?P<field>[^\s].*)\n\s+(?P<msg>[^\n\[]+?)\s*\[type=[^,\]]+"
    r"(?:, input_value=(?P<value>.*?), input_type=[^\]]+)?\]",
    re.MULTILINE,
)


def summarize_refusal(msg: str) -> str:
    """The manager's multi-line refusal (pydantic dump + the item echoed back) as one
    line naming each offending argument; the full text stays in ``msg``."""
    if not msg:
        return "refused by the queue server"
    head = msg.split("\nPlan:", 1)[0]
    errors = [
        f"argument {m['field'].strip()!r}: {m['msg'].strip()}"
        + (f" (got {m['value']})" if m["value"] else "")
        for m in _PYDANTIC_ERR.finditer(head)
    ]
    first = head.splitlines()[0] if head else msg
    if errors:
        first = first.split(": 1 validation error", 1)[0].split(" validation error", 1)[0]
        first = re.sub(r":\s*\d+$", "", first)
        return f"{first}: {'; '.join(errors)}"
    return " ".join(line.strip() for line in head.splitlines() if line.strip())
