"""Pages and actions: login, Overview, Queue, Runs. (Live and Devices: ``_streams``.)"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from beampod.errors import BeampodError, PlanError
from beampod.web._agents import agent_view
from beampod.web._auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE_S
from beampod.web._console import Console, InstrumentView, safe_next
from beampod.web._forms import form_expression, item_from_expression, item_text, plan_form
from beampod.web._podstate import CENTRAL, group_services, log_tail, read_pod_state
from beampod.web._queueapi import ACTIONS, QueueRefusal, QueueUnavailable
from beampod.web._runs import default_axes, recent_runs, run_detail, stream_table, table_csv


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


# -- login ---------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    import secrets

    c = _console(request)
    token = secrets.token_urlsafe(32)
    resp = c.page(
        request,
        "login.html",
        {"login_csrf": token, "next": safe_next(request.query_params.get("next"))},
    )
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", max_age=3600)
    return resp


async def login(request: Request) -> Response:
    import secrets

    c = _console(request)
    form = await request.form()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    token = str(form.get("csrf", ""))
    nxt = safe_next(str(form.get("next", "/")))
    if not cookie or not secrets.compare_digest(cookie, token):
        return PlainTextResponse("login form expired: reload the login page", status_code=403)
    found = c.role_of(str(form.get("key", "")))
    if found is None:
        return c.page(
            request,
            "login.html",
            {"login_csrf": token, "next": nxt, "error": "that is not one of the pod's keys"},
            status=401,
        )
    instrument, role = found
    c.sessions.drop(request.cookies.get(SESSION_COOKIE))
    # A session is for the instrument whose key it was: its pages, never another's.
    sid, _ = c.sessions.create(role, instrument)
    resp = RedirectResponse(nxt, status_code=303)
    resp.delete_cookie(LOGIN_CSRF_COOKIE)
    resp.set_cookie(
        SESSION_COOKIE, sid, httponly=True, samesite="strict", max_age=int(SESSION_MAX_AGE_S)
    )
    return resp


async def logout(request: Request) -> Response:
    c = _console(request)
    form = await request.form()
    c.require(request, form=form, scoped=False)
    c.sessions.drop(request.cookies.get(SESSION_COOKIE))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


# -- overview ------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    c = _console(request)
    session = c.require(request, scoped=False)
    view = read_pod_state(c.pod.home)
    instruments = list(c.pod.config.instruments)
    groups = group_services(view.services, instruments)
    if session.instrument is not None and len(instruments) > 1:
        # Logged in with one instrument's key: its services and the central ones.
        groups = [(g, rows) for g, rows in groups if g in (session.instrument, CENTRAL)]
    names = {s.name for _, rows in groups for s in rows}
    chosen = request.query_params.get("log", "supervisor")
    try:
        lines = log_tail(c.pod.home, chosen, names, int(request.query_params.get("n", "40")))
    except (KeyError, ValueError):
        chosen, lines = "supervisor", log_tail(c.pod.home, "supervisor", names)
    template = "_services.html" if request.query_params.get("partial") else "overview.html"
    return c.page(
        request,
        template,
        {
            "view": view,
            "groups": groups,
            "log_service": chosen,
            "log_lines": lines,
            "log_choices": sorted(names),
        },
    )


# -- queue ---------------------------------------------------------------------------


async def instrument_home(request: Request) -> Response:
    """``/i/<name>``: that instrument's Queue page."""
    view = _console(request).view(request)
    return RedirectResponse(f"{view.base}/queue", 303)


async def _queue_context(v: InstrumentView) -> dict[str, Any]:
    try:
        status = await v.queue.status()
        queue = await v.queue.queue()
        history = await v.queue.history()
        plans = await v.queue.plans_allowed()
        devices = await v.queue.devices_allowed()
    except (QueueUnavailable, QueueRefusal) as exc:
        return {
            "queue_error": str(exc),
            "plans": {},
            "plan_names": [],
            "device_names": [],
            "items": [],
            "history": [],
            "status": {},
            "text": item_text,
        }
    text = lambda item: item_text(item, devices)  # noqa: E731
    return {
        "status": status,
        "running": queue.get("running_item") or None,
        "items": queue.get("items") or [],
        "history": list(reversed(history))[:30],
        "plans": plans,
        "plan_names": sorted(plans),
        "device_names": sorted(devices),
        "text": text,
    }


