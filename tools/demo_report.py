"""The demo's one-screen summary: dataset counts, stage timings, both mAPs and the protocol comparison."""
from __future__ import annotations

from pathlib import Path

from datasets.synthetic import load_cw_classes
from tools.demo_protocols import format_protocol_lines

# Characters of a stage's figures shown in the summary table (the json has them all).
FIGURES_WIDTH = 90


def format_summary(result: dict, summary_path: Path) -> str:
    """A one-screen table: dataset counts, label counts per class and split, stage timings."""
    lines = []
    stages, timings = result["stages"], result["timings_s"]
    dataset = stages.get("generate")
    if dataset:
        splits = dataset["splits"]
        lines.append(f"Synthetic Chaotic World: {dataset['videos']} videos, {dataset['keyframes']} keyframes, "
                     f"{dataset['persons']} persons, {dataset['rows']} csv rows (seed {dataset['seed']})")
        lines.append(f"  {'split':<8}{'videos':>8}{'keyframes':>11}{'persons':>9}{'multi-label':>13}{'excluded':>10}")
        for split, counts in splits.items():
            lines.append(f"  {split:<8}{counts['videos']:>8}{counts['keyframes']:>11}{counts['persons']:>9}"
                         f"{counts['multi_label_persons']:>13}{counts['excluded_keyframes']:>10}")
        ids = {name: class_id for class_id, name in load_cw_classes().items()}
        lines.append(f"  {'id':>4}  {'class':<20}{'train':>7}{'val':>7}")
        for name in sorted(dataset["label_counts"], key=lambda n: ids.get(n, 0)):
            per_split = [splits[split]["label_counts"].get(name, 0) for split in splits]
            lines.append(f"  {ids.get(name, 0):>4}  {name:<20}" + "".join(f"{count:>7}" for count in per_split))
    width = max([16, *(len(name) + 1 for name in timings)])
    lines.append(f"  {'stage':<{width}} seconds  figures")
    for name, seconds in timings.items():
        scalars = {key: value for key, value in stages.get(name, {}).items()
                   if isinstance(value, (bool, int, float, str)) and key not in ("seed", "preset", "seconds")}
        shown = ", ".join(f"{key}={value}" for key, value in scalars.items())
        lines.append(f"  {name:<{width}}{seconds:>8.1f}  {shown[:FIGURES_WIDTH]}")
    lines.extend(_result_lines(stages))
    lines.append(f"summary: {summary_path}")
    return "\n".join(lines)


def _result_lines(stages: dict[str, dict]) -> list[str]:
    """Detector quality, the two mAPs side by side, and where the outputs are."""
    lines = []
    detector, action, boxes = stages.get("detector"), stages.get("action"), stages.get("action_detector_boxes")
    if detector:
        lines.append(f"person detector (YOLOv8n from scratch, {detector['epochs']} epochs at {detector['imgsz']} px, "
                     f"confidence >= {detector['conf']}): val recall@0.5 {100 * detector['recall']:.1f}%, "
                     f"precision {100 * detector['precision']:.1f}%, AP@0.5 {100 * detector['ap']:.1f}%")
        lines.append(f"  weights {detector['weights']}  proposals {detector['proposals']}")
    if action or boxes:
        gt = f"{100 * action['map_gt_boxes']:.2f}% (capacity {action['best_capacity_gt']})" if action else "not run"
        det = (f"{100 * boxes['map_detector_boxes']:.2f}% (capacity {boxes['best_capacity_detector']})"
               if boxes else "not run")
        lines.append("action model (SlowFast+ViT ACAR, tiny CPU config), val frame-mAP@0.5:")
        lines.append(f"  ground-truth boxes {gt}   |   detector boxes {det}")
    if action:
        lines.append(f"  checkpoint {action['checkpoint']}")
        lines.append(f"  predictions {action['predict_csv']}  plot {action['plot']}")
        lines.append(f"  tensorboard --logdir {action['tensorboard']}")
    if boxes:
        lines.append(f"  detector-box predictions {boxes['predict_csv']}")
    if stages.get("protocols"):
        lines.extend(format_protocol_lines(stages["protocols"]))
    video = stages.get("video_demo")
    if video:
        lines.append(f"annotated video: {video['video']} ({video['frames']} frames {video['size']}, "
                     f"{video['boxes']} boxes)")
    return lines
