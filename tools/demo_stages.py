"""The demo's stages: what each does, its skip markers, and the summary it writes (``tools/demo.py`` runs them)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.atomic import write_text_atomic
from config import load_config
from datasets.synthetic import (GENERATOR_VERSION, MANIFEST_NAME, SPLITS, generate_dataset, read_manifest,
                                resolve_config)
from detect.infer import DetectOptions, detect_to_proposals
from engine.threads import torch_threads_kept
from tools.check_data import check_dataset
from tools.csv_to_pkl import convert_csv_to_pkl
from tools.demo_detector import DETECTOR_SETTINGS, train_and_score_detector
from tools.demo_protocols import PER_ROW_NAMES, score_protocols, sweep_range
from tools.demo_record import STAGE_NAMES, DemoRecord, write_summary
from tools.demo_video import choose_demo_video
from tools.extract_frames import extract_frames
from tools.gt_csv import seconds_exclusions_path, write_evaluator_ground_truth
from tools.prepare_synthetic import MERGED_PKL_NAMES
from tools.video_annotate import output_paths, run_video_demo
from tools.video_demo import DEMO_ACTION, DEMO_CONFIG_COPY, DEMO_VIDEO_CHOICE
from tools.video_options import DemoInputs, DemoSettings
from tools.video_report import summary_lines

# One logger for the whole demo, whichever of its modules logs.
LOGGER = logging.getLogger("tools.demo")

# What the demo itself puts in <out>/data; anything else there means the folder is not ours to wipe.
DATA_ENTRIES = {"videos", "frames", "AR_ava_format", MANIFEST_NAME}
# The demo trains and evaluates on MERGED pkls (one element per keyframe, ``tools.csv_to_pkl
# --merge``), the opt-in improvement: the original's per-row layout would give the action model one
# sample per csv row and multiply the length of its ~11-minute run. Names of our own, so that no
# merged file sits under one of the original's (``cw_data_test1fps.pkl``, ...).
PKL_NAMES = MERGED_PKL_NAMES
GROUND_TRUTH_NAME = "chaos_test_t_+1.csv"
REPO_ROOT = Path(__file__).resolve().parents[1]
ACTION_CONFIG = REPO_ROOT / "configs" / "tiny_cpu_synthetic.yaml"
# The demo's pkls are merged (one element per keyframe): main.py scores them with the stable rule,
# the headline's (README, summary.json's map_gt_boxes). Its default, the original evaluator's order,
# is for the original's per-row files (the protocols stage).
MERGED_TIES = "stable"
# Merged proposals (one element per keyframe, ``detect.infer --merge``), evaluated against the merged
# val pkl; the original's ``cw_test_yolov8_on_cw_0.3.pkl`` held one element per ground-truth row.
PROPOSALS_NAME = "cw_test_yolov8_demo_merged.pkl"


@dataclass
class DemoContext:
    """What every stage gets: where to work, the dataset options and the figures of earlier stages.

    Attributes:
        out: demo output folder (``runs/demo``), made absolute: every path the demo, its ``main.py``
            runs (whose working directory is the dataset) and summary.json name is absolute.
        seed: dataset seed.
        preset: synthetic dataset preset.
        overrides: SyntheticConfig fields replacing the preset's.
        workers: parallel processes for generation and extraction (and the detector's data loading).
        action_config: config of the action model.
        nproc: training processes of the action model.
        detector: detector settings (``DETECTOR_SETTINGS``).
        env: environment of the ``main.py`` runs, taken before any stage: importing ultralytics
            sets ``OMP_NUM_THREADS=1`` in this process, which must not reach the action model's runs.
        results: ``{stage name: figures}`` of the stages run so far in this run.
    """

    out: Path
    seed: int = 0
    preset: str = "demo"
    overrides: dict[str, int] = field(default_factory=dict)
    workers: int = 2
    action_config: Path = ACTION_CONFIG
    nproc: int = 2
    detector: dict = field(default_factory=lambda: json.loads(json.dumps(DETECTOR_SETTINGS)))
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    results: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out).resolve()

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
    figures["already_extracted"] = figures.pop("skipped")
    figures["skipped"] = figures["extracted"] == 0
    return figures


def stage_annotations(ctx: DemoContext) -> dict:
    """Official csv -> MERGED annotation pkls for both splits (opt-in), and the evaluator's ground-truth csv."""
    label_map = ctx.annotations / "list_action.pbtxt"
    figures: dict = {}
    for split, stem in SPLITS.items():
        counts = convert_csv_to_pkl(ctx.annotations / f"chaos_{stem}_1fps.csv", label_map,
                                    ctx.annotations / PKL_NAMES[split], merge=True)
        figures[split] = {key: value for key, value in counts.items() if key != "label_histogram"}
        figures[f"{split}_elements"] = counts["elements"]
    exclusions = ctx.annotations / f"chaos_{SPLITS['val']}_exclude.csv"
    counts = write_evaluator_ground_truth(
        ctx.annotations / f"chaos_{SPLITS['val']}_1fps.csv", ctx.annotations / GROUND_TRUTH_NAME,
        label_map_path=label_map, exclusions=(exclusions, seconds_exclusions_path(exclusions)))
    figures["ground_truth_rows"] = counts["rows"]
    figures["excluded_keyframes"] = counts["excluded_keyframes"]
    return figures


def _clip_window(config: Path, split: str) -> tuple[int | None, int]:
    """``(TemporalCenterCrop size, step)`` of a split of the action config; ``(None, 1)``: the whole window."""
    temporal = getattr(load_config(config), split).augmentation.temporal
    if temporal.type != "TemporalCenterCrop":
        return None, 1
    return int(temporal.kwargs["size"]), int(temporal.kwargs.get("step", 1))


def stage_check(ctx: DemoContext) -> dict:
    """Data check of both pkls: well-formed, and every frame the action config's clips read exists and decodes."""
    figures: dict = {}
    for split, name in PKL_NAMES.items():
        size, step = _clip_window(ctx.action_config, split)
        report = check_dataset(ctx.annotations / name, ctx.data / "frames", decode="all", temporal_size=size,
                               temporal_step=step, progress=False, workers=ctx.workers)
        figures[split] = {key: value for key, value in report.to_dict().items()
                          if key in ("elements", "keyframes", "boxes", "videos", "frames_read", "decoded",
                                     "decode_mode", "frame_sizes", "ok")}
    figures["ok"] = all(figures[split]["ok"] for split in PKL_NAMES)
    figures["frames_read"] = sum(figures[split]["frames_read"] for split in PKL_NAMES)
    figures["frames_decoded"] = sum(figures[split]["decoded"] for split in PKL_NAMES)
    return figures


def _scoring_figures(evaluation: dict) -> dict:
    """The tie band ``[low, high]`` and the sweep ``[first K, last K]`` of a main.py evaluation (its eval JSON)."""
    path = evaluation.get("eval_json")
    payload = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    band, protocol = payload.get("tie_band"), payload.get("protocol") or {}
    return {"tie_band": [band["low"], band["high"]] if band else None, "sweep": protocol.get("capacities")}


def _action_figures(result: Path, skipped: bool) -> dict:
    summary = json.loads((result / "run_summary.json").read_text())
    final = summary["evaluations"][-1]
    return {
        "map_gt_boxes": final.get("best_mAP", final["mAP"]),
        "best_capacity_gt": final.get("best_capacity"),
        "ties": MERGED_TIES,
        **_scoring_figures(final),
        "epochs": len(summary["epochs"]) or None,
        "train_seconds": round(sum(epoch["seconds"] for epoch in summary["epochs"]), 1),
        "eval_seconds": round(final["seconds"], 1),
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
    done_marker, rule_marker = result / "demo_config.yaml", result / "demo_ties.txt"
    if ((result / "run_summary.json").is_file() and done_marker.is_file() and done_marker.read_text() == config_text
            and rule_marker.is_file() and rule_marker.read_text() == MERGED_TIES):
        return _action_figures(result, skipped=True)
    if result.exists():
        shutil.rmtree(result)
    command = [sys.executable, str(REPO_ROOT / "main.py"), "--config", str(ctx.action_config),
               "--nproc_per_node", str(ctx.nproc), "--set", f"result_path={result}",
               "--set", f"val.eval_mAP.ties={MERGED_TIES}"]
    LOGGER.info("training the action model: %s (cwd %s)", " ".join(command), ctx.data)
    completed = subprocess.run(command, cwd=ctx.data, env=ctx.env)
    if completed.returncode != 0:
        raise RuntimeError(f"main.py exited with code {completed.returncode}; see {result / 'log.txt'}")
    write_text_atomic(rule_marker, MERGED_TIES)
    write_text_atomic(done_marker, config_text)
    return _action_figures(result, skipped=False)


def _digest(path: Path) -> str:
    """sha256 of a file: what the skip markers compare (paths and mtimes say nothing about content)."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _read_marker(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _dataset_identity(ctx: DemoContext) -> dict:
    manifest = read_manifest(ctx.data) or {}
    return {"generator_version": manifest.get("generator_version"), "seed": manifest.get("seed"),
            "config": _content_config(manifest.get("config", {}))}


def stage_detector(ctx: DemoContext) -> dict:
    """Train YOLOv8n from scratch on the train keyframes, write val proposals, report their quality.

    Skipped when a finished run used the same settings on the same dataset.
    """
    folder, settings = ctx.out / "detector", ctx.detector
    val_csv = ctx.annotations / f"chaos_{SPLITS['val']}_1fps.csv"
    proposals = ctx.annotations / PROPOSALS_NAME
    marker, wanted = folder / "demo_settings.json", {"settings": settings, "dataset": _dataset_identity(ctx)}
    previous = _read_marker(marker)
    if ({key: previous.get(key) for key in wanted} == wanted and proposals.is_file()
            and Path(previous["figures"]["weights"]).is_file()):
        LOGGER.info("detector already trained with these settings (%s): skipped", marker)
        return {**previous["figures"], "skipped": True}
    if folder.exists():
        shutil.rmtree(folder)
    figures = train_and_score_detector(folder, ctx.annotations / f"chaos_{SPLITS['train']}_1fps.csv", val_csv,
                                       ctx.data / "frames", ctx.annotations / PKL_NAMES["val"], proposals, settings,
                                       ctx.workers)
    write_text_atomic(marker, json.dumps({**wanted, "figures": figures}, indent=2) + "\n")
    return {**figures, "skipped": False}


def _trained_action(ctx: DemoContext) -> tuple[Path, Path]:
    """``(config copy, last checkpoint)`` of the action stage's run."""
    summary = ctx.out / DEMO_ACTION / "run_summary.json"
    config = ctx.out / DEMO_ACTION / DEMO_CONFIG_COPY
    checkpoints = json.loads(summary.read_text()).get("checkpoints") if summary.is_file() else None
    if not checkpoints or not config.is_file():
        raise RuntimeError(f"no trained action model in {summary.parent}: run the 'action' stage first")
    return config, Path(checkpoints[-1])


def _detector_figures(ctx: DemoContext) -> dict:
    figures = ctx.results.get("detector") or _read_marker(ctx.out / "detector" / "demo_settings.json").get("figures")
    if not figures or not Path(figures["proposals"]).is_file():
        raise RuntimeError(f"no detector proposals in {ctx.annotations}: run the 'detector' stage first")
    return figures


def _evaluate_checkpoint(ctx: DemoContext, annotation: Path, result: Path, ties: str) -> tuple[dict, bool]:
    """``main.py`` in evaluation mode with the trained action model on ``annotation`` (a val pkl).

    Args:
        ties: the evaluator's rule for ``main.py``'s own mAP step: ``stable`` for merged files (the
            headline), ``original`` for per-row files (the original's protocol).

    Returns:
        ``(the run's last evaluation record, skipped)``; skipped when config, checkpoint, pkl and
        tie rule are unchanged since the last run into ``result``.
    """
    config, checkpoint = _trained_action(ctx)
    marker = result / "demo_inputs.json"
    inputs = {**{str(path): _digest(path) for path in (config, checkpoint, annotation)}, "ties": ties}
    skipped = _read_marker(marker) == inputs and (result / "run_summary.json").is_file()
    if not skipped:
        if result.exists():
            shutil.rmtree(result)
        command = [sys.executable, str(REPO_ROOT / "main.py"), "--config", str(config.resolve()),
                   "--nproc_per_node", "1", "--set", "evaluate=true", "--set", f"resume_path={checkpoint.resolve()}",
                   "--set", f"val.annotation_path={annotation.resolve()}", "--set", f"result_path={result.resolve()}",
                   "--set", f"val.eval_mAP.ties={ties}"]
        LOGGER.info("evaluating the action model on %s: %s", annotation.name, " ".join(command))
        if subprocess.run(command, cwd=ctx.data, env=ctx.env).returncode != 0:
            raise RuntimeError(f"main.py evaluation failed; see {result / 'log.txt'}")
        write_text_atomic(marker, json.dumps(inputs, indent=2) + "\n")
    return json.loads((result / "run_summary.json").read_text())["evaluations"][-1], skipped


def stage_action_detector_boxes(ctx: DemoContext) -> dict:
    """Evaluate the trained action model on the detector's val proposals (``main.py``, evaluation mode)."""
    detector = _detector_figures(ctx)
    final, skipped = _evaluate_checkpoint(ctx, Path(detector["proposals"]), ctx.out / "action_detector", MERGED_TIES)
    return {"map_detector_boxes": final.get("best_mAP", final["mAP"]), "best_capacity_detector": final.get("best_capacity"),
            "ties": MERGED_TIES, **_scoring_figures(final),
            "detector_recall": detector["recall"], "detector_ap": detector["ap"],
            "eval_seconds": round(final["seconds"], 1), "skipped": skipped, "predict_csv": final["predict_csv"],
            "plot": final.get("plot"), "eval_json": final.get("eval_json")}


def _last_predict(result: Path) -> Path:
    """The predict.csv of the last evaluation of the main.py run in ``result``."""
    summary = result / "run_summary.json"
    if not summary.is_file():
        raise RuntimeError(f"no evaluation in {result}: run its stage first")
    return Path(json.loads(summary.read_text())["evaluations"][-1]["predict_csv"])


def stage_protocols(ctx: DemoContext) -> dict:
    """The original's protocol beside ours: per-row val files with exact ties vs merged files with stable ties.

    Writes per-row val pkls (ground-truth boxes from the csv, detector boxes from a second inference pass),
    evaluates the trained model on both, and scores per-row and merged predictions (``tools.demo_protocols``).
    """
    config, _ = _trained_action(ctx)
    detector = _detector_figures(ctx)
    val_csv = ctx.annotations / f"chaos_{SPLITS['val']}_1fps.csv"
    label_map, ground_truth = ctx.annotations / "list_action.pbtxt", ctx.annotations / GROUND_TRUTH_NAME
    per_row = {source: ctx.annotations / name for source, name in PER_ROW_NAMES.items()}
    convert_csv_to_pkl(val_csv, label_map, per_row["gt"], merge=False)
    proposals = Path(detector["proposals"])
    inferred = not per_row["detector"].is_file() or per_row["detector"].stat().st_mtime < proposals.stat().st_mtime
    if inferred:
        with torch_threads_kept():
            detect_to_proposals(detector["weights"], val_csv, ctx.data / "frames", per_row["detector"],
                                DetectOptions(conf=ctx.detector["conf"], imgsz=ctx.detector["imgsz"], resume=False,
                                              progress=False, merge=False))
    merged = {"gt": _last_predict(ctx.out / "action"), "detector": _last_predict(ctx.out / "action_detector")}
    cap_range = sweep_range(config)
    figures: dict = {"cap_range": list(cap_range)}
    evaluated = []
    for source in ("gt", "detector"):
        final, skipped = _evaluate_checkpoint(ctx, per_row[source], ctx.out / f"protocol_{source}", "original")
        evaluated.append(skipped)
        figures[source] = score_protocols(label_map, ground_truth, cap_range, Path(final["predict_csv"]),
                                          merged[source])
        figures[source]["per_row_predict_csv"] = final["predict_csv"]
        figures[source]["per_row_plot"] = final.get("plot")
    for source, key in (("gt", "map_gt_boxes"), ("detector", "map_detector_boxes")):
        original = figures[source]["original"]
        figures[f"{key}_original"] = original["mAP"]
        figures[f"tie_band_{source}_original"] = [original["tie_band_low"], original["tie_band_high"]]
    # Skipped when the two main.py evaluations and the per-row inference were: the scores are then
    # recomputed from their files in seconds, and the stage's time is that of the run that made them.
    figures["skipped"] = all(evaluated) and not inferred
    return figures


def stage_video_demo(ctx: DemoContext) -> dict:
    """Track and annotate the val video that shows the pipeline best (``tools/demo_video.py``) with the
    trained detector and action model: mp4, json, csv and timeline (``tools/video_demo.py``)."""
    config, checkpoint = _trained_action(ctx)
    detector = _detector_figures(ctx)
    choice = choose_demo_video(ctx.annotations / f"chaos_{SPLITS['val']}_1fps.csv", Path(detector["proposals"]),
                               ctx.data / "videos")
    write_text_atomic(ctx.out / DEMO_VIDEO_CHOICE, json.dumps(choice, indent=2) + "\n")
    inputs = DemoInputs(video=Path(choice["video"]), config=config, checkpoint=checkpoint,
                        detector=Path(detector["weights"]))
    settings = DemoSettings(conf=ctx.detector["conf"], imgsz=ctx.detector["imgsz"], progress=False)
    out = ctx.out / "video_demo" / f"{choice['video_id']}_annotated.mp4"
    paths = output_paths(out)
    marker = out.parent / "demo_inputs.json"
    wanted = {**{str(path): _digest(path) for path in (inputs.video, config, checkpoint, inputs.detector)},
              "settings": asdict(settings) | {"label_map": None}}
    skipped = _read_marker(marker) == wanted and all(path.is_file() for path in paths.values())
    if skipped:
        report = json.loads(paths["json"].read_text())
    else:
        with torch_threads_kept():
            report = run_video_demo(inputs, out, settings)
        write_text_atomic(marker, json.dumps(wanted, indent=2) + "\n")
    for line in summary_lines(report):
        LOGGER.info("%s", line)
    return {"video": str(out), "timeline": report["timeline"], "json": report["json"], "csv": report["csv"],
            "chosen": {key: choice[key] for key in ("video_id", "people", "actions", "recall")},
            "frames": report["frames"], "size": "x".join(map(str, report["size"])),
            "keyframes": report["keyframes_count"], "boxes": report["boxes"], "tracks": report["tracks_count"],
            "keyframes_per_second": report["keyframes_per_second"], "timings_s": report["timings_s"],
            "report": report["json"], "skipped": skipped}


# In order: each stage may read what the earlier ones wrote (on disk, so a stage can run alone later).
STAGES: list[tuple[str, Stage]] = list(zip(STAGE_NAMES, (
    stage_generate, stage_extract_frames, stage_annotations, stage_check, stage_action, stage_detector,
    stage_action_detector_boxes, stage_protocols, stage_video_demo)))
# The stages that only prepare the dataset (tests run these without training).
DATA_STAGES = ("generate", "extract_frames", "annotations", "check")


def _header(ctx: DemoContext) -> dict:
    return {"seed": ctx.seed, "preset": ctx.preset, "data": str(ctx.data)}


def run_demo(ctx: DemoContext, only: Sequence[str] | None = None) -> dict:
    """Run the stages in order, timing each; write the summary after every stage.

    The summary keeps the record of earlier runs into ``ctx.out`` (``tools.demo_record``): a
    skipped stage keeps the figures and the time of the run that produced its outputs, and a stage
    this run leaves out keeps its earlier figures.

    Args:
        ctx: the demo context (its ``results`` receive each stage's figures).
        only: names of the stages to run (default: all, in STAGES order).

    Returns:
        ``{'stages': {name: figures}, 'timings_s': {name: seconds of the run that produced the
        outputs}, 'this_run_s': {name: seconds of this run}}`` over every stage on record.

    Raises:
        ValueError: an unknown stage name.
        Exception: whatever a stage raises (the summary then records the error).
    """
    names = [name for name, _ in STAGES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {names}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    record = DemoRecord.read(ctx.out)
    for name, stage in STAGES:
        if only and name not in only:
            continue
        LOGGER.info("stage %s ...", name)
        started = time.perf_counter()
        try:
            ctx.results[name] = stage(ctx)
        except Exception as error:
            record.this_run_s[name] = round(time.perf_counter() - started, 2)
            record.stages.pop(name, None)
            record.timings_s.pop(name, None)
            write_summary(ctx.out, _header(ctx), record, error=f"stage {name}: {error}")
            raise
        record.finish_stage(name, ctx.results[name], round(time.perf_counter() - started, 2))
        write_summary(ctx.out, _header(ctx), record)
    return {"stages": record.stages, "timings_s": record.timings_s, "this_run_s": record.this_run_s}
