"""Score a predict.csv written by the eval pass: mAP with the capacity sweep, records, JSON, plot, logs."""
from __future__ import annotations

import logging
from pathlib import Path

from engine.config_schema import Config
from engine.logs import TabLogger
from evaluation import run_evaluation
from evaluation.plot import save_plot
from evaluation.report import format_summary, write_cap_records, write_json

logger = logging.getLogger(__name__)


def score_epoch(cfg: Config, predict_path: Path, epoch: int, writer, val_loss: float | None = None) -> dict:
    """Evaluate ``predict_path`` against ``val.eval_mAP`` (rank 0 only) and record the result.

    With ``cap_min``/``cap_max`` the capacity sweep runs over ``cap_min..cap_max`` INCLUSIVE (the
    original's ``range`` left ``cap_max`` out, quirk 9) and, unlike the original, uses the
    configured exclusions and label map instead of hard-coded paths. Without them a single
    evaluation at the default capacity (50) runs.

    Writes ``cap_mAP_records{epoch}.txt`` (sweeps), ``eval_epoch{epoch}.json``, ``map_epoch{epoch}.png``,
    a row of ``val.log`` and the TensorBoard scalar ``val/mAP``. A ``val_loss`` (``val.with_label``)
    goes to ``val.log``'s ``loss`` column and the scalar ``val/loss``, with or without ``eval_mAP``.

    Returns:
        The figures for the run summary (empty when the config has no ``val.eval_mAP``).
    """
    result_path = Path(cfg.result_path)
    row: dict[str, object] = {"epoch": epoch}
    if val_loss is not None:
        row["loss"] = val_loss
        writer.add_scalar("val/loss", val_loss, epoch)
    figures = _score_map(cfg, predict_path, epoch, writer, result_path)
    if figures:
        row["mAP"] = figures["mAP"]
    if len(row) > 1:
        # Columns follow the config (mAP when it has eval_mAP, loss with with_label), so they stay
        # the same for every epoch of a run.
        val_log = TabLogger(result_path / "val.log", [c for c in ("epoch", "mAP", "loss") if c in row])
        val_log.log(row)
        val_log.close()
    writer.flush()
    return figures


def _score_map(cfg: Config, predict_path: Path, epoch: int, writer, result_path: Path) -> dict:
    spec = cfg.val.eval_mAP
    if spec is None:
        return {}
    sweep = cfg.cap_min is not None and cfg.cap_max is not None
    result = run_evaluation(spec.labelmap, spec.groundtruth, predict_path, spec.exclusions,
                            cap_range=(cfg.cap_min, cfg.cap_max) if sweep else None)
    figures: dict = {"mAP": float(result.mAP)}
    if result.sweep is not None:
        records = result_path / f"cap_mAP_records{epoch}.txt"
        write_cap_records(records, result.sweep)
        figures.update(best_mAP=float(result.sweep.best_mAP), best_capacity=int(result.sweep.best_capacity),
                       cap_records=str(records))
    json_path = result_path / f"eval_epoch{epoch}.json"
    plot_path = result_path / f"map_epoch{epoch}.png"
    write_json(json_path, result)
    save_plot(plot_path, result)
    figures.update(eval_json=str(json_path), plot=str(plot_path))
    writer.add_scalar("val/mAP", figures["mAP"], epoch)
    logger.info("epoch %d evaluation:\n%s", epoch, format_summary(result))
    return figures
