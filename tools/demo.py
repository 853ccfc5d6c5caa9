"""`make demo`: the end-to-end pipeline on the embedded synthetic Chaotic World dataset, as timed stages."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets.synthetic import (GENERATOR_VERSION, MANIFEST_NAME, SPLITS, generate_dataset, load_cw_classes,
                                read_manifest, resolve_config)
from formats.atomic import write_text_atomic
from tools.check_data import check_dataset
from tools.csv_to_pkl import convert_csv_to_pkl
from tools.extract_frames import FrameExtractionError, extract_frames
from tools.gt_csv import write_evaluator_ground_truth

LOGGER = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
# What the demo itself puts in <out>/data; anything else there means the folder is not ours to wipe.
DATA_ENTRIES = {"videos", "frames", "AR_ava_format", MANIFEST_NAME}
PKL_NAMES = {"train": "cw_data_train1fps.pkl", "val": "cw_data_test1fps.pkl"}
GROUND_TRUTH_NAME = "chaos_test_t_+1.csv"
REPO_ROOT = Path(__file__).resolve().parents[1]
ACTION_CONFIG = REPO_ROOT / "configs" / "tiny_cpu_synthetic.yaml"
# Characters of a stage's figures shown in the summary table (the json has them all).
FIGURES_WIDTH = 90


@dataclass
class DemoContext:
    """What every stage gets: where to work, the dataset options and the figures of earlier stages.

    Attributes:
        out: demo output folder (``runs/demo``).
        seed: dataset seed.
        preset: synthetic dataset preset.
        overrides: SyntheticConfig fields replacing the preset's.
        workers: parallel processes for generation and extraction.
        results: ``{stage name: figures}`` of the stages run so far in this run.
    """

    out: Path
    seed: int = 0
    preset: str = "demo"
    overrides: dict[str, int] = field(default_factory=dict)
    workers: int = 2
    action_config: Path = ACTION_CONFIG
    nproc: int = 2
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        """Dataset root (official layout plus prepared frames, pkls and ground truth)."""
        return self.out / "data"

    @property
    def annotations(self) -> Path:
        return self.data / "AR_ava_format"


Stage = Callable[[DemoContext], dict]


def _content_config(config: dict) -> dict:
    # The number of workers changes speed, not content.
    return {key: value for key, value in config.items() if key != "workers"}


def _reset_data_folder(data: Path) -> None:
    """Empty the demo's dataset folder before regenerating, refusing folders the demo did not make."""
    if not data.exists():
        return
    foreign = sorted(entry.name for entry in data.iterdir() if entry.name not in DATA_ENTRIES
                     and not entry.name.startswith("."))
    if foreign:
        raise FileExistsError(f"{data} holds files the demo did not write ({foreign[:5]}); "
                              f"choose another --out or remove them")
    for entry in data.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def stage_generate(ctx: DemoContext) -> dict:
    """Generate the synthetic dataset into ``<out>/data``, unless an identical one is already there."""
    config = resolve_config(ctx.preset, workers=ctx.workers, **ctx.overrides)
    manifest = read_manifest(ctx.data)
    if (manifest is not None and manifest.get("generator_version") == GENERATOR_VERSION
            and manifest.get("seed") == ctx.seed
            and _content_config(manifest.get("config", {})) == _content_config(asdict(config))
            and all((ctx.data / "videos" / f"{vid}.mp4").is_file() for vid in manifest.get("video_ids", []))):
        LOGGER.info("synthetic dataset already in %s (seed %d, preset %s): skipped", ctx.data, ctx.seed, ctx.preset)
        figures = {key: value for key, value in manifest.items() if key not in ("video_ids", "generator_version")}
        return {**figures, "skipped": True}
    _reset_data_folder(ctx.data)
    return {**generate_dataset(ctx.data, preset=ctx.preset, seed=ctx.seed, workers=ctx.workers, **ctx.overrides),
            "skipped": False}


def stage_extract_frames(ctx: DemoContext) -> dict:
    """Extract 320x180 frames at 25 fps of every video (videos already done are skipped)."""
    figures = extract_frames(ctx.data / "videos", ctx.data / "frames", workers=ctx.workers)
    figures.pop("frames_per_video")
    return figures


