"""A safe parser for plan expressions such as ``scan([pinhole], motor_ph, -10, 10, 25)``.

The text is parsed with :mod:`ast` and only a whitelist of node types is accepted; it
is never evaluated. Allowed:

- one call of a known plan name, with positional and keyword arguments;
- literals: numbers (also negative), strings, ``None``/``True``/``False``, and lists,
  tuples and dicts built from allowed values (dict keys must be literals);
- bare names of known devices, returned as :class:`DeviceName` (a ``str`` subclass, so a
  call stays JSON-serialisable for the queue server) and resolved later with
  :func:`resolve_devices`.

Everything else (attribute access, nested calls, operators, comprehensions, ``*args``,
``**kwargs``, lambdas, f-strings...) is a :class:`~beampod.errors.PlanError` that names the
problem and its 1-based column. No transport or RunEngine here: the queue CLI reuses it.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from beampod.errors import PlanError

MAX_EXPRESSION_LENGTH = 10_000
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
# Start-document keys the RunEngine sets itself; a plan's md must not replace them.
RUN_ENGINE_KEYS = frozenset({"uid", "time"})


class DeviceName(str):
    """A bare device name from a plan expression (as opposed to a string literal)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"DeviceName({str.__repr__(self)})"


@dataclass(frozen=True)
class PlanCall:
    plan: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def device_names(self) -> set[str]:
        """Every device the call refers to."""
        found: set[str] = set()
        _walk(self.args, found)
        _walk(self.kwargs, found)
        return found


def _walk(value: Any, found: set[str]) -> None:
    if isinstance(value, DeviceName):
        found.add(str(value))
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, found)


