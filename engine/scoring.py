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


def score_epoch(cfg: Config, predict_path: Path, epoch: int, writer) -> dict:
    """Evaluate ``predict_path`` against ``val.eval_mAP`` (rank 0 only) and record the result.

    With ``cap_min``/``cap_max`` the capacity sweep runs over ``cap_min..cap_max`` INCLUSIVE (the
    original's ``range`` left ``cap_max`` out, quirk 9) and, unlike the original, uses the
    configured exclusions and label map instead of hard-coded paths. Without them a single
    evaluation at the default capacity (50) runs.

    Writes ``cap_mAP_records{epoch}.txt`` (sweeps), ``eval_epoch{epoch}.json``, ``map_epoch{epoch}.png``,
    a row of ``val.log`` and the TensorBoard scalar ``val/mAP``.

    Returns:
        The figures for the run summary (empty when the config has no ``val.eval_mAP``).
    """
    spec = cfg.val.eval_mAP
    if spec is None:
        return {}
    result_path = Path(cfg.result_path)
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
    writer.flush()
    val_log = TabLogger(result_path / "val.log", ["epoch", "mAP"])
    val_log.log({"epoch": epoch, "mAP": figures["mAP"]})
    val_log.close()
    logger.info("epoch %d evaluation:\n%s", epoch, format_summary(result))
    return figures