def stage_annotations(ctx: DemoContext) -> dict:
    """Official csv -> merged annotation pkls for both splits, and the evaluator's ground-truth csv."""
    label_map = ctx.annotations / "list_action.pbtxt"
    figures: dict = {}
    for split, stem in SPLITS.items():
        counts = convert_csv_to_pkl(ctx.annotations / f"chaos_{stem}_1fps.csv", label_map,
                                    ctx.annotations / PKL_NAMES[split], merge=True)
        figures[split] = {key: value for key, value in counts.items() if key != "label_histogram"}
        figures[f"{split}_elements"] = counts["elements"]
    figures["ground_truth_rows"] = write_evaluator_ground_truth(
        ctx.annotations / f"chaos_{SPLITS['val']}_1fps.csv", ctx.annotations / GROUND_TRUTH_NAME,
        label_map_path=label_map)
    return figures


def stage_check(ctx: DemoContext) -> dict:
    """Data check of both pkls: well-formed, every frame their clips read exists and decodes."""
    figures: dict = {}
    for split, name in PKL_NAMES.items():
        report = check_dataset(ctx.annotations / name, ctx.data / "frames", progress=False)
        figures[split] = {key: value for key, value in report.to_dict().items()
                          if key in ("elements", "keyframes", "boxes", "videos", "frames_read", "decoded",
                                     "frame_sizes", "ok")}
    figures["ok"] = all(figures[split]["ok"] for split in PKL_NAMES)
    figures["frames_read"] = sum(figures[split]["frames_read"] for split in PKL_NAMES)
    figures["frames_decoded"] = sum(figures[split]["decoded"] for split in PKL_NAMES)
    return figures


def _action_figures(result: Path, train_seconds: float, skipped: bool) -> dict:
    summary = json.loads((result / "run_summary.json").read_text())
    final = summary["evaluations"][-1]
    return {
        "map_gt_boxes": final.get("best_mAP", final["mAP"]),
        "best_capacity_gt": final.get("best_capacity"),
        "epochs": len(summary["epochs"]) or None,
        "train_seconds": round(sum(epoch["seconds"] for epoch in summary["epochs"]), 1),
        "eval_seconds": round(final["seconds"], 1),
        "run_seconds": round(train_seconds, 1),
        "skipped": skipped,
        "checkpoint": summary["checkpoints"][-1] if summary["checkpoints"] else None,
        "predict_csv": final["predict_csv"],
        "tensorboard": summary["tensorboard"],
        "plot": final.get("plot"),
        "eval_json": final.get("eval_json"),
    }


def stage_action(ctx: DemoContext) -> dict:
    """Train the tiny action model (``ctx.nproc`` processes, gloo on CPU) and evaluate it with GT boxes.

    Runs ``main.py`` as a user would, from the dataset root; a finished run of the same config is
    reused, so re-running the demo is quick.
    """
    result = ctx.out / "action"
    config_text = ctx.action_config.read_text()
    done_marker = result / "demo_config.yaml"
    if (result / "run_summary.json").is_file() and done_marker.is_file() and done_marker.read_text() == config_text:
        return _action_figures(result, 0.0, skipped=True)
    if result.exists():
        shutil.rmtree(result)
    command = [sys.executable, str(REPO_ROOT / "main.py"), "--config", str(ctx.action_config),
               "--nproc_per_node", str(ctx.nproc), "--set", f"result_path={result.resolve()}"]
    LOGGER.info("training the action model: %s (cwd %s)", " ".join(command), ctx.data)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ctx.data)
    if completed.returncode != 0:
        raise RuntimeError(f"main.py exited with code {completed.returncode}; see {result / 'log.txt'}")
    write_text_atomic(done_marker, config_text)
    return _action_figures(result, time.perf_counter() - started, skipped=False)


# Later issues append their stages (detector, action model, evaluation) to this list.
STAGES: list[tuple[str, Stage]] = [
    ("generate", stage_generate),
    ("extract_frames", stage_extract_frames),
    ("annotations", stage_annotations),
    ("check", stage_check),
    ("action", stage_action),
]
# The stages that only prepare the dataset (tests run these without training).
DATA_STAGES = ("generate", "extract_frames", "annotations", "check")


