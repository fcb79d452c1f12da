"""Table appends answered without FastAPI's dependency solving
(``store/_tiled_append_route.py``): stored as tiled's route stores them, and every
request that is not exactly such an append answered by tiled's route, errors included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from beampod.store._tiled_append_route import (
    PINNED_PATCH_PARTITION_SHA256,
    FastTableAppends,
    upstream_patch_partition_hash,
)
from tests.store.conftest import make_pod
from tests.store.helpers import ARROW, arrow_file, create_sql_table


def test_pinned_to_the_locked_tiled(tmp_path: Path) -> None:
    from tiled.config import Authentication
    from tiled.server.app import build_app

    from beampod.store._server import build_catalog

    app = build_app(
        build_catalog(make_pod(tmp_path / "pod")),
        authentication=Authentication(single_user_api_key="k" * 32),
    )
    assert upstream_patch_partition_hash(app) == PINNED_PATCH_PARTITION_SHA256, (
        "tiled's PATCH /table/partition route moved"
    )


@pytest.mark.slow
def test_appends_skip_tiled_dependencies_and_the_rest_is_tiled_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing
    import pyarrow
    from starlette.testclient import TestClient
    from tiled.structures.table import TableStructure

    from beampod.store._server import build_store_app

    solved: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(getattr(kwargs["dependant"].call, "__name__", "?"))
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    pod = make_pod(tmp_path / "pod")
    app: Any = build_store_app(pod)
    tiled_app = app._app  # inside the key gate
    assert isinstance(tiled_app.router.routes[0], FastTableAppends)
    key = pod.secrets.tiled_writer_key.get_secret_value()
    rows = pyarrow.table({"seq_num": [1, 2, 3], "x": [0.5, 1.5, 2.5]})
    body = arrow_file(rows)
    arrow = {"Authorization": f"Apikey {key}", "Content-Type": ARROW}
    url = "/api/v1/table/partition/demo/fast-appends"

    async def create_table() -> None:
        demo = await tiled_app.state.root_tree.lookup_adapter(["demo"])
        await create_sql_table(demo, "fast-appends", TableStructure.from_arrow_table(rows))

    def stored(client: Any) -> list[int]:
        answer = client.get(
            "/api/v1/table/full/demo/fast-appends",
            headers={"Authorization": f"Apikey {key}", "Accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["seq_num"])

    # Server errors answered as the server answers them (tiled's own 500 below).
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.portal is not None  # the app's loop, while the client is open
        client.portal.call(create_table)
        solved.clear()
        appended = client.patch(f"{url}?partition=0", content=body, headers=arrow)
        assert appended.status_code == 200, appended.text
        assert appended.json() is None  # tiled's answer
        assert solved == []  # answered by the route in front: no dependency solved
        assert stored(client) == [1, 2, 3]

        # Not exactly such an append: tiled's route answers, with its own errors.
        for query, status in (("partition=x", 422), ("", 422), ("partition=0&x=1", 200)):
            solved.clear()
            answer = client.patch(f"{url}?{query}", content=body, headers=arrow)
            assert answer.status_code == status, (query, answer.text)
            assert "patch_table_partition" in solved, query
        for path, status in (("demo/no-such-table", 404), ("demo", 405)):
            solved.clear()
            answer = client.patch(
                f"/api/v1/table/partition/{path}?partition=0", content=body, headers=arrow
            )
            assert answer.status_code == status, (path, answer.text)
            assert "patch_table_partition" in solved, path
        solved.clear()
        odd = client.patch(
            f"{url}?partition=0", content=b"x", headers={**arrow, "Content-Type": "a/b"}
        )
        assert odd.status_code == 500  # tiled's route: no deserializer, an unhandled error
        assert "patch_table_partition" in solved
        # Only the append with partition=0&x=1 (through tiled's route) added rows.
        assert stored(client) == [1, 2, 3, 1, 2, 3]
        # What else reads the app's routes: tiled's OpenAPI document, with tiled's own
        # append route in it.
        openapi = client.get("/openapi.json", headers={"Authorization": f"Apikey {key}"})
        assert openapi.status_code == 200
        assert "patch" in openapi.json()["paths"]["/api/v1/table/partition/{path}"]
