"""Plots without a display: the session's BestEffortCallback draws with Agg and saves
each run's figure as a PNG under the pod home; ``beampod plot`` draws a stored run.

bsui users expect ``bec.peaks`` after a scan and a plot to look at. BestEffortCallback
computes peak statistics only while it plots, so a headless session keeps plotting --
into figures nobody shows -- and writes them to ``<home>/plots/<scan_id>-<uid8>.png``
(the directory is 0700, like the rest of the pod home), printing the path.

Those figures are rendered once, when they are saved. bluesky's live plots ask their
canvas to ``draw_idle`` after every event, which a GUI coalesces on its event loop but
Agg answers by rendering the whole figure at once: ~37 ms of the session's CPU per
event, so ``RE(count([pinhole], 400))`` in ``beampod shell -c`` ran at ~26 events/s,
bound by drawing pictures nobody saw. The lines still take every point as it comes
(and the peak statistics with them); ``savefig`` draws them at the run's stop.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

from beampod.config import LoadedPod
from beampod.errors import UsageError

PLOTS_DIR = "plots"


def use_agg() -> None:
    """Pick the non-interactive backend before pyplot is imported (bluesky's
    BestEffortCallback imports it at import time)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")


def plots_dir(pod: LoadedPod) -> Path:
    path = pod.home.root / PLOTS_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def save_private_png(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as the owner's alone (0600, like the rest of the pod
    home), whatever the session's umask: `up` would otherwise find it readable by others
    and say so."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)


def plot_file_name(start: dict[str, Any], suffix: str = "") -> str:
    scan_id = start.get("scan_id")
    uid8 = str(start.get("uid", "run"))[:8]
    return f"{scan_id if scan_id is not None else 'run'}-{uid8}{suffix}.png"


def _no_draw(*args: Any, **kwargs: Any) -> None:
    """A hidden figure's ``draw_idle``: nothing to show, so nothing to draw yet."""


def saving_best_effort_callback(pod: LoadedPod, *, out: IO[str] | None = None) -> Any:
    """A BestEffortCallback that plots with Agg and, when a run stops, writes its
    figures to PNG files under ``<home>/plots`` and prints their paths."""
    use_agg()
    from bluesky.callbacks.best_effort import BestEffortCallback
    from event_model.documents import RunStart, RunStop
    from matplotlib import pyplot as plt

    class SavingBestEffortCallback(BestEffortCallback):
        def __init__(self) -> None:
            self._run_figures: list[Any] = []
            super().__init__(fig_factory=self._new_figure)

        def _new_figure(self, name: str) -> Any:
            fig = plt.figure(name, layout="constrained")
            # Not shown, so not drawn until saved (the module's docstring).
            fig.canvas.draw_idle = _no_draw  # type: ignore[method-assign]
            if fig not in self._run_figures:
                self._run_figures.append(fig)
            return fig

        def start(self, doc: RunStart) -> None:
            self._close_figures()
            super().start(doc)

        def stop(self, doc: RunStop) -> None:
            super().stop(doc)
            start: dict[str, Any] = dict(self._start_doc or {})
            try:
                for n, fig in enumerate(self._run_figures):
                    suffix = f"-{n + 1}" if n else ""
                    path = plots_dir(pod) / plot_file_name(start, suffix)
                    save_private_png(fig, path)
                    print(f"plot: {path}", file=out or sys.stdout, flush=True)
            finally:
                self._close_figures()

        def _close_figures(self) -> None:
            for fig in self._run_figures:
                plt.close(fig)
            self._run_figures.clear()

    return SavingBestEffortCallback()


# -- beampod plot: a stored run ------------------------------------------------------------


def default_columns(run: Any, stream: str = "primary") -> tuple[str, str]:
    """The run's hinted motor (x) and first hinted detector field (y)."""
    start = run.metadata.get("start") or {}
    x = None
    dims = (start.get("hints") or {}).get("dimensions") or []
    if dims and dims[0] and dims[0][0]:
        x = dims[0][0][0]
    if x is None:
        motors = start.get("motors") or []
        x = motors[0] if motors else "time"
    y = None
    hints = run[stream].metadata.get("hints") or {}
    for device in start.get("detectors") or []:
        fields = (hints.get(device) or {}).get("fields") or []
        if fields:
            y = fields[0]
            break
    if y is None:
        raise UsageError("the run has no hinted detector field: name the Y column")
    return str(x), str(y)


def plot_run(run: Any, x: str | None, y: str | None, path: Path) -> Path:
    """Write a PNG of ``y`` against ``x`` from the run's primary stream."""
    use_agg()
    from matplotlib import pyplot as plt

    if x is None or y is None:
        dx, dy = default_columns(run)
        x, y = x or dx, y or dy
    ds = run["primary"].read()
    columns = sorted({*map(str, ds.data_vars), *map(str, ds.coords)})
    for name in (x, y):
        if name not in columns:
            raise UsageError(f"the run has no column {name!r}; it has: {', '.join(columns)}")
    start = run.metadata.get("start") or {}
    fig, ax = plt.subplots(layout="constrained")
    try:
        ax.plot(ds[x].values, ds[y].values, "o-")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(
            f"scan {start.get('scan_id')} ({str(start.get('uid', ''))[:8]}) "
            f"{start.get('plan_name', '')}"
        )
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
