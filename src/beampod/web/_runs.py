"""Runs from the pod's Tiled store, read with the reader key (blocking: call these in a
worker thread). Tables are the scalar event columns of a stream (Tiled's ``internal``
event table): what a plot or a CSV of a run shows."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # tiled's client is imported when the first run is read, not at start
    from beampod.store import Catalog, RunSummary

MAX_RUNS = 200


@dataclass(frozen=True)
class RunDetail:
    uid: str
    start: dict[str, Any]
    stop: dict[str, Any] | None
    streams: dict[str, list[str]]  # stream -> scalar columns


def recent_runs(catalog: Catalog, limit: int = 30) -> list[RunSummary]:
    return catalog.summaries(max(1, min(limit, MAX_RUNS)))


def run_detail(catalog: Catalog, uid: str) -> RunDetail:
    run = catalog[uid]
    md = run.metadata
    base = run.base if hasattr(run, "base") else run
    streams = {name: _columns(base[name]) for name in base}
    return RunDetail(
        uid=str((md.get("start") or {}).get("uid", uid)),
        start=dict(md.get("start") or {}),
        stop=dict(md["stop"]) if md.get("stop") else None,
        streams=streams,
    )


def _internal(stream: Any) -> Any:
    node = stream.base if hasattr(stream, "base") else stream
    return node["internal"] if "internal" in node else None  # noqa: SIM401 (tiled node)


def _columns(stream: Any) -> list[str]:
    table = _internal(stream)
    if table is None:
        return []
    return [str(c) for c in table.columns]


def stream_table(catalog: Catalog, uid: str, stream: str) -> dict[str, list[Any]]:
    """Column -> values (JSON-safe: NaN/inf become None), ordered by ``seq_num``."""
    run = catalog[uid]
    base = run.base if hasattr(run, "base") else run
    if stream not in base:
        raise KeyError(f"run {uid[:8]} has no stream {stream!r} (has: {', '.join(base)})")
    table = _internal(base[stream])
    if table is None:
        return {}
    df = table.read()
    if "seq_num" in df.columns:
        df = df.sort_values("seq_num")
    return {str(c): [_json_safe(v) for v in df[c].tolist()] for c in df.columns}


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return str(v)


def table_csv(table: dict[str, list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    names = list(table)
    writer.writerow(names)
    rows = len(next(iter(table.values()))) if table else 0
    for i in range(rows):
        writer.writerow(["" if table[n][i] is None else table[n][i] for n in names])
    return out.getvalue()


def default_axes(start: dict[str, Any], columns: list[str]) -> tuple[str, str]:
    """The x and y a plot starts with: the run's first motor and first hinted detector
    field when they are columns, else ``seq_num`` and the first data column."""
    data = [c for c in columns if c not in ("seq_num", "time")]
    motors = [m for m in start.get("motors") or [] if m in columns]
    x = motors[0] if motors else ("seq_num" if "seq_num" in columns else (data or [""])[0])
    candidates = [c for c in data if c != x and not c.endswith("_setpoint")]
    detectors = [str(d) for d in start.get("detectors") or []]
    for det in detectors:
        for c in candidates:
            if c == det or c.startswith(det + "_"):
                return x, c
    return x, (candidates or data or [""])[0]
