"""The pod's store with the clients people use: tiled's ``from_uri(api_key=...)``,
``run.documents()``, and the Tiled web UI in a browser opened with ``?api_key=``."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from beampod.config import PodHome, init_pod, load_pod
from beampod.store import open_sink
from tests.store.conftest import Server, generate_run
from tests.store.helpers import column, items, start_subscription, start_uid

pytestmark = pytest.mark.pod


def _tiled_key_pattern() -> re.Pattern[str]:
    # The pattern tiled's client checks an API key against (it drops any other key).
    from tiled.client.context import API_KEY_AUTH_HEADER_PATTERN

    return API_KEY_AUTH_HEADER_PATTERN


def test_every_generated_key_is_one_tiled_accepts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``beampod init`` 50 times: every Tiled key of every pod passes tiled's check."""
    pattern = _tiled_key_pattern()
    for _ in range(50):
        home = PodHome(tmp_path_factory.mktemp("keys"))
        init_pod(home, free_ports=True)
        secrets = load_pod(home).secrets
        for name in ("reader", "writer", "admin"):
            key = getattr(secrets, f"tiled_{name}_key").get_secret_value()
            assert pattern.match(f"Apikey {key}"), f"tiled_{name}_key has characters tiled drops"


@pytest.fixture(scope="module")
def stored_run(tiled_server: Server) -> list[tuple[str, dict[str, Any]]]:
    docs = generate_run("scan", num=6, scan_id=8101)
    assert not open_sink(tiled_server.pod).write_batch(items(docs)).rejected
    return docs


def test_from_uri_with_the_reader_key_reads_a_run(
    tiled_server: Server, stored_run: list[tuple[str, dict[str, Any]]]
) -> None:
    from tiled.client import from_uri

    client = from_uri(tiled_server.url, api_key=tiled_server.key("reader"))
    run = client["demo"][start_uid(stored_run)]
    ds = run["primary"].read()
    assert list(ds["det"].values) == list(column(stored_run, "det"))
    assert run.metadata["stop"]["exit_status"] == "success"


def test_run_documents_gives_back_what_was_emitted(
    tiled_server: Server, stored_run: list[tuple[str, dict[str, Any]]]
) -> None:
    from tiled.client import from_uri

    client = from_uri(tiled_server.url, api_key=tiled_server.key("reader"))
    run = client["demo"][start_uid(stored_run)]
    got = list(run.documents())
    names = [name for name, _ in got]
    assert names == [name for name, _ in stored_run]
    assert names.count("event") == 6
    assert got[0][1]["uid"] == start_uid(stored_run)
    emitted = [d["data"]["det"] for n, d in stored_run if n == "event"]
    assert [d["data"]["det"] for n, d in got if n == "event"] == pytest.approx(emitted)
    assert got[-1][1]["exit_status"] == "success"


def _tiled_client(server: Server) -> Any:
    from tiled.client import from_uri

    return from_uri(server.url, api_key=server.key("reader"))["demo"]


