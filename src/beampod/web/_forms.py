"""The Queue page's plan form, built from the allowed plans' signatures (pure functions).

Each parameter gets a text field holding a Python literal or a device name
(``[pinhole]``, ``motor_ph``, ``-10``, ``{"note": "x"}``); ``*args`` takes a
comma-separated list. The fields are joined into one plan expression and parsed by
:func:`beampod.instrument.parse_plan_call` — the queue CLI's safe parser, never ``eval``
— so the browser, ``beampod queue add`` and the session agree on what a plan call is.
The queue's gate and the RE Manager then validate the item again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from beampod.errors import PlanError
from beampod.instrument import parse_plan_call

_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    annotation: str
    default: str | None
    description: str

    @property
    def required(self) -> bool:
        return self.default is None and self.kind in (*_POSITIONAL, "KEYWORD_ONLY")

    @property
    def placeholder(self) -> str:
        if self.kind == "VAR_POSITIONAL":
            return "a, b, ..."
        return "" if self.default is None else self.default


@dataclass(frozen=True)
class PlanForm:
    name: str
    description: str
    fields: list[Field]


def plan_form(name: str, plan: Mapping[str, Any]) -> PlanForm:
    """The form of one allowed plan (``plans_allowed[name]`` from the queue)."""
    fields = []
    for p in plan.get("parameters") or []:
        kind = str((p.get("kind") or {}).get("name", "POSITIONAL_OR_KEYWORD"))
        if kind == "VAR_KEYWORD":
            continue  # **kwargs: not offered in the form (the expression box takes them)
        fields.append(
            Field(
                name=str(p.get("name", "")),
                kind=kind,
                annotation=str((p.get("annotation") or {}).get("type", "")),
                default=None if "default" not in p else str(p["default"]),
                description=str(p.get("description") or "").split("\n", 1)[0],
            )
        )
    description = str(plan.get("description") or "").strip().split("\n", 1)[0]
    return PlanForm(name=name, description=description, fields=fields)


def form_expression(form: PlanForm, values: Mapping[str, str]) -> str:
    """The plan expression the filled-in form stands for. Empty optional fields are left
    out; a positional parameter after an empty one is passed by keyword."""
    positional: list[str] = []
    keywords: list[str] = []
    skipped: str | None = None
    for f in form.fields:
        text = str(values.get(f.name, "")).strip()
        if not text:
            if f.required:
                raise PlanError(f"{form.name}: '{f.name}' is required")
            if f.kind in _POSITIONAL:
                skipped = skipped or f.name
            continue
        _check_field(form.name, f, text)
        if f.kind == "VAR_POSITIONAL":
            if skipped:
                raise PlanError(f"{form.name}: fill in '{skipped}' to pass '*{f.name}'")
            positional.append(text)
        elif f.kind in _POSITIONAL and not skipped:
            positional.append(text)
        elif f.kind == "POSITIONAL_ONLY":
            raise PlanError(f"{form.name}: fill in '{skipped}' to pass '{f.name}'")
        else:
            keywords.append(f"{f.name}={text}")
    return f"{form.name}({', '.join(positional + keywords)})"


def _check_field(plan: str, f: Field, text: str) -> None:
    """Parse one field alone, so an error names the field rather than a column of the
    joined expression."""
    probe = f"{plan}({text})" if f.kind == "VAR_POSITIONAL" else f"{plan}(x={text})"
    try:
        parse_plan_call(probe, [plan], _AnyName())
    except PlanError as exc:
        reason = str(exc).replace(" at column", " near column")
        raise PlanError(f"{plan}: '{f.name}': {reason}") from None


class _AnyName(Collection[str]):
    """Accepts any bare name while checking one field's syntax; the joined expression
    is checked against the real device list."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def item_from_expression(
    expr: str, plans: Collection[str], devices: Collection[str]
) -> dict[str, Any]:
    """A queue item (``{"item_type": "plan", "name", "args", "kwargs"}``) from a plan
    expression; :class:`PlanError` says what is wrong."""
    call = parse_plan_call(expr, plans, devices)
    return {
        "item_type": "plan",
        "name": call.plan,
        "args": _plain(call.args),
        "kwargs": _plain(call.kwargs),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def item_text(item: Mapping[str, Any], devices: Collection[str] = ()) -> str:
    """``scan([pinhole], motor_ph, -1, 1, num=5)`` for a queue or history item."""
    parts = [_literal(a, devices) for a in item.get("args") or []]
    parts += [f"{k}={_literal(v, devices)}" for k, v in (item.get("kwargs") or {}).items()]
    return f"{item.get('name', '?')}({', '.join(parts)})"


def _literal(value: Any, devices: Collection[str]) -> str:
    if isinstance(value, str):
        return value if value in devices else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v, devices) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v, devices)}" for k, v in value.items()) + "}"
    return repr(value)
