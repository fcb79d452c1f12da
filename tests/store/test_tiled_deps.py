"""Tiled's cheap dependencies are awaited on the loop, not sent to a thread.

The server's process applies this to its one app (``build_store_app(only_app=True)``),
and it changes tiled's module-level ``Depends`` markers, so the app is built and
asked in a fresh interpreter: one request through the whole app (the key gate, tiled's
routes), counting FastAPI's hand-offs to its thread pool."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from beampod.store._pins import source_sha256
from beampod.store._tiled_deps import PINNED_CHEAP_DEPENDENCIES, cheap_dependencies, on_the_loop

_ASK = """
import json, sys
from pathlib import Path
import fastapi.dependencies.utils as fastapi_utils
from starlette.testclient import TestClient
from tests.store.conftest import make_pod
from beampod.store._server import build_store_app

handed = []
to_thread = fastapi_utils.run_in_threadpool

async def counting(func, *args, **kwargs):
    handed.append(getattr(func, "__qualname__", repr(func)))
    return await to_thread(func, *args, **kwargs)

fastapi_utils.run_in_threadpool = counting
pod = make_pod(Path(sys.argv[1]))
app = build_store_app(pod, only_app=sys.argv[2] == "only")
key = pod.secrets.tiled_reader_key.get_secret_value()
with TestClient(app) as client:
    handed.clear()
    answer = client.get("/api/v1/metadata/demo", headers={"Authorization": f"Apikey {key}"})
    print(json.dumps({"status": answer.status_code, "id": answer.json()["data"]["id"],
                      "handed": handed}))
"""


def test_pinned_to_the_locked_tiled() -> None:
    for name, call in cheap_dependencies().items():
        assert source_sha256(call) == PINNED_CHEAP_DEPENDENCIES[name], name


def test_on_the_loop_keeps_the_signature_fastapi_reads() -> None:
    def engine(settings: int = 3) -> int:
        return settings * 2

    inline = on_the_loop(engine)
    assert inspect.iscoroutinefunction(inline)
    assert inspect.signature(inline) == inspect.signature(engine)
    assert inline.__wrapped__ is engine  # type: ignore[attr-defined]


def _ask(tmp_path: Path, mode: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _ASK, str(tmp_path / mode), mode],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.slow
def test_the_server_s_app_answers_without_a_thread_hand_off(tmp_path: Path) -> None:
    served = _ask(tmp_path, "only")
    assert served == {"status": 200, "id": "demo", "handed": []}
    # The same request to an app built as a library builds it (tiled's own handling).
    library = _ask(tmp_path, "library")
    assert library["status"] == 200
    assert sorted(library["handed"]) == [
        "build_app.<locals>.override_get_settings",
        "get_database_engine",
        "get_root_tree",
    ]
