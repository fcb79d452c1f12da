"""A browser-like HTTP client of a running console: cookies, the login form, CSRF."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from beampod.config import LoadedPod
from beampod.web import web_url


class WebUser:
    def __init__(self, pod: LoadedPod) -> None:
        self.http = httpx.Client(
            base_url=web_url(pod), follow_redirects=False, timeout=60.0, trust_env=False
        )
        self.csrf = ""

    def __enter__(self) -> WebUser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def login(self, key: str) -> httpx.Response:
        page = self.http.get("/login")
        token = re.search(r'id="login-csrf" value="([^"]+)"', page.text)
        assert token, page.text
        resp = self.http.post("/login", data={"csrf": token.group(1), "key": key, "next": "/"})
        assert resp.status_code == 303, resp.text
        self.refresh_csrf()
        return resp

    def refresh_csrf(self) -> None:
        found = re.search(r'name="csrf-token" content="([^"]*)"', self.http.get("/").text)
        assert found
        self.csrf = found.group(1)

    def post(self, path: str, data: dict[str, str], *, json_reply: bool = False) -> httpx.Response:
        headers = {"accept": "application/json"} if json_reply else {}
        return self.http.post(path, data={"csrf": self.csrf, **data}, headers=headers)

    def events(self, path: str, into: list[dict[str, Any]], until: Any) -> threading.Thread:
        """Read the server-sent events of ``path`` into ``into`` (in a thread) until
        ``until(message)`` is true."""
        ready = threading.Event()

        def run() -> None:
            with self.http.stream("GET", path, timeout=httpx.Timeout(120.0)) as resp:
                ready.set()
                for message in _sse(resp.iter_lines()):
                    into.append(message)
                    if until(message):
                        return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(30), f"no answer from {path}"
        return thread


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


def queue_length(user: WebUser) -> int:
    """Items in the queue, from the Queue page (``N queued``)."""
    found = re.search(r"(\d+) queued", user.http.get("/queue?partial=1").text)
    assert found
    return int(found.group(1))
