"""The console in a real headless Chromium against a real pod: logging in with each key,
a scan submitted from the form and watched on the Live plot, the run on the Runs page, a
motor moved from the Devices panel, and a refused plan."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from beampod.config import LoadedPod
from beampod.web import web_url
from tests.web._browser import chromium_or_skip, screenshot, wait_js

pytestmark = [pytest.mark.pod, pytest.mark.slow]

NUM = 40
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium_or_skip()


@pytest.fixture
def page(browser: Any, pod: LoadedPod) -> Iterator[Any]:
    context = browser.new_context(base_url=web_url(pod), viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # A refused submission is answered with a 422 page by design; Chromium logs it.
        if message.type == "error" and "status of 422" not in message.text:
            problems.append(f"{message.text} ({message.location.get('url')})")

    context.on("console", on_console)
    context.on("weberror", lambda e: problems.append(str(e.error)))
    try:
        yield page
    finally:
        context.close()
    # Every page works under the strict Content-Security-Policy, without script errors.
    assert not problems, problems


def log_in(page: Any, key: str) -> None:
    page.goto("/login")
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def queued(page: Any) -> int:
    found = re.search(r"(\d+) queued", page.inner_text("#queue-status"))
    assert found
    return int(found.group(1))


def test_observer_sees_everything_but_cannot_submit(page: Any, pod: LoadedPod) -> None:
    page.goto("/login")
    screenshot(page, "login")
    log_in(page, pod.secrets.queue_observer_key.get_secret_value())
    assert page.get_attribute("#role", "data-role") == "observer"
    page.wait_for_selector("#services-table tr[data-service=web]")
    screenshot(page, "overview")
    page.goto("/queue")
    assert page.is_visible("#read-only")
    assert page.query_selector("#plan-form") is None
    assert page.query_selector("#action-start") is None


def test_scan_from_the_form_live_plot_and_runs(page: Any, pod: LoadedPod) -> None:
    log_in(page, pod.secrets.queue_control_key.get_secret_value())
    assert page.get_attribute("#role", "data-role") == "control"
    live = page.context.new_page()
    live.goto("/live")
    # Record every point count the plot shows while the scan runs.
    live.evaluate(
        """() => { window.seenPoints = [];
        const el = document.getElementById('points');
        new MutationObserver(() => window.seenPoints.push(+el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true}); }"""
    )
    # Connected to the real bus before the run (no run yet, or waiting for the next one).
    wait_js(
        live,
        "['waiting', 'connected'].includes(document.getElementById('live-link').dataset.state)",
    )
    assert live.inner_text("#live-link").startswith("connected to the bus")
    page.goto("/queue?plan=scan")
    page.fill("#p_detectors", "[pinhole]")
    page.fill("#p_args", "motor_ph, -10, 10")
    page.fill("#p_num", str(NUM))
    screenshot(page, "queue-form")
    page.click("#add-plan")
    page.wait_for_selector("#message")
    page.click("#action-start")
    wait_js(live, f"+document.getElementById('points').textContent === {NUM}")
    seen = live.evaluate("window.seenPoints")
    assert max(seen) == NUM
    assert len({n for n in seen if 0 < n < NUM}) >= 2, f"plot did not grow point by point: {seen}"
    wait_js(live, "document.getElementById('live-status').textContent.includes('success')")
    status = live.inner_text("#live-status")
    uid8 = re.search(r"· ([0-9a-f]{8}) ·", status)
    assert uid8, status
    assert live.eval_on_selector("#livetable tbody", "t => t.rows.length") == NUM
    screenshot(live, "live")

    # The run in Runs, with the right number of events, and its plot.
    def row_events() -> str | None:
        page.goto("/runs")
        row = page.query_selector(f"#runs tr[data-uid^='{uid8.group(1)}'] .num-events")
        return row.inner_text() if row else None

    for _ in range(120):
        if row_events() == str(NUM):
            break
        page.wait_for_timeout(500)
    assert row_events() == str(NUM)
    screenshot(page, "runs")
    page.click(f"#runs tr[data-uid^='{uid8.group(1)}'] a")
    wait_js(page, f"document.getElementById('plot').dataset.points === '{NUM}'")
    assert page.input_value("#x-axis") == "motor_ph" and page.input_value("#y-axis") == "pinhole"
    screenshot(page, "run")
    page.goto("/queue")
    screenshot(page, "queue")


def test_move_motor_from_the_devices_panel(page: Any, pod: LoadedPod) -> None:
    log_in(page, pod.secrets.queue_control_key.get_secret_value())
    page.goto("/devices")
    cell = "td[data-signal=motor_ph]"
    wait_js(page, f"!isNaN(parseFloat(document.querySelector('{cell}')?.textContent))")
    before = float(page.inner_text(cell))
    target = 1.25 if abs(before - 1.25) > 0.5 else -1.25
    page.fill("#move-motor_ph", str(target))
    page.click("form.move[data-device=motor_ph] button")
    wait_js(
        page,
        f"document.getElementById('move-status').textContent.startsWith('mv(motor_ph, {target})')",
    )
    wait_js(
        page,
        f"Math.abs(parseFloat(document.querySelector('{cell}')?.textContent) - {target}) < 1e-6",
    )
    screenshot(page, "devices")


def test_bad_plan_shows_the_message_and_enqueues_nothing(page: Any, pod: LoadedPod) -> None:
    log_in(page, pod.secrets.queue_control_key.get_secret_value())
    page.goto("/queue?plan=scan")
    before = queued(page)
    page.fill("#p_detectors", "[pinhole]")
    page.fill("#p_args", "motor_ph, -1, 1")
    page.fill("#p_num", "'three'")
    page.click("#add-plan")
    error = page.inner_text("#add-error")
    assert "argument 'num': Input should be a valid integer" in error
    assert page.input_value("#p_num") == "'three'"
    screenshot(page, "queue-refused")
    page.goto("/queue")
    assert queued(page) == before


def test_agents_page_shows_the_suggestions_of_an_adaptive_plan(page: Any, pod: LoadedPod) -> None:
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    from beampod.adaptive import adaptive_plan, make_brains

    log_in(page, pod.secrets.queue_observer_key.get_secret_value())
    page.goto("/agents")
    assert page.inner_text("#agent-class") == pod.config.agent.agent
    wait_js(page, "document.getElementById('agent-doing').dataset.answering === 'yes'")
    # The bluesky-pods demo's adaptive plan against the pod's agent service (as in
    # tests/adaptive): 17 runs at motor = 0, 1.5, ..., 24, then the agent says stop.
    starts: list[dict[str, Any]] = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    to_brains, from_brains = make_brains(pod)
    RE(adaptive_plan([det], {motor: 0}, to_brains=to_brains, from_brains=from_brains))
    plan = str(starts[-1]["batch_id"])[:8]
    # The open page picks the decisions up by itself (it re-reads every 2 s).
    rows = f"#suggestions tbody tr[data-plan='{plan}']"
    wait_js(page, f'document.querySelectorAll("{rows}").length === 17')
    cells = page.eval_on_selector_all(
        rows, "rs => rs.slice(0, 2).map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    # Newest first: the stop after measuring 24, then the suggestion of 24.
    seq, observed, suggested, reason = cells[0][2:6]
    assert (seq, suggested) == ("16", "stop"), cells
    assert observed.startswith("motor = 24 → det = ") and reason.startswith("max_count=15"), cells
    assert cells[1][2] == "15" and cells[1][4] == "motor = 24", cells
    screenshot(page, "agents")
