"""The safe plan-expression parser: what it accepts, and what it refuses (and says why)."""

from __future__ import annotations

import json

import pytest

from beampod.errors import PlanError
from beampod.instrument import DeviceName, PlanCall, parse_plan_call, resolve_devices

PLANS = ["scan", "count", "list_scan", "grid_scan", "mv"]
DEVICES = ["pinhole", "motor_ph", "edge", "motor_edge"]


def parse(expr: str) -> PlanCall:
    return parse_plan_call(expr, PLANS, DEVICES)


def test_the_pods_demo_expression() -> None:
    call = parse("scan([pinhole], motor_ph, -10, 10, 25)")
    assert call == PlanCall("scan", [["pinhole"], "motor_ph", -10, 10, 25], {})
    assert isinstance(call.args[0][0], DeviceName)
    assert isinstance(call.args[1], DeviceName)
    assert call.device_names() == {"pinhole", "motor_ph"}


@pytest.mark.parametrize(
    ("expr", "args", "kwargs"),
    [
        ("count([pinhole])", [["pinhole"]], {}),
        ("count([pinhole], num=3, delay=0.5)", [["pinhole"]], {"num": 3, "delay": 0.5}),
        (
            "count([], md={'sample': 'Fe', 'n': [1, 2.5, -3], 't': (1, 'a')})",
            [[]],
            {"md": {"sample": "Fe", "n": [1, 2.5, -3], "t": (1, "a")}},
        ),
        (
            "list_scan([pinhole], motor_ph, [-1.5, 0, +1.5e1])",
            [["pinhole"], "motor_ph", [-1.5, 0, 15.0]],
            {},
        ),
        (
            "count([pinhole], md={1: None, 'ok': True, 'no': False})",
            [["pinhole"]],
            {"md": {1: None, "ok": True, "no": False}},
        ),
        ("  count( [ pinhole ] , 'pinhole' )  ", [["pinhole"], "pinhole"], {}),
    ],
)
def test_good_expressions(expr: str, args: list[object], kwargs: dict[str, object]) -> None:
    call = parse(expr)
    assert call.args == args
    assert call.kwargs == kwargs


def test_string_literal_is_not_a_device() -> None:
    call = parse("count([pinhole], md={'who': 'motor_ph'})")
    assert not isinstance(call.kwargs["md"]["who"], DeviceName)
    assert call.device_names() == {"pinhole"}


def test_result_is_json_serialisable_for_the_queue() -> None:
    call = parse("scan([pinhole], motor_ph, -10, 10, num=25)")
    assert json.loads(json.dumps({"args": call.args, "kwargs": call.kwargs})) == {
        "args": [["pinhole"], "motor_ph", -10, 10],
        "kwargs": {"num": 25},
    }


def test_resolve_devices_replaces_names_only() -> None:
    devices = {"pinhole": object(), "motor_ph": object()}
    call = parse("scan([pinhole], motor_ph, -1, 1, 3, md={'m': 'motor_ph'})")
    args = resolve_devices(call.args, devices)
    kwargs = resolve_devices(call.kwargs, devices)
    assert args[0][0] is devices["pinhole"] and args[1] is devices["motor_ph"]
    assert kwargs == {"md": {"m": "motor_ph"}}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty plan expression"),
        ("scan(", "invalid plan expression at column 5"),
        ("scan([pinhole], motor_ph, -10, 10, 25", "invalid plan expression"),
        (
            "foo([pinhole])",
            "unknown plan 'foo' (known plans: count, grid_scan, list_scan, mv, scan) at column 1",
        ),
        ("count", "expected a plan call like 'count(...)', got a bare name at column 1"),
        ("[count([pinhole])]", "expected a plan call, got List at column 1"),
        ("bp.scan([pinhole])", "the plan must be a plain name, not attribute access at column 1"),
        (
            "count([detector])",
            "unknown device 'detector' (known devices: edge, motor_edge, "
            "motor_ph, pinhole) at column 8",
        ),
        (
            "count([pinhole.det])",
            "attribute access is not allowed in a plan expression at column 8",
        ),
        (
            "count([pinhole], num=1+2)",
            "an arithmetic operator is not allowed in a plan expression at column 22",
        ),
        (
            "count([pinhole], num=int('3'))",
            "a function call is not allowed in a plan expression at column 22",
        ),
        ("count(__import__('os').system('rm -rf /'))", "a function call is not allowed"),
        ("count([pinhole], md=globals())", "a function call is not allowed"),
        ("count(*[pinhole])", "*args are not allowed at column 7"),
        ("count([pinhole], **{'num': 3})", "**kwargs are not allowed at column 20"),
        ("count([*x])", "*-unpacking is not allowed at column 8"),
        (
            "count([p for p in q])",
            "a comprehension is not allowed in a plan expression at column 7",
        ),
        ("count(lambda: 0)", "a lambda is not allowed"),
        ("count(f'{pinhole}')", "an f-string is not allowed"),
        ("count({pinhole})", "a set is not allowed"),
        ("count([pinhole][0])", "indexing is not allowed"),
        ("count(-'a')", "a sign is only allowed in front of a number at column 7"),
        ("count(-pinhole)", "a sign is only allowed in front of a number"),
        ("count(b'x')", "the constant b'x' is not allowed"),
        ("count(...)", "the constant Ellipsis is not allowed"),
        ("count({[1]: 2})", "dict keys must be numbers, strings or tuples of them at column 8"),
        ("count({pinhole: 2})", "dict keys must be numbers, strings or tuples of them"),
        ("count({**a})", "'**' in a dict is not allowed"),
        ("count(scan)", "plan 'scan' cannot be passed as an argument at column 7"),
        ("count([pinhole]) if True else 0", "expected a plan call, got a conditional expression"),
        ("count(x := 1)", "an assignment expression is not allowed"),
        ("count([pinhole]); import os", "invalid plan expression"),
        ("count(" * 200 + ")" * 200, "unknown plan 'count'"),
    ],
)
def test_bad_expressions(expr: str, message: str) -> None:
    plans = PLANS if "unknown plan 'count'" not in message else ["scan"]
    with pytest.raises(PlanError) as exc:
        parse_plan_call(expr, plans, DEVICES)
    assert message in str(exc.value)


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(PlanError, match="longer than"):
        parse("count([" + "1, " * 5000 + "])")


def test_plan_error_is_a_usage_error() -> None:
    from beampod.errors import UsageError

    with pytest.raises(UsageError):
        parse("nope()")
