"""A headless session's live plots: every point plotted, the figure rendered once, when
it is saved at the run's stop (``session/_plots.py``), not after every event."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from beampod.session._plots import saving_best_effort_callback
from tests.store.conftest import make_pod

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_headless_scan_is_drawn_once_when_saved_with_every_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bluesky import RunEngine
    from bluesky.plans import scan
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from ophyd.sim import det, motor

    from beampod.session import _plots

    pod = make_pod(tmp_path / "pod")
    out = io.StringIO()
    bec = saving_best_effort_callback(pod, out=out)
    drawn: list[str] = []  # "saving" or "live", per render of a figure
    plotted: list[int] = []
    saving = False
    draw, save = FigureCanvasAgg.draw, _plots.save_private_png

    def counting_draw(canvas: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append("saving" if saving else "live")
        # The points the figure's lines hold when it is drawn.
        plotted.extend(len(line.get_xdata()) for ax in canvas.figure.axes for line in ax.lines)
        return draw(canvas, *args, **kwargs)

    def marking_save(*args: Any) -> None:
        nonlocal saving
        saving = True
        try:
            save(*args)
        finally:
            saving = False

    monkeypatch.setattr(FigureCanvasAgg, "draw", counting_draw)
    monkeypatch.setattr(_plots, "save_private_png", marking_save)
    engine = RunEngine({}, context_managers=[])
    engine.subscribe(bec)
    points = 41
    engine(scan([det], motor, -5, 5, points))

    saved = re.findall(r"^plot: (\S+\.png)$", out.getvalue(), re.MULTILINE)
    assert len(saved) == 1, out.getvalue()
    data = Path(saved[0]).read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    # Drawn for the file alone (matplotlib's savefig renders it, twice with a
    # constrained layout), not after each event; by then its line held every point.
    assert drawn and set(drawn) == {"saving"}, drawn
    assert points in plotted, plotted
    # The peak statistics come from the points, drawn or not: ophyd's det is a
    # Gaussian of the motor's position centred at 0.
    assert abs(bec.peaks["cen"]["det"]) < 0.5
