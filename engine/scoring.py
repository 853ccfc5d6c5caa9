"""Score the eval pass's predict.csv as the original whose config runs: SFMViT's sweep or ACAR-Net's run."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from common.atomic import write_text_atomic
from config import Config
from engine.logs import ScalarWriter, TabLogger
from engine.threads import torch_threads_kept
from evaluation import DEFAULT_CAPACITY, run_evaluation
from evaluation.plot import save_plot
from evaluation.report import EvaluationResult, format_summary, write_cap_records

logger = logging.getLogger(__name__)

SFMVIT_SWEEP = "sfmvit_sweep"
ACAR_SINGLE = "acar_single"


@dataclass(frozen=True)
class MapProtocol:
    """How ``main.py`` scores a predict.csv.

    Attributes:
        rule: ``'sfmvit_sweep'`` (config with ``cap_min``/``cap_max``) or ``'acar_single'``.
        capacities: first and last K of the sweep, both included; ``(50, 50)`` for the single run.
        exclusions: the exclusions csv applied, or None.
        ties: the evaluator's order of equal scores, ``'original'`` or ``'stable'``.
    """

    rule: str
    capacities: tuple[int, int]
    exclusions: str | None
    ties: str

    @property
    def sweep(self) -> bool:
        """True for SFMViT's capacity sweep, False for ACAR-Net's single run."""
        return self.rule == SFMVIT_SWEEP


def map_protocol(cfg: Config) -> MapProtocol | None:
    """The scoring rule of ``cfg``, following the original whose config it is; None without ``val.eval_mAP``.

    The run plan (``engine.plan.make_plan``) calls it once; ``score_epoch`` takes its result.

    - ``cap_min``/``cap_max`` given (SFMViT): a sweep over K = cap_min..cap_max - 1 without exclusions,
      with the config's label map and ground truth (docs/numerics.md §7, quirk 9).
      ``val.eval_mAP.include_cap_max`` and ``use_exclusions_in_sweep`` opt in to the inclusive range
      and to the exclusions.
    - Otherwise (ACAR-Net): one evaluation at capacity 50 with the config's exclusions.
    """
    spec = cfg.val.eval_mAP
    if spec is None:
        return None
    if cfg.cap_min is not None and cfg.cap_max is not None:
        last = cfg.cap_max if spec.include_cap_max else cfg.cap_max - 1
        exclusions = spec.exclusions if spec.use_exclusions_in_sweep else None
        return MapProtocol(SFMVIT_SWEEP, (cfg.cap_min, last), exclusions, spec.ties)
    # ACAR-Net's calc_mAP.py keeps 50 detections per keyframe, the evaluator's default capacity.
    return MapProtocol(ACAR_SINGLE, (DEFAULT_CAPACITY, DEFAULT_CAPACITY), spec.exclusions, spec.ties)


def describe_boxes(annotation_path: str | Path, elements: list[dict]) -> str:
    """What an evaluation's boxes are, for its plot title and log line: kind, file and layout.

    Proposal pkls (detector boxes) carry ``label [0]`` and ``person_id [0]`` on every box, or the
    detector's ``score``; ground-truth pkls label their boxes. A per-row file (the original's layout)
    repeats a keyframe once per csv row; a merged one has one element per keyframe.

    Args:
        annotation_path: the val pkl (``val.annotation_path``).
        elements: its elements.

    Returns:
        e.g. ``"detector boxes of cw_test_yolov8.pkl (per-row file: 4455 elements for 1182 keyframes)"``.
    """
    entries = [entry for element in elements for entry in element.get("labels", [])]
    detector = bool(entries) and all(
        "score" in entry or (list(entry.get("label", [])) == [0] and list(entry.get("person_id", [])) == [0])
        for entry in entries)
    keyframes = len({(element["video"], element["time"]) for element in elements})
    layout = ("merged file: one element per keyframe" if keyframes == len(elements)
              else f"per-row file: {len(elements)} elements for {keyframes} keyframes")
    kind = "detector boxes" if detector else "ground-truth boxes"
    return f"{kind} of {Path(annotation_path).name} ({layout})"


def cap_records_path(result_path: str | Path, epoch: int) -> Path:
    """The original's sweep record file, ``cap_mAP_records_multi{epoch}.txt``."""
    return Path(result_path) / f"cap_mAP_records_multi{epoch}.txt"


