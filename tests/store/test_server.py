"""The Tiled server as the pod runs it: auth model, containers, service specs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from beampod.services._svc_tiled import tiled_specs
from tests.store.conftest import EXTRA_INSTRUMENT, Server

pytestmark = pytest.mark.pod

NEW_CONTAINER = {
    "data": {"structure_family": "container", "metadata": {}, "specs": [], "data_sources": []},
}


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Apikey {key}"}


def _create(
    url: str, headers: dict[str, str], params: dict[str, str] | None = None, key: str | None = None
) -> httpx.Response:
    body = {**NEW_CONTAINER["data"], "id": key} if key else NEW_CONTAINER["data"]
    # Scratch containers go at the root, not into an instrument catalog.
    return httpx.post(
        f"{url}/api/v1/metadata/", json=body, headers=headers, params=params, trust_env=False
    )


def test_no_anonymous_access(tiled_server: Server) -> None:
    url = tiled_server.url
    assert httpx.get(f"{url}/api/v1/search/", trust_env=False).status_code == 401
    assert (
        httpx.get(
            f"{url}/api/v1/metadata/demo", headers=_h("not-a-key"), trust_env=False
        ).status_code
        == 401
    )
    assert _create(url, {}).status_code == 401
    # Liveness stays open for supervisors and load balancers.
    assert httpx.get(f"{url}/healthz", trust_env=False).status_code == 200


def test_reader_key_cannot_write(tiled_server: Server) -> None:
    url, reader = tiled_server.url, tiled_server.key("reader")
    assert (
        httpx.get(f"{url}/api/v1/search/", headers=_h(reader), trust_env=False).status_code == 200
    )
    r = _create(url, _h(reader))
    assert r.status_code in (401, 403), r.text
    # Also via the query-string form of the key, and with other write methods.
    assert _create(url, {}, params={"api_key": reader}).status_code in (401, 403)
    for method in ("PUT", "PATCH", "DELETE"):
        resp = httpx.request(
            method, f"{url}/api/v1/metadata/demo", headers=_h(reader), json={}, trust_env=False
        )
        assert resp.status_code in (401, 403), method


def test_writer_and_admin_keys_can_write(tiled_server: Server) -> None:
    url = tiled_server.url
    for which in ("writer", "admin"):
        r = _create(url, _h(tiled_server.key(which)))
        assert r.status_code == 200, r.text
    r = _create(url, {}, params={"api_key": tiled_server.key("writer")})
    assert r.status_code == 200, r.text


def test_one_catalog_container_per_instrument(tiled_server: Server) -> None:
    from beampod.store._client import connect

    root = connect(tiled_server.url, tiled_server.key("reader"))
    for name in tiled_server.pod.config.instruments:
        node = root[name]
        assert type(node).__name__ == "CatalogOfBlueskyRuns"
        assert [(s.name, s.version) for s in node.specs] == [("CatalogOfBlueskyRuns", "3.0")]
    assert set(root) >= {"demo", EXTRA_INSTRUMENT}


def test_service_spec_probe_is_ready(tiled_server: Server) -> None:
    (spec,) = tiled_specs(tiled_server.pod)  # sqlite: no postgres service
    assert spec.name == "tiled"
    assert "--home" in spec.argv
    secrets = [tiled_server.key(k) for k in ("reader", "writer", "admin")]
    assert not any(s in " ".join(spec.argv) for s in secrets)  # never in argv
    assert asyncio.run(spec.probe.ready())


def test_keys_never_logged(tiled_server: Server) -> None:
    # Exercise the server with keys in headers and query strings first.
    _create(tiled_server.url, {}, params={"api_key": tiled_server.key("reader")})
    log = tiled_server.log.read_text(errors="replace")
    for which in ("reader", "writer", "admin"):
        assert tiled_server.key(which) not in log
