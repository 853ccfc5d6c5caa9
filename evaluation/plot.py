"""Plots of an evaluation: mAP vs capacity for sweeps and per-class AP bars (matplotlib, Agg canvas)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic import write_bytes_atomic
from evaluation.report import EvaluationResult

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not when the evaluator loads
    from matplotlib.figure import Figure


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A matplotlib Figure outside pyplot: nothing global (backend, figure registry) is touched.

    ``layout="constrained"`` makes room for a figure title (``suptitle``), which ``tight_layout``
    lets overlap the first panel's title.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def write_figure(path: str | Path, figure: Figure) -> None:
    """Lay ``figure`` out and write it as a PNG at ``path``, atomically (Figure.savefig brings its own canvas)."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


# Inches: the sweep panel's height, and each class bar's (names stay at a readable 9 pt for 50+ classes).
SWEEP_HEIGHT = 4.0
BAR_HEIGHT = 0.24
CLASS_FONT_SIZE = 9


def save_plot(path: str | Path, result: EvaluationResult, title: str | None = None) -> None:
    """Draw ``result`` (``draw_evaluation``) to a PNG at ``path``, written atomically."""
    write_figure(path, draw_evaluation(result, title))


def draw_evaluation(result: EvaluationResult, title: str | None = None) -> Figure:
    """The figure of an evaluation, sized so that every label is legible at the saved size (100 dpi).

    A sweep gets two panels (mAP vs capacity with the best K marked, per-class AP at the best K);
    a single run gets the per-class AP panel. Class APs are horizontal bars, best first, with the
    class names written horizontally beside them at 9 pt; classes without ground truth are left out.

    Args:
        result: the evaluation.
        title: what was evaluated (predict file, boxes, file layout), set above the panels; the
            panels' own titles say what each shows and under which tie rule.
    """
    classes = sum(ap is not None for ap in result.per_class.values())
    bars_height = 1.2 + BAR_HEIGHT * max(classes, 3)
    heights = ([SWEEP_HEIGHT] if result.sweep is not None else []) + [bars_height]
    figure = new_figure(11, sum(heights) + (0.5 if title else 0.0), layout="constrained")
    axes = figure.subplots(len(heights), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    if title:
        figure.suptitle(title, fontsize=12)
    if result.sweep is not None:
        _draw_sweep(axes[0], result)
    _draw_classes(axes[-1], result)
    return figure


def _draw_sweep(axis, result: EvaluationResult) -> None:
    sweep = result.sweep
    capacities = list(sweep.mAP_by_capacity)
    values = [100 * v for v in sweep.mAP_by_capacity.values()]
    if sweep.band_by_capacity is not None:
        bands = [sweep.band_by_capacity[k] for k in capacities]
        axis.fill_between(capacities, [100 * b.low for b in bands], [100 * b.high for b in bands],
                          color="tab:blue", alpha=0.18, linewidth=0,
                          label="tie band (every order of equal scores; guaranteed bounds)")
    axis.plot(capacities, values, linewidth=1.2, label=f"mAP ({result.ties} ties)")
    axis.scatter([sweep.best_capacity], [100 * sweep.best_mAP], color="tab:red", zorder=3,
                 label=f"best K = {sweep.best_capacity}: {100 * sweep.best_mAP:.2f}%")
    axis.set_xlabel("capacity K (rows kept per keyframe)")
    axis.set_ylabel("frame-mAP@0.5 (%)")
    axis.set_title(f"frame-mAP@0.5 vs capacity K = {capacities[0]}..{capacities[-1]} ({result.ties} ties)")
    axis.grid(alpha=0.3)
    axis.legend(loc="best")


def _draw_classes(axis, result: EvaluationResult) -> None:
    items = sorted(((cid, ap) for cid, ap in result.per_class.items() if ap is not None),
                   key=lambda item: (-item[1], item[0]))
    labels = [f"{result.class_names.get(cid, '')} ({cid})" for cid, _ in items]
    positions = range(len(items))
    axis.barh(positions, [100 * ap for _, ap in items], color="tab:blue", height=0.7)
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=CLASS_FONT_SIZE)
    if items:
        axis.set_ylim(len(items) - 0.5, -0.5)  # best class on top, no empty margin
    axis.set_xlim(0, 106)  # room for the value written after a bar at 100%
    axis.set_xticks(range(0, 101, 10))
    axis.set_xlabel("AP (%)")
    for position, (_, ap) in zip(positions, items):
        axis.text(100 * ap + 0.8, position, f"{100 * ap:.1f}", va="center", fontsize=CLASS_FONT_SIZE - 1)
    capacity = "unlimited" if result.capacity < 1 else result.capacity
    band = "" if result.tie_band is None else \
        f", tie band {100 * result.tie_band.low:.2f}..{100 * result.tie_band.high:.2f}%"
    axis.set_title(f"AP per class at capacity {capacity}, {len(items)} classes with ground truth "
                   f"(mAP {100 * result.mAP:.2f}%{band})")
    axis.grid(axis="x", alpha=0.3)
