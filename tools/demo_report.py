"""The demo's one-screen summary: dataset counts, stage timings, the headline mAPs, then where the outputs are.

Figures are rounded for people here (mAP, recall and AP as percentages, durations in seconds or
minutes); ``summary.json`` keeps them at full precision. Every path printed is absolute, as in the logs.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from datasets.synthetic import load_cw_classes
from tools.demo_record import HEADLINE_RULE, ORIGINAL_RULE, format_seconds, is_fraction

# Width of the summary's lines; longer stage figures wrap at a ", " (never inside a figure).
LINE_WIDTH = 100
# Stage figures the table leaves out: shown in the other columns or in the results below.
_NOT_IN_TABLE = {"seed", "preset", "seconds", "skipped", "ties"}


def format_summary(result: dict, summary_path: Path) -> str:
    """The summary: dataset table, stage table, results (headline first) and output paths.

    Args:
        result: ``run_demo``'s return value (``stages``, ``timings_s``, ``this_run_s``).
        summary_path: the summary.json it was written to.
    """
    stages = result["stages"]
    lines = _dataset_lines(stages.get("generate"))
    lines += stage_table(stages, result["timings_s"], result.get("this_run_s", {}))
    lines += result_lines(stages)
    lines += output_lines(stages)
    lines.append(f"summary: {summary_path}")
    return "\n".join(lines)


def _dataset_lines(dataset: dict | None) -> list[str]:
    if not dataset:
        return []
    splits = dataset["splits"]
    lines = [f"Synthetic Chaotic World: {dataset['videos']} videos, {dataset['keyframes']} keyframes, "
             f"{dataset['persons']} persons, {dataset['rows']} csv rows (seed {dataset['seed']})",
             f"  {'split':<8}{'videos':>8}{'keyframes':>11}{'persons':>9}{'multi-label':>13}{'excluded':>10}"]
    for split, counts in splits.items():
        lines.append(f"  {split:<8}{counts['videos']:>8}{counts['keyframes']:>11}{counts['persons']:>9}"
                     f"{counts['multi_label_persons']:>13}{counts['excluded_keyframes']:>10}")
    ids = {name: class_id for class_id, name in load_cw_classes().items()}
    lines.append(f"  {'id':>4}  {'class':<20}{'train':>7}{'val':>7}")
    for name in sorted(dataset["label_counts"], key=lambda n: ids.get(n, 0)):
        per_split = [splits[split]["label_counts"].get(name, 0) for split in splits]
        lines.append(f"  {ids.get(name, 0):>4}  {name:<20}" + "".join(f"{count:>7}" for count in per_split))
    return lines


def format_figure(key: str, value: object) -> str:
    """``key=value`` for people: mAPs as percentages to 2 decimals, recall and AP to 1, other floats to 4 digits."""
    if isinstance(value, float) and is_fraction(key):
        return f"{key}={100 * value:.{2 if key.startswith('map_') else 1}f}%"
    if isinstance(value, float):
        return f"{key}={value:.4g}"
    return f"{key}={value}"


def stage_table(stages: dict[str, dict], timings: dict[str, float | None], this_run: dict[str, float]) -> list[str]:
    """One row per stage on record: the time that produced its outputs, what this run did, its figures.

    ``this run`` is ``ran``, ``skipped`` (outputs of an earlier run reused) or ``-`` (not asked
    for, outputs from an earlier run). Figures wrap onto further lines rather than being cut.
    """
    width = max([16, *(len(name) + 1 for name in stages)])
    head = f"  {'stage':<{width}}{'time':>10}  {'this run':<10}"
    lines = [head + "figures"]
    indent = " " * len(head)
    for name, figures in stages.items():
        seconds = timings.get(name)
        done = "-" if name not in this_run else "skipped" if figures.get("skipped") is True else "ran"
        shown = ", ".join(format_figure(key, value) for key, value in figures.items()
                          if isinstance(value, (bool, int, float, str)) and key not in _NOT_IN_TABLE
                          and not (isinstance(value, str) and "/" in value))
        row = f"  {name:<{width}}{'?' if seconds is None else format_seconds(seconds):>10}  {done:<10}"
        wrapped = textwrap.wrap(shown, width=max(40, LINE_WIDTH - len(indent)), break_long_words=False,
                                break_on_hyphens=False) or [""]
        lines.append(row + wrapped[0])
        lines += [indent + part for part in wrapped[1:]]
    known = [seconds for seconds in timings.values() if seconds is not None]
    skipped = [name for name in this_run if stages.get(name, {}).get("skipped") is True]
    lines.append(f"  {'total':<{width}}{format_seconds(sum(known)):>10}  this run took "
                 f"{format_seconds(sum(this_run.values()))}, {len(skipped)} of {len(this_run)} stage(s) skipped")
    return lines


def _score(figures: dict | None, key: str) -> str:
    return "not run" if not figures or figures.get(key) is None else f"{100 * figures[key]:.2f}%"


def _band(band: list[float] | None) -> str:
    return "?" if not band else f"{100 * band[0]:.2f}..{100 * band[1]:.2f}%"


def result_lines(stages: dict[str, dict]) -> list[str]:
    """The headline first, then the original's protocol, then the detector's quality, labelled alike everywhere."""
    lines = []
    action, boxes = stages.get("action"), stages.get("action_detector_boxes")
    if action or boxes:
        sweep = (action or boxes).get("sweep")
        sweep_text = f"sweep K = {sweep[0]}..{sweep[1]}" if sweep else "the config's sweep"
        lines += [f"headline: val frame-mAP@0.5 of the action model, {HEADLINE_RULE}:",
                  f"  ground-truth boxes {_score(action, 'map_gt_boxes')}   |   "
                  f"detector boxes {_score(boxes, 'map_detector_boxes')}",
                  f"  ({sweep_text}, no exclusions: best K {(action or {}).get('best_capacity_gt', '-')} and "
                  f"{(boxes or {}).get('best_capacity_detector', '-')}; tie band "
                  f"{_band((action or {}).get('tie_band'))} and {_band((boxes or {}).get('tie_band'))})"]
    protocols = stages.get("protocols")
    if protocols:
        gt, det = (protocols.get(source, {}).get("original") or {} for source in ("gt", "detector"))
        lines += [f"the original's protocol: same model, {ORIGINAL_RULE}, same sweep:",
                  f"  ground-truth boxes {_score(gt, 'mAP')}   |   detector boxes {_score(det, 'mAP')}",
                  f"  (best K {gt.get('best_capacity', '-')} and {det.get('best_capacity', '-')}; tie band "
                  f"{_band([gt['tie_band_low'], gt['tie_band_high']] if gt else None)} and "
                  f"{_band([det['tie_band_low'], det['tie_band_high']] if det else None)})"]
    if lines:
        lines.append("  (tie band: the lowest and highest mAP any order of equal scores gives)")
    detector = stages.get("detector")
    if detector:
        lines.append(f"person detector: YOLOv8n from scratch, {detector['epochs']} epochs at {detector['imgsz']} px, "
                     f"confidence >= {detector['conf']}:")
        lines.append(f"  val recall@0.5 {100 * detector['recall']:.1f}%, precision {100 * detector['precision']:.1f}%, "
                     f"AP@0.5 {100 * detector['ap']:.1f}%")
    return lines


def output_lines(stages: dict[str, dict]) -> list[str]:
    """Where the outputs are, one path a line, each labelled by boxes and file layout as in the results."""
    rows: list[tuple[str, str | None]] = []
    action, boxes, detector = stages.get("action"), stages.get("action_detector_boxes"), stages.get("detector")
    protocols = stages.get("protocols") or {}
    if action:
        rows += [("action model", action.get("checkpoint")), ("  TensorBoard logs", action.get("tensorboard")),
                 ("  predictions, ground-truth boxes, merged files", action.get("predict_csv")),
                 ("  mAP plot, ground-truth boxes, merged files", action.get("plot"))]
    if boxes:
        rows += [("  predictions, detector boxes, merged files", boxes.get("predict_csv")),
                 ("  mAP plot, detector boxes, merged files", boxes.get("plot"))]
    for source, label in (("gt", "ground-truth boxes"), ("detector", "detector boxes")):
        rows.append((f"  mAP plot, {label}, per-row files", (protocols.get(source) or {}).get("per_row_plot")))
    if detector:
        rows += [("person detector weights", detector.get("weights")),
                 ("  val proposals", detector.get("proposals")),
                 ("  precision-recall plot", detector.get("quality_plot"))]
    video = stages.get("video_demo")
    if video:
        rows.append(("annotated video", f"{video['video']} ({video['frames']} frames {video['size']}, "
                                        f"{video['boxes']} boxes)"))
    rows = [(label, path) for label, path in rows if path]
    if not rows:
        return []
    width = max(len(label) for label, _ in rows) + 2
    return ["outputs:"] + [f"  {label:<{width}}{path}" for label, path in rows]