def _pod_client(server: Server) -> Any:
    """What the pod's own clients use (``db``, ``beampod runs``): ``store.connect``."""
    from beampod.store._client import connect

    return connect(f"{server.url}/api/v1/metadata/demo", server.key("reader"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make_client", [_tiled_client, _pod_client], ids=["tiled", "pod"])
def test_a_live_subscriber_sees_a_run_s_stream_made_and_the_run_closed(
    tiled_server: Server, make_client: Any
) -> None:
    """tiled's live subscription (``run.subscribe()``, a websocket through the gate with
    the reader key) to a run the writer's sink is storing: the stream the sink then
    makes is announced, and the run's close after its stop (the sink's own thread)
    ends the subscription."""
    import threading

    docs = generate_run("count", num=3, scan_id=8102)
    sink = open_sink(tiled_server.pod)
    assert not sink.write_batch(items(docs[:1])).rejected  # the run's start alone
    sub = make_client(tiled_server)[start_uid(docs)].subscribe()
    created: list[str] = []
    closed = threading.Event()

    # The subscription's registries hold weak references: these two must outlive it.
    def on_child(update: Any) -> None:
        created.append(update.key)

    def on_closed(_: Any) -> None:
        closed.set()

    sub.child_created.add_callback(on_child)
    sub.stream_closed.add_callback(on_closed)
    start_subscription(sub)
    try:
        assert not sink.write_batch(items(docs[1:])).rejected
        assert closed.wait(60), f"no end of the run within 60 s; announced: {created}"
    finally:
        sub.disconnect()
    assert created == ["primary"]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "script" and d.get("src"):
            self.urls.append(str(d["src"]))
        elif tag == "link" and d.get("rel") == "stylesheet" and d.get("href"):
            self.urls.append(str(d["href"]))


def test_web_ui_opened_with_the_reader_key_loads_its_assets(tiled_server: Server) -> None:
    url, key = tiled_server.url, tiled_server.key("reader")
    with httpx.Client(base_url=url, trust_env=False) as browser:
        page = browser.get("/ui/", params={"api_key": key})
        assert page.status_code == 200, page.text
        mine = [c for c in page.headers.get_list("set-cookie") if c.startswith("tiled_api_key=")]
        assert len(mine) == 1, page.headers
        cookie = mine[0]
        assert cookie.startswith(f"tiled_api_key={key};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        parser = _Assets()
        parser.feed(page.text)
        assert parser.urls, page.text
        jar = {"tiled_api_key": browser.cookies["tiled_api_key"]}
    assert jar == {"tiled_api_key": key}
    # A fresh "browser" with nothing but the cookie: what the page's later requests are.
    with httpx.Client(base_url=url, trust_env=False, cookies=jar) as browser:
        for asset in parser.urls:
            got = browser.get(asset if asset.startswith("/") else f"/ui/{asset}")
            assert got.status_code == 200, asset
            assert got.content, asset
            assert not [c for c in got.headers.get_list("set-cookie") if "tiled_api_key" in c]
        api = browser.get("/api/v1/search/demo")
        assert api.status_code == 200
    # Without the cookie the same asset is refused: the cookie is what authenticates.
    assert httpx.get(f"{url}{parser.urls[0]}", trust_env=False).status_code == 401
    # A wrong key sets no cookie.
    bad = httpx.get(f"{url}/ui/", params={"api_key": "0" * 64}, trust_env=False)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers


def test_reader_cookie_stays_read_only(tiled_server: Server) -> None:
    jar = {"tiled_api_key": tiled_server.key("reader")}
    got = httpx.post(
        f"{tiled_server.url}/api/v1/metadata/",
        json={"structure_family": "container", "metadata": {}, "specs": [], "data_sources": []},
        cookies=jar,
        trust_env=False,
    )
    assert got.status_code == 403


_GATE_AS_ANOTHER_USER = """
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for line in sys.argv[1:]:
    method, url = line.split(" ", 1)
    body = b"{}" if method == "POST" else None
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        code = opener.open(req, timeout=30).status
    except urllib.error.HTTPError as exc:
        code = exc.code
    print(code)
"""


def test_another_local_user_with_a_key_in_the_query_gets_only_its_rights(
    tiled_server: Server,
) -> None:
    """Another local user (``nobody``) naming the key in the query, its name written
    plainly or percent-encoded: nothing without a valid key; the reader key reads and
    does not write, however its name is written."""
    from tests.queue.conftest import as_nobody

    base = f"{tiled_server.url}/api/v1/metadata/demo"
    reader = tiled_server.key("reader")
    calls = [
        f"GET {base}",
        f"GET {base}?api%5Fkey=guess",
        f"GET {base}?api_key={reader}",
        f"GET {base}?%61pi_key={reader}",
        f"POST {base}?api%5Fkey={reader}",
    ]
    out = as_nobody(_GATE_AS_ANOTHER_USER, *calls)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["401", "401", "200", "200", "403"]


def test_pod_clients_keep_no_cookies() -> None:
    """A client that answers every response with a cookie gets none back: the jar
    stays empty and no request carries a ``Cookie`` header."""
    from beampod.store._client import keep_no_cookies

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "tiled_csrf_token=t; Path=/"})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://t") as http:
        http.get("/a")
        http.get("/a")  # httpx's own behaviour: the cookie is kept and sent back
        assert len(http.cookies) == 1
        keep_no_cookies(http)
        for _ in range(3):
            http.get("/a")
        assert len(http.cookies) == 0
    assert seen == [None, "tiled_csrf_token=t", None, None, None]


def test_connected_tiled_clients_keep_no_cookies(tiled_server: Server) -> None:
    from beampod.store._client import connect

    demo = connect(f"{tiled_server.url}/api/v1/metadata/demo", tiled_server.key("writer"))
    http = demo.context.http_client
    http.cookies.extract_cookies(
        httpx.Response(
            200,
            headers={"Set-Cookie": "tiled_csrf_token=t; Path=/"},
            request=httpx.Request("GET", tiled_server.url),
        )
    )
    assert len(http.cookies) == 0
    node = demo.create_container("cookieless", metadata={"n": 1})
    try:
        read = http.get(f"{tiled_server.url}/api/v1/metadata/demo/cookieless")
        assert read.json()["data"]["attributes"]["metadata"] == {"n": 1}
        assert "cookie" not in read.request.headers
        assert len(http.cookies) == 0
    finally:
        node.delete(recursive=True)
