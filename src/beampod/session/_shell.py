"""``beampod shell`` (IPython, or ``-c CODE``) and ``beampod run EXPRESSION``."""

from __future__ import annotations

import inspect
import linecache
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from beampod.config import LoadedPod
from beampod.errors import BeampodError, PlanError
from beampod.instrument import (
    apply_ca_client_env,
    check_plan_arguments,
    parse_plan_call,
    resolve_devices,
    silent_iocs,
    start_channel_access_quietly,
    unconnected_devices,
)
from beampod.session._namespace import (
    build_namespace,
    has_display,
    make_best_effort_callback,
    prepare_instrument,
)

USER_CODE = "<beampod shell -c>"
CONNECT_TIMEOUT_S = 5.0


def run_shell(
    pod: LoadedPod,
    code: str | None = None,
    extras: Callable[[LoadedPod], Mapping[str, Any]] | None = None,
    *,
    instrument: str | None = None,
) -> int:
    """IPython with the session namespace of ``instrument`` (default: the pod's default
    instrument), or run ``code`` in it non-interactively.

    With ``code``: returns 0 on success and non-zero on error, after printing a
    beampod error as one line, or any other error as the traceback of the user's code.
    """
    if code is None:
        return _interactive(pod, extras, instrument)
    return run_code(code, _session_namespace(pod, True, instrument, extras))