async def queue_page(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    ctx = await _queue_context(c.view(request))
    chosen = request.query_params.get("plan") or ("scan" if "scan" in ctx["plans"] else "")
    if chosen not in ctx["plans"] and ctx["plans"]:
        chosen = sorted(ctx["plans"])[0]
    ctx["form"] = plan_form(chosen, ctx["plans"][chosen]) if chosen else None
    ctx["values"] = {}
    ctx["message"] = request.query_params.get("msg", "")
    template = "_queue_state.html" if request.query_params.get("partial") else "queue.html"
    return c.page(request, template, ctx)


async def queue_add(request: Request) -> Response:
    c = _console(request)
    form = await request.form()
    c.require(request, control=True, form=form)
    view = c.view(request)
    ctx = await _queue_context(view)
    values = {k: str(v) for k, v in form.items() if k.startswith("p_")}
    plain = {k[2:]: v for k, v in values.items()}
    expr = str(form.get("expr", "")).strip()
    name = str(form.get("plan", ""))
    pform = plan_form(name, ctx["plans"][name]) if name in ctx["plans"] else None
    ctx.update(form=pform, values=plain, expr=expr)
    try:
        if not expr:
            if pform is None:
                raise PlanError(f"unknown plan {name!r}")
            expr = form_expression(pform, plain)
        item = item_from_expression(expr, ctx["plans"], ctx["device_names"])
        await view.queue.add(item, front=form.get("front") == "on")
    except (PlanError, QueueRefusal, QueueUnavailable) as exc:
        ctx["error"] = str(exc)
        ctx["tried"] = expr
        return c.page(request, "queue.html", ctx, status=422)
    return RedirectResponse(f"{view.base}/queue?plan={item['name']}&msg=added+{item['name']}", 303)


async def queue_action(request: Request) -> Response:
    c = _console(request)
    form = await request.form()
    c.require(request, control=True, form=form)
    v = c.view(request)
    name = request.path_params["action"]
    try:
        if name == "remove":
            await v.queue.remove(str(form.get("uid", "")))
        elif name in ACTIONS:
            await v.queue.action(name)
        else:
            return JSONResponse({"detail": f"unknown action {name!r}"}, status_code=404)
    except (QueueRefusal, QueueUnavailable) as exc:
        status = exc.status if isinstance(exc, QueueRefusal) else 503
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return RedirectResponse(f"{v.base}/queue?msg={_q(f'{name}: {exc}')}", 303)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": True})
    return RedirectResponse(f"{v.base}/queue?msg={_q(name + ': done')}", 303)


def _q(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text[:300])


# -- runs ----------------------------------------------------------------------------


async def _blocking(v: InstrumentView, fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except (BeampodError, OSError, httpx.HTTPError) as exc:
        v.forget_catalog()
        raise RunsUnavailable(str(exc)) from None


class RunsUnavailable(Exception):
    pass


async def runs_page(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    try:
        runs = await _blocking(v, lambda: recent_runs(v.catalog(c.pod), 30))
        error = ""
    except RunsUnavailable as exc:
        runs, error = [], str(exc)
    return c.page(request, "runs.html", {"runs": runs, "runs_error": error})


async def run_page(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    uid = request.path_params["uid"]
    try:
        detail = await _blocking(v, lambda: run_detail(v.catalog(c.pod), uid))
    except (RunsUnavailable, KeyError) as exc:
        return c.page(request, "runs.html", {"runs": [], "runs_error": str(exc)}, status=404)
    stream = "primary" if "primary" in detail.streams else next(iter(detail.streams), "")
    x, y = default_axes(detail.start, detail.streams.get(stream, []))
    return c.page(request, "run.html", {"run": detail, "stream": stream, "x": x, "y": y})


async def run_table(request: Request) -> Response:
    c = _console(request)
    c.require(request)
    v = c.view(request)
    uid, stream, fmt = (request.path_params[k] for k in ("uid", "stream", "fmt"))
    if fmt not in ("json", "csv"):
        return JSONResponse({"detail": f"no format {fmt!r} (json or csv)"}, status_code=404)
    try:
        table = await _blocking(v, lambda: stream_table(v.catalog(c.pod), uid, stream))
    except (RunsUnavailable, KeyError) as exc:
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)
    if fmt == "csv":
        name = f"{uid[:8]}-{stream}.csv"
        return Response(
            table_csv(table),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(table)


# -- agents --------------------------------------------------------------------------


async def agents_page(request: Request) -> Response:
    c = _console(request)
    config = c.pod.config
    v = c.view(request)
    asked = request.query_params.get("instrument")
    if asked and asked != v.name and asked in c.views:
        # The old way to choose (``/agents?instrument=NAME``): its own pages now.
        return RedirectResponse(f"{c.views[asked].base}/agents", 303)
    c.require(request)
    instrument = v.name
    answer = await c.agent_status(instrument) if c.agent_status is not None else None
    view = agent_view(config, read_pod_state(c.pod.home), instrument, answer)
    template = "_agents.html" if request.query_params.get("partial") else "agents.html"
    return c.page(request, template, {"agent": view})
