"""AVA frame-mAP evaluation (official protocol) with a one-pass capacity sweep; numpy only, no torch.

Use ``run_evaluation`` for files, ``evaluate_predictions`` / ``sweep_capacity`` for data in memory.
"""
from __future__ import annotations

from evaluation.api import DEFAULT_CAPACITY, evaluate_predictions, load_inputs, run_evaluation, sweep_capacity
from evaluation.plot import save_plot
from evaluation.report import (
    EvaluationResult,
    SweepSummary,
    cap_records_text,
    format_summary,
    write_cap_records,
    write_json,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "EvaluationResult",
    "SweepSummary",
    "cap_records_text",
    "evaluate_predictions",
    "format_summary",
    "load_inputs",
    "run_evaluation",
    "save_plot",
    "sweep_capacity",
    "write_cap_records",
    "write_json",
]