def score_epoch(cfg: Config, protocol: MapProtocol | None, predict_path: Path, epoch: int, writer: ScalarWriter,
                step: int, val_loss: float | None = None, boxes: str | None = None) -> dict:
    """Evaluate ``predict_path`` against ``val.eval_mAP`` (rank 0 only) and record the result.

    The rule is ``protocol``, the run plan's ``map_protocol(cfg)`` (None: no mAP score). A sweep
    writes ``cap_mAP_records_multi{epoch}.txt`` with the original's lines, replaced atomically
    (docs/numerics.md quirk 26). Every run writes
    ``eval_epoch{epoch}.json`` (the evaluator's result, its ``counts`` with ``gt_rows_excluded`` and
    ``detection_rows_excluded``, and a ``protocol`` block), ``map_epoch{epoch}.png``, a row of
    ``val.log`` and the TensorBoard scalar ``val/mAP``. A ``val_loss`` (``val.with_label``) goes to
    ``val.log``'s ``loss`` column and the scalar ``val/loss``, with or without ``eval_mAP``. The
    scalars are written at ``step``, the global training step of the weights evaluated
    (``engine.context.global_step``), the x-axis of the training scalars too. ``boxes``
    (``describe_boxes``) titles the plot and the log line.

    Returns:
        The figures for the run summary (empty when the config has no ``val.eval_mAP``).
    """
    result_path = Path(cfg.result_path)
    row: dict[str, object] = {"epoch": epoch}
    if val_loss is not None:
        row["loss"] = val_loss
        writer.add_scalar("val/loss", val_loss, step)
    figures = _score_map(cfg, protocol, predict_path, epoch, boxes) if protocol is not None else {}
    if figures:
        row["mAP"] = figures["mAP"]
        writer.add_scalar("val/mAP", figures["mAP"], step)
    if len(row) > 1:
        # Columns follow the config (mAP when it has eval_mAP, loss with with_label), so they stay
        # the same for every epoch of a run.
        val_log = TabLogger(result_path / "val.log", [c for c in ("epoch", "mAP", "loss") if c in row])
        val_log.log(row)
        val_log.close()
    writer.flush()
    return figures


def _evaluate(cfg: Config, protocol: MapProtocol, predict_path: Path) -> EvaluationResult:
    spec = cfg.val.eval_mAP
    if protocol.sweep:
        return run_evaluation(spec.labelmap, spec.groundtruth, predict_path, protocol.exclusions,
                              cap_range=protocol.capacities, ties=protocol.ties)
    return run_evaluation(spec.labelmap, spec.groundtruth, predict_path, protocol.exclusions,
                          capacity=protocol.capacities[0], ties=protocol.ties)


def _score_map(cfg: Config, protocol: MapProtocol, predict_path: Path, epoch: int, boxes: str | None) -> dict:
    result_path = Path(cfg.result_path)
    with torch_threads_kept():
        result = _evaluate(cfg, protocol, predict_path)
    counts = result.counts
    figures: dict = {"mAP": float(result.mAP), "protocol": protocol.rule,
                     "gt_rows_excluded": int(counts.get("gt_rows_excluded", 0)),
                     "detection_rows_excluded": int(counts.get("detection_rows_excluded", 0))}
    if result.sweep is not None:
        records = cap_records_path(result_path, epoch)
        write_cap_records(records, result.sweep)
        figures.update(best_mAP=float(result.sweep.best_mAP), best_capacity=int(result.sweep.best_capacity),
                       cap_records=str(records))
    json_path = result_path / f"eval_epoch{epoch}.json"
    plot_path = result_path / f"map_epoch{epoch}.png"
    payload = {**result.to_json(), "protocol": asdict(protocol)}
    write_text_atomic(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    subject = f"{predict_path.name}: {boxes or 'boxes of ' + Path(cfg.val.annotation_path).name}"
    save_plot(plot_path, result, title=subject)
    figures.update(eval_json=str(json_path), plot=str(plot_path))
    low, high = protocol.capacities
    rule = f"SFMViT sweep K = {low}..{high}" if protocol.sweep else f"ACAR-Net single run at capacity {low}"
    logger.info("epoch %d evaluation of %s (%s, %s ties; exclusions %s: %d ground-truth and %d detection rows "
                "removed):\n%s", epoch, subject, rule, protocol.ties, protocol.exclusions or "none",
                figures["gt_rows_excluded"], figures["detection_rows_excluded"], format_summary(result))
    return figures
