"""Plots of an evaluation: mAP vs capacity for sweeps and per-class AP bars (matplotlib, Agg canvas)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.report import EvaluationResult
from formats.atomic import write_bytes_atomic

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not when the evaluator loads
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure outside pyplot: nothing global (backend, figure registry) is touched."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def write_figure(path: str | Path, figure: Figure) -> None:
    """Lay ``figure`` out and write it as a PNG at ``path``, atomically (Figure.savefig brings its own canvas)."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def save_plot(path: str | Path, result: EvaluationResult) -> None:
    """Draw ``result`` to a PNG at ``path``, written atomically.

    A sweep gets two panels (mAP vs capacity with the best K marked, per-class AP at the best K);
    a single run gets the per-class AP bars. Classes without ground truth are left out of the bars.
    """
    panels = 2 if result.sweep is not None else 1
    figure = new_figure(12, 4.5 * panels)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    if result.sweep is not None:
        _draw_sweep(axes[0], result)
    _draw_classes(axes[-1], result)
    write_figure(path, figure)


def _draw_sweep(axis, result: EvaluationResult) -> None:
    sweep = result.sweep
    capacities = list(sweep.mAP_by_capacity)
    values = [100 * v for v in sweep.mAP_by_capacity.values()]
    if sweep.band_by_capacity is not None:
        bands = [sweep.band_by_capacity[k] for k in capacities]
        axis.fill_between(capacities, [100 * b.low for b in bands], [100 * b.high for b in bands],
                          color="tab:blue", alpha=0.18, linewidth=0,
                          label="tie band (every order of equal scores; guaranteed bounds)")
    axis.plot(capacities, values, linewidth=1.2, label=f"mAP (ties: {result.ties})")
    axis.scatter([sweep.best_capacity], [100 * sweep.best_mAP], color="tab:red", zorder=3,
                 label=f"best K = {sweep.best_capacity}: {100 * sweep.best_mAP:.2f}%")
    axis.set_xlabel("capacity K (rows kept per keyframe)")
    axis.set_ylabel("frame-mAP@0.5 (%)")
    axis.set_title("mAP vs capacity")
    axis.grid(alpha=0.3)
    axis.legend(loc="best")


def _draw_classes(axis, result: EvaluationResult) -> None:
    items = [(cid, ap) for cid, ap in result.per_class.items() if ap is not None]
    labels = [f"{cid} {result.class_names.get(cid, '')}"[:28] for cid, _ in items]
    axis.bar(range(len(items)), [100 * ap for _, ap in items], color="tab:blue")
    axis.set_xticks(range(len(items)))
    axis.set_xticklabels(labels, rotation=90, fontsize=6)
    axis.set_ylabel("AP (%)")
    capacity = "unlimited" if result.capacity < 1 else result.capacity
    band = "" if result.tie_band is None else \
        f", tie band {100 * result.tie_band.low:.2f}..{100 * result.tie_band.high:.2f}%"
    axis.set_title(f"per-class AP at capacity {capacity} (mAP {100 * result.mAP:.2f}%{band})")
    axis.grid(axis="y", alpha=0.3)
