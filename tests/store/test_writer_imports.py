"""The writer's import policy (ADR 0013) holds on its real write path.

``python -m beampod.writer`` marks some optional libraries absent and defers others
(dask.dataframe, xarray, blosc2, aiohttp, bluesky-tiled-plugins' ``__init__``) until
first use. This stores a real run in a
real Tiled through the writer's sink, in a fresh interpreter with that policy, and
checks both halves: the run is stored, and none of the deferred or skipped libraries
was needed for it. A change upstream that makes the write path use one of them fails
here (the writer would still work, loading it: the memory would be back).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from beampod.store import open_catalog
from beampod.store._lean import (
    CLIENT_DEFERRED_IMPORTS as DEFERRED_IMPORTS,
)
from beampod.store._lean import (
    CLIENT_DEFERRED_SUBMODULES as DEFERRED_SUBMODULES,
)
from beampod.store._lean import (
    CLIENT_UNUSED_OPTIONAL_IMPORTS as UNUSED_OPTIONAL_IMPORTS,
)
from tests.store.conftest import Server
from tests.store.helpers import column, items, start_uid

pytestmark = pytest.mark.pod

_WRITE = """
import json, sys
from pathlib import Path
from typing import Any
from beampod.writer.__main__ import lean_imports
lean_imports()
from beampod._lazy import is_loaded
import beampod.writer._loop, beampod.store._writer, nats  # what the writer preloads
from beampod.config import PodHome, load_pod
from beampod.store import open_sink

pod = load_pod(PodHome(Path(sys.argv[1])))
batch = [tuple(item) for item in json.loads(Path(sys.argv[2]).read_text())]
result = open_sink(pod).write_batch(batch)
names = json.loads(sys.argv[3])
print(json.dumps({
    "written": result.written,
    "rejected": len(result.rejected),
    "loaded": sorted(name for name in names if is_loaded(name)),
    "pyarrow": is_loaded("pyarrow"),
    "pandas": "pandas" in sys.modules,
    "package_init": "bluesky_tiled_plugins.streaming" in sys.modules,
}))
"""


def _write_with_the_writers_policy(
    server: Server,
    docs: list[Any],
    names: list[str],
    tmp_path: Path,
    only: slice = slice(None),
) -> dict[str, Any]:
    """Store ``docs`` (``only`` those of their items) in one batch from a fresh
    interpreter with the writer's import policy; what it reports (``_WRITE``),
    ``names`` checked for being loaded."""
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([list(item) for item in items(docs)[only]]))
    home = str(server.pod.home.root)
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE, home, str(path), json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.splitlines()[-1]))


def test_writer_stores_a_run_without_its_deferred_libraries(
    tiled_server: Server, make_run: object, tmp_path: Path
) -> None:
    docs = make_run("scan", num=5)  # type: ignore[operator]
    names = [*DEFERRED_IMPORTS, *DEFERRED_SUBMODULES, *UNUSED_OPTIONAL_IMPORTS]
    out = _write_with_the_writers_policy(tiled_server, docs, names, tmp_path)
    # The run is stored, all of it ...
    assert out["rejected"] == 0 and out["written"] == len(items(docs)), out
    run = open_catalog(tiled_server.pod)[start_uid(docs)]
    assert run.metadata["stop"]["exit_status"] == "success"
    # ... by the libraries the writer keeps (the check can see a real import) ...
    assert out["pyarrow"]
    # ... without importing any it defers or skips, nor bluesky-tiled-plugins' own
    # ``__init__`` (its reading clients), nor pandas, which pyarrow would import for its
    # first table from rows (absent in a writer).
    assert out["loaded"] == [], f"the write path imported {out['loaded']}"
    assert not out["package_init"] and not out["pandas"], out


def _array_run(points: int) -> list[tuple[str, dict[str, Any]]]:
    """A run whose events carry a 4-element array (a spectrum)."""
    from event_model import compose_run

    run = compose_run(metadata={"plan_name": "spectra"})
    docs: list[tuple[str, dict[str, Any]]] = [("start", dict(run.start_doc))]
    desc = run.compose_descriptor(
        name="primary",
        data_keys={"spectrum": {"dtype": "array", "shape": [4], "source": "sim:spectrum"}},
    )
    docs.append(("descriptor", dict(desc.descriptor_doc)))
    for i in range(points):
        event = desc.compose_event(
            data={"spectrum": [float(i + j) for j in range(4)]},
            timestamps={"spectrum": 1.0 + i},
            seq_num=i + 1,
        )
        docs.append(("event", dict(event)))
    docs.append(("stop", dict(run.compose_stop())))
    return docs


@pytest.mark.parametrize("backend", ["tiled_server", "pg_server"])
def test_writer_stores_array_data_with_its_deferred_libraries(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Small arrays are stored, and read back as arrays, on either backend (in the event
    table SQLite refused them with a 500 at every retry, and PostgreSQL's read back as
    text: ``MAX_TABLE_ARRAY_SIZE``), through the writer's import policy: whatever of the
    deferred libraries they need (dask.array is deferred, not absent) loads then."""
    tiled_server: Server = request.getfixturevalue(backend)
    docs = _array_run(3)
    out = _write_with_the_writers_policy(tiled_server, docs, [], tmp_path)
    assert out["rejected"] == 0 and out["written"] == len(items(docs)), out
    assert not out["pandas"], out
    run = open_catalog(tiled_server.pod)[start_uid(docs)]
    spectra = run["primary"].read()["spectrum"]
    assert [list(map(float, row)) for row in spectra] == [
        [float(i + j) for j in range(4)] for i in range(3)
    ]


def test_a_writer_resumes_a_run_it_did_not_start_without_pandas(
    tiled_server: Server, make_run: object, tmp_path: Path
) -> None:
    """A writer that restarts mid-run reads which events of it are stored (the table's
    ``seq_num`` and ``time``) before it goes on: as Arrow, since pandas is absent in a
    writer (tiled's own ``read`` would give a DataFrame)."""
    docs = make_run("scan", num=6)  # type: ignore[operator]
    # start, descriptor and three events; then, from a new process (a restarted
    # writer), the third event again, the other three and the stop.
    out = _write_with_the_writers_policy(tiled_server, docs, [], tmp_path, slice(0, 5))
    assert out["rejected"] == 0 and out["written"] == 5, out
    out = _write_with_the_writers_policy(tiled_server, docs, [], tmp_path, slice(4, None))
    assert out["rejected"] == 0 and out["written"] == 4 and not out["pandas"], out
    run = open_catalog(tiled_server.pod)[start_uid(docs)]
    # Every event once, in order (the resumed writer knew which were stored).
    assert list(run["primary"].read()["motor"]) == list(column(docs, "motor"))
    assert run.metadata["stop"]["exit_status"] == "success"
