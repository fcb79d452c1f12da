"""Web console: event emitted -> point drawn in a real browser, and the console's memory.

A throw-away whole pod (``beampod init --free-ports`` + ``up -d``, tmp home). A headless
Chromium (the system's, via Playwright) opens the Live page; a ``count`` of ``--events``
points is submitted through the queue HTTP API. For every event the page records, when
the animation frame that drew it ran, ``now - event.time`` (the RunEngine's timestamp
of the event, same host clock): emitted -> bus -> console -> SSE -> browser -> drawn.
Then the console's resident memory (RSS of the ``web`` service, and of its children).

    python bench/bench_web.py [--events 1000] [--detector ring_current]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_average, machine, run, summary

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    from beampod.config import PodHome, load_pod
    from beampod.web import web_url

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--detector", default="ring_current")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp) / "pod"
        cli = [sys.executable, "-m", "beampod", "--home", str(root)]
        run([*cli, "init", "--free-ports"])
        t0 = time.monotonic()
        try:
            run([*cli, "up", "-d"], timeout=400)
        except subprocess.CalledProcessError as exc:
            run([*cli, "down"], timeout=120)
            sys.exit(f"beampod up -d failed: {exc.stderr.strip()[:2000]}")
        print(f"whole pod (beampod up -d) ready in {time.monotonic() - t0:.1f} s")
        pod = load_pod(PodHome(root))
        state = json.loads(pod.home.state_file.read_text())
        web_pid = state["services"]["web"]["pid"]
        from beampod.sim import probe_host

        queue = f"http://{probe_host(pod.config.pod.bind)}:{pod.config.queue.http_port}"
        key = pod.secrets.queue_control_key.get_secret_value()
        try:
            with (
                sync_playwright() as pw,
                httpx.Client(
                    base_url=queue, timeout=30, headers={"Authorization": f"ApiKey {key}"}
                ) as q,
            ):
                browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
                page = browser.new_page(base_url=web_url(pod))
                page.set_default_timeout(600_000)
                page.goto("/login")
                page.fill("#key", pod.secrets.queue_observer_key.get_secret_value())
                page.click("#login-form button[type=submit]")
                page.goto("/live")
                _wait_js(page, "window.beampodLatencies !== undefined", 60)
                rss0 = _rss(web_pid)
                item = {
                    "item_type": "plan",
                    "name": "count",
                    "args": [[args.detector]],
                    "kwargs": {"num": args.events},
                }
                q.post("/api/queue/item/add", json={"item": item}).raise_for_status()
                t1 = time.monotonic()
                q.post("/api/queue/start").raise_for_status()
                _wait_js(
                    page, f"+document.getElementById('points').textContent >= {args.events}", 600
                )
                elapsed = time.monotonic() - t1
                lat = page.evaluate("window.beampodLatencies")
                rss1 = _rss(web_pid)
                browser.close()
            ms = [x * 1000 for x in lat]
            print(f"{args.events} events of count([{args.detector}]) in {elapsed:.1f} s")
            print(f"event emitted -> point drawn in the browser: {summary(ms)}")
            print(f"console RSS: {rss0:.0f} MB before the run, {rss1:.0f} MB after")
        finally:
            run([*cli, "down"], timeout=120)
        print(f"load average after: {load_average()}")


def _wait_js(page: Any, expression: str, timeout_s: float) -> None:
    """Poll through the DevTools protocol (the console's CSP forbids the page-side eval
    that Playwright's wait_for_function uses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(f"() => ({expression})"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {expression}")
        page.wait_for_timeout(20)


def _rss(pid: int) -> float:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        total += child.memory_info().rss
    return total / 1024**2


if __name__ == "__main__":
    main()