def parse_plan_call(
    expr: str, plan_names: Collection[str], device_names: Collection[str]
) -> PlanCall:
    """Parse ``expr`` into a :class:`PlanCall`; raise :class:`PlanError` on anything unsafe."""
    text = expr.strip()
    if not text:
        raise PlanError("empty plan expression (expected e.g. 'count([det])')")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise PlanError(f"plan expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise PlanError(f"invalid plan expression{col}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise PlanError(f"invalid plan expression: {exc}") from None
    return _Parser(text, plan_names, device_names).call(tree.body)


class _Parser:
    def __init__(self, text: str, plans: Collection[str], devices: Collection[str]) -> None:
        self.text = text
        self.plans = plans
        self.devices = devices

    def fail(self, node: ast.AST, what: str) -> PlanError:
        col = getattr(node, "col_offset", 0) + 1
        return PlanError(f"{what} at column {col} of {self.text!r}")

    def call(self, node: ast.expr) -> PlanCall:
        if isinstance(node, ast.Name):
            raise self.fail(node, f"expected a plan call like '{node.id}(...)', got a bare name")
        if not isinstance(node, ast.Call):
            raise self.fail(node, f"expected a plan call, got {_describe(node)}")
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, f"the plan must be a plain name, not {_describe(node.func)}")
        plan = node.func.id
        if plan not in self.plans:
            known = ", ".join(sorted(self.plans)) or "none"
            raise self.fail(node.func, f"unknown plan {plan!r} (known plans: {known})")
        args: list[Any] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "*args are not allowed")
            args.append(self.value(arg))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw.value, "**kwargs are not allowed")
            kwargs[kw.arg] = self.value(kw.value)
        return PlanCall(plan, args, kwargs)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bytes) or node.value is Ellipsis:
                raise self.fail(node, f"{_describe(node)} is not allowed")
            return self.number(node, node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = node.operand
            if (
                isinstance(operand, ast.Constant)
                and isinstance(operand.value, int | float)
                and not isinstance(operand.value, bool)
            ):
                value = -operand.value if isinstance(node.op, ast.USub) else operand.value
                return self.number(node, value)
            raise self.fail(node, "a sign is only allowed in front of a number")
        if isinstance(node, ast.List):
            return [self.value(e) for e in self._elements(node.elts)]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in self._elements(node.elts))
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for key, val in zip(node.keys, node.values, strict=True):
                if key is None:
                    raise self.fail(val, "'**' in a dict is not allowed")
                k = self.value(key)
                if isinstance(k, DeviceName) or not _hashable(k):
                    raise self.fail(key, "dict keys must be numbers, strings or tuples of them")
                out[k] = self.value(val)
            return out
        if isinstance(node, ast.Name):
            if node.id in self.devices:
                return DeviceName(node.id)
            if node.id in self.plans:
                raise self.fail(node, f"plan {node.id!r} cannot be passed as an argument")
            known = ", ".join(sorted(self.devices)) or "none"
            raise self.fail(node, f"unknown device {node.id!r} (known devices: {known})")
        raise self.fail(node, f"{_describe(node)} is not allowed in a plan expression")

    def number(self, node: ast.AST, value: Any) -> Any:
        """Numbers must survive the trip through the documents (msgpack, JSON, SQL):
        64-bit integers and finite floats."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT_MIN <= value <= INT_MAX:
                raise self.fail(
                    node, f"the integer {value} is out of range (64-bit: {INT_MIN} to {INT_MAX})"
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, f"the number {value} is not finite")
        return value

    def _elements(self, elts: list[ast.expr]) -> list[ast.expr]:
        for e in elts:
            if isinstance(e, ast.Starred):
                raise self.fail(e, "*-unpacking is not allowed")
        return elts


_NODE_WORDS = {
    "Attribute": "attribute access",
    "Call": "a function call",
    "BinOp": "an arithmetic operator",
    "BoolOp": "a boolean operator",
    "Compare": "a comparison",
    "Subscript": "indexing",
    "Lambda": "a lambda",
    "ListComp": "a comprehension",
    "SetComp": "a comprehension",
    "DictComp": "a comprehension",
    "GeneratorExp": "a generator expression",
    "JoinedStr": "an f-string",
    "Set": "a set",
    "IfExp": "a conditional expression",
    "NamedExpr": "an assignment expression",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
    "Starred": "*-unpacking",
}


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    name = type(node).__name__
    return _NODE_WORDS.get(name, name)


def resolve_devices(value: Any, devices: Mapping[str, Any]) -> Any:
    """Replace every :class:`DeviceName` in ``value`` (recursively) by its device."""
    if isinstance(value, DeviceName):
        try:
            return devices[str(value)]
        except KeyError:
            raise PlanError(f"unknown device {str(value)!r}") from None
    if isinstance(value, list):
        return [resolve_devices(v, devices) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_devices(v, devices) for v in value)
    if isinstance(value, dict):
        return {k: resolve_devices(v, devices) for k, v in value.items()}
    return value


def check_plan_arguments(plan: str, arguments: Mapping[str, Any]) -> None:
    """Arguments a plan accepts by signature but the RunEngine cannot run or store, as
    one :class:`PlanError` before anything starts: ``num`` that is not a whole number of
    points, and ``md`` that would make an invalid start document."""
    if "num" in arguments:
        num = arguments["num"]
        if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
            raise PlanError(
                f"{plan}: num must be a whole number of points (1 or more), not {num!r}"
            )
    if arguments.get("md") is not None:
        check_run_metadata(plan, arguments["md"])


def check_run_metadata(plan: str, md: Any) -> None:
    """``md`` must be a dict with string keys that gives a valid start document."""
    from event_model import DocumentNames, schema_validators
    from jsonschema import ValidationError

    if not isinstance(md, dict):
        raise PlanError(f"{plan}: md must be a dict, not {type(md).__name__}")
    bad_keys = [k for k in md if not isinstance(k, str)]
    if bad_keys:
        raise PlanError(f"{plan}: md keys must be strings, not {bad_keys[0]!r}")
    reserved = sorted(RUN_ENGINE_KEYS & md.keys())
    if reserved:
        raise PlanError(f"{plan}: md may not set {reserved[0]!r}: the RunEngine sets it")
    trial = {"uid": "0" * 32, "time": 0.0, "scan_id": 1, **md}
    try:
        schema_validators[DocumentNames.start].validate(trial)
    except ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "md"
        raise PlanError(
            f"{plan}: md gives an invalid start document at {where}: {exc.message}"
        ) from None