def _session_namespace(
    pod: LoadedPod,
    headless: bool,
    instrument: str | None,
    extras: Callable[[LoadedPod], Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The session's namespace with its devices connected, as bsui profiles start.
    When none of the instrument's IOCs listens (the pod is down) the session starts
    at once, after one line saying so: no device could connect within the wait, and
    libca's lines about starting a CA repeater of its own are kept out."""
    down = _iocs_down(pod, instrument or pod.config.instrument_name)
    if down is not None:
        print(
            f"beampod: warning: {down}; its devices connect once they do "
            "(`beampod up -d`, `beampod status`)",
            file=sys.stderr,
            flush=True,
        )
        apply_ca_client_env(pod.config)  # what libca reads as its context is made
        start_channel_access_quietly()
    ns = build_namespace(pod, headless=headless, instrument=instrument, extras=extras)
    if down is None:
        _settle_connections(ns)
    return ns


def run_code(code: str, ns: dict[str, Any]) -> int:
    """Execute ``code`` in ``ns``; see :func:`run_shell` for the error contract."""
    # Registered so tracebacks show the user's lines, not just line numbers.
    linecache.cache[USER_CODE] = (len(code), None, code.splitlines(True), USER_CODE)
    try:
        compiled = compile(code, USER_CODE, "exec")
    except SyntaxError as exc:
        print("".join(traceback.format_exception_only(exc)).rstrip(), file=sys.stderr)
        return 1
    try:
        exec(compiled, ns)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except BeampodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - any error in user code is reported, not hidden
        print(_user_traceback(exc), file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of the user's code down to the raise."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != USER_CODE:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()


def _interactive(
    pod: LoadedPod,
    extras: Callable[[LoadedPod], Mapping[str, Any]] | None,
    instrument: str | None = None,
) -> int:
    from IPython import start_ipython

    headless = not has_display()
    ns = _session_namespace(pod, headless, instrument, extras)
    argv = ["--no-banner"] if headless else ["--no-banner", "--matplotlib=auto"]
    argv.append("--ext=beampod.session")  # %wa, %mov, %movr, %ct (load_ipython_extension)
    RE = ns["RE"]
    if sys.stdout.isatty():
        from bluesky.utils import ProgressBarManager

        RE.waiting_hook = ProgressBarManager()  # progress bars for moves, as in bsui
    name = instrument or pod.config.instrument_name
    print(
        f"beampod session: instrument {name!r} of pod {pod.config.pod.name!r}; "
        f"{len(ns['instrument'].devices)} devices, {len(ns['instrument'].plans)} plans"
        f"{' (headless: plots are saved as PNG files)' if headless else ''}. "
        "Try RE(count([...])), %wa, %ct."
    )
    start_ipython(argv=argv, user_ns=ns)
    return 0


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext beampod.session``: bluesky's magics (``%wa``, ``%mov``, ``%movr``,
    ``%ct``), which find devices by their ophyd ``labels`` ("motors", "detectors")."""
    from bluesky.magics import BlueskyMagics

    ipython.register_magics(BlueskyMagics)


def run_plan_expression(pod: LoadedPod, expr: str, *, instrument: str | None = None) -> list[str]:
    """Run one plan expression (``scan([pinhole], motor_ph, -10, 10, 25)``) headless.

    The expression is parsed safely (never evaluated); unknown names and bad arguments
    are :class:`PlanError`. Returns the uids of the runs the plan opened.
    """
    from beampod.session._engine import make_run_engine

    try:
        RE, plan = _prepare_run(pod, expr, instrument, make_run_engine)
    except BeampodError as exc:
        exc.add_note(REFUSED_BEFORE_RUN)  # nothing was sent: the CLI may exit at once
        raise
    # stdout carries the run uids (`beampod run` prints them): plot paths go to stderr.
    RE.subscribe(make_best_effort_callback(headless=True, pod=pod, out=sys.stderr))
    uids: list[str] = []
    RE.subscribe(lambda name, doc: uids.append(doc["uid"]), "start")
    RE(plan)
    _report_delivery(RE)
    return uids


# Added to the error of a run refused before its RunEngine and publisher existed.
REFUSED_BEFORE_RUN = "beampod: refused before the RunEngine started"


def _prepare_run(
    pod: LoadedPod, expr: str, instrument: str | None, make_run_engine: Callable[..., Any]
) -> tuple[Any, Any]:
    """Everything that can refuse the command, before any document exists."""
    down = _iocs_down(pod, instrument or pod.config.instrument_name)
    if down is not None:
        raise BeampodError(f"{down}; is the pod up? (`beampod status`)")
    inst = prepare_instrument(pod, instrument)
    call = parse_plan_call(expr, inst.plans, inst.devices)
    plan_fn = inst.plans[call.plan]
    args = resolve_devices(call.args, inst.devices)
    kwargs = resolve_devices(call.kwargs, inst.devices)
    try:
        bound = inspect.signature(plan_fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise PlanError(f"bad arguments for {call.plan}: {exc}") from None
    except ValueError:
        pass  # no introspectable signature (a C callable): let the call itself decide
    else:
        check_plan_arguments(call.plan, bound.arguments)
    wait_for_connection((inst.devices[n] for n in sorted(call.device_names())), CONNECT_TIMEOUT_S)
    RE = make_run_engine(pod, instrument)
    return RE, plan_fn(*args, **kwargs)


def _iocs_down(pod: LoadedPod, instrument: str) -> str | None:
    """What to say when nothing listens on any of the instrument's IOC ports (the pod is
    down), else None: a run refuses at once, a session starts without waiting. With
    IOCs that answer, or some, devices connect as before."""
    silent = silent_iocs(pod.config, instrument)
    if silent is None:
        return None
    where = ", ".join(f"{h}:{p}" for h, p in silent)
    return f"the IOCs of instrument {instrument!r} do not answer: nothing listens at {where}"


def _report_delivery(RE: Any) -> None:
    """Say plainly where the documents are when they are not all on the bus yet."""
    publisher = getattr(RE, "publisher", None)
    if publisher is None:
        return
    delivered = publisher.flush(timeout=10.0)
    status_of = getattr(publisher, "status", None)
    if delivered or status_of is None:
        return
    status = status_of()
    print(
        f"beampod: warning: the bus did not acknowledge every document; "
        f"{status.spooled} are safe in the local spool {status.spool_path} and are "
        f"delivered, in order, by the next session or `beampod run` once the bus is back",
        file=sys.stderr,
        flush=True,
    )


def _settle_connections(ns: Mapping[str, Any]) -> None:
    """A session starts with its devices connected, as bsui profiles do: ophyd's
    EpicsMotor refuses a move at once (DisconnectedError) while its channels are still
    connecting. Devices whose IOC is down are named, and the session starts anyway."""
    inst = ns.get("instrument")
    devices = getattr(inst, "devices", {})
    missing = unconnected_devices(devices.values(), CONNECT_TIMEOUT_S)
    if missing:
        print(
            f"beampod: warning: not connected after {CONNECT_TIMEOUT_S:g} s (they connect "
            f"when their IOC answers; `beampod status` shows the IOCs): "
            f"{'; '.join(missing)}",
            file=sys.stderr,
            flush=True,
        )


def wait_for_connection(devices: Iterable[Any], timeout: float) -> None:
    """Wait until every device is connected; one error naming all that are not."""
    missing = unconnected_devices(devices, timeout)
    if missing:
        raise BeampodError(
            "devices did not connect within "
            f"{timeout:g} s: {'; '.join(missing)}. Is the pod up (`beampod status`)?"
        )