def write_summary(ctx: DemoContext, timings: dict[str, float], error: str | None = None) -> Path:
    """Write ``<out>/summary.json`` atomically: one section per stage, the timings, and any error."""
    summary = {
        "seed": ctx.seed,
        "preset": ctx.preset,
        "data": str(ctx.data),
        "stages": ctx.results,
        "timings_s": timings,
        "total_s": round(sum(timings.values()), 2),
    }
    if error is not None:
        summary["error"] = error
    path = ctx.out / SUMMARY_NAME
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    return path


def run_demo(ctx: DemoContext, only: Sequence[str] | None = None) -> dict:
    """Run the stages in order, timing each; write the summary after every stage.

    Args:
        ctx: the demo context (its ``results`` receive each stage's figures).
        only: names of the stages to run (default: all, in STAGES order).

    Returns:
        ``{'stages': {name: figures}, 'timings_s': {name: seconds}}``.

    Raises:
        ValueError: an unknown stage name.
        Exception: whatever a stage raises (the summary then records the error).
    """
    names = [name for name, _ in STAGES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {names}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name, stage in STAGES:
        if only and name not in only:
            continue
        LOGGER.info("stage %s ...", name)
        started = time.perf_counter()
        try:
            ctx.results[name] = stage(ctx)
        except Exception as error:
            timings[name] = round(time.perf_counter() - started, 2)
            write_summary(ctx, timings, error=f"stage {name}: {error}")
            raise
        timings[name] = round(time.perf_counter() - started, 2)
        LOGGER.info("stage %s done in %.1f s", name, timings[name])
        write_summary(ctx, timings)
    return {"stages": ctx.results, "timings_s": timings}


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
    lines.append("  stage            seconds  figures")
    for name, seconds in timings.items():
        scalars = {key: value for key, value in stages.get(name, {}).items()
                   if isinstance(value, (bool, int, float, str)) and key not in ("seed", "preset", "seconds")}
        shown = ", ".join(f"{key}={value}" for key, value in scalars.items())
        lines.append(f"  {name:<16}{seconds:>8.1f}  {shown[:FIGURES_WIDTH]}")
    action = stages.get("action")
    if action:
        lines.append(f"action model (SlowFast+ViT ACAR, tiny CPU config): frame-mAP@0.5 with ground-truth boxes "
                     f"{100 * action['map_gt_boxes']:.2f}% at capacity {action['best_capacity_gt']}")
        lines.append(f"  checkpoint {action['checkpoint']}")
        lines.append(f"  predictions {action['predict_csv']}  plot {action['plot']}")
        lines.append(f"  tensorboard --logdir {action['tensorboard']}")
    lines.append(f"summary: {summary_path}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.demo",
                                     description="Run the demo pipeline on the synthetic Chaotic World dataset.")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--preset", default="demo", help="synthetic dataset preset: demo (default) or tiny")
    parser.add_argument("--train-videos", type=int, help="override the preset's train clips")
    parser.add_argument("--val-videos", type=int, help="override the preset's validation clips")
    parser.add_argument("--seconds", type=int, help="override the preset's clip length (s)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--stages", nargs="+", metavar="STAGE",
                        help=f"run only these stages (of {[name for name, _ in STAGES]})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run the stages and print the summary table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    overrides = {key: getattr(args, key) for key in ("train_videos", "val_videos", "seconds")
                 if getattr(args, key) is not None}
    try:
        resolve_config(args.preset, workers=args.workers, **overrides)
    except ValueError as error:
        parser.error(str(error))
    ctx = DemoContext(out=Path(args.out), seed=args.seed, preset=args.preset, overrides=overrides,
                      workers=args.workers)
    try:
        result = run_demo(ctx, only=args.stages)
    except (FileExistsError, FrameExtractionError, ValueError, RuntimeError) as error:
        LOGGER.error("%s", error)
        return 1
    print(format_summary(result, ctx.out / SUMMARY_NAME))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
