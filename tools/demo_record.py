"""The demo's record, ``<out>/summary.json``: each stage's figures, the time that produced its outputs, the headline.

A re-run skips the stages whose outputs are already there; the record keeps, for each stage, the
seconds of the run that produced those outputs (``timings_s``), beside what this run spent on it
(``this_run_s``), so a second ``make demo`` leaves the first one's figures and timings in place.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from common.atomic import write_text_atomic

# In order: each stage may read what the earlier ones wrote (on disk, so a stage can run alone later).
STAGE_NAMES = ("generate", "extract_frames", "annotations", "check", "action", "detector",
               "action_detector_boxes", "protocols", "video_demo")

LOGGER = logging.getLogger("tools.demo")

SUMMARY_NAME = "summary.json"
# The words that name each way of scoring, the same in the printed summary, summary.json and the README.
HEADLINE_RULE = "merged files, stable ties"
ORIGINAL_RULE = "per-row files, original ties"
# Figures that are fractions in [0, 1] besides the ``map_*`` ones, shown to people as percentages.
FRACTION_KEYS = frozenset({"recall", "precision", "ap", "detector_recall", "detector_ap"})


@dataclass
class DemoRecord:
    """What ``summary.json`` holds across runs into one output folder.

    Attributes:
        stages: ``{stage: figures}`` of every stage whose outputs are in the folder (this run's,
            else the earlier run's that produced them).
        timings_s: ``{stage: seconds}`` of the run that produced each stage's outputs (None when
            no record of it is left).
        this_run_s: ``{stage: seconds}`` spent by this run, skipped stages included.
    """

    stages: dict[str, dict] = field(default_factory=dict)
    timings_s: dict[str, float | None] = field(default_factory=dict)
    this_run_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, out: Path) -> DemoRecord:
        """The record of the earlier runs into ``out`` (empty when there is none or it does not parse)."""
        path = out / SUMMARY_NAME
        try:
            earlier = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            LOGGER.warning("%s does not parse; starting a new record", path)
            earlier = {}
        stages = earlier.get("stages") if isinstance(earlier.get("stages"), dict) else {}
        timings = earlier.get("timings_s") if isinstance(earlier.get("timings_s"), dict) else {}
        return cls(stages=dict(stages), timings_s={name: timings.get(name) for name in stages})

    def finish_stage(self, name: str, figures: dict, seconds: float) -> None:
        """Record a stage this run finished, and log it: ``done in N s``, or ``skipped`` with the earlier time.

        A skipped stage keeps the figures and the time of the run that produced its outputs.
        """
        earlier = self.timings_s.get(name) if name in self.stages else None
        self.this_run_s[name] = seconds
        if figures.get("skipped") is True:
            # The outputs are the earlier run's, and so are their figures (a skipped extraction
            # extracted 0 videos this time); keys the earlier record lacks come from this run.
            self.stages[name] = {**figures, **self.stages.get(name, {}), "skipped": True}
            self.timings_s[name] = earlier
            then = "no record of its time" if earlier is None else f"{format_seconds(earlier)} then"
            LOGGER.info("stage %s skipped: its outputs are from an earlier run (%s)", name, then)
        else:
            self.stages[name] = figures
            self.timings_s[name] = seconds
            LOGGER.info("stage %s done in %s", name, format_seconds(seconds))

    def to_json(self) -> dict:
        """The record's part of summary.json (stages, both timings and their totals)."""
        known = [seconds for seconds in self.timings_s.values() if seconds is not None]
        return {"stages": self.stages, "timings_s": self.timings_s, "total_s": round(sum(known), 2),
                "this_run_s": self.this_run_s, "this_run_total_s": round(sum(self.this_run_s.values()), 2),
                "skipped_this_run": [name for name in self.this_run_s
                                     if self.stages.get(name, {}).get("skipped") is True]}


def format_seconds(seconds: float) -> str:
    """``43 s``, ``4 min 13 s``: durations for people (summary.json keeps the seconds)."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def is_fraction(key: str) -> bool:
    """True for the figures that are fractions in [0, 1] (mAP, recall, precision, AP)."""
    return key.startswith("map_") or key in FRACTION_KEYS


def headline_figures(stages: dict[str, dict]) -> dict:
    """The top of summary.json: the headline mAPs, the original protocol's, detector recall, the video.

    ``map_gt_boxes`` / ``map_detector_boxes`` are the headline: merged files, stable ties, the
    config's sweep without exclusions, as ``main.py`` scored them in the ``action`` and
    ``action_detector_boxes`` stages (the demo runs it with ``val.eval_mAP.ties=stable``).
    ``*_original`` are the original's protocol (per-row files, original ties, same sweep) from the
    ``protocols`` stage. Each mAP has its tie band (``tie_band_*``: lowest and highest mAP any
    order of equal scores gives).
    """
    figures: dict = {}
    for source, stage, key in (("gt", "action", "map_gt_boxes"),
                               ("detector", "action_detector_boxes", "map_detector_boxes")):
        if key in stages.get(stage, {}):
            figures[key] = stages[stage][key]
            figures[f"tie_band_{source}"] = stages[stage].get("tie_band")
    if figures:
        figures["headline_rule"] = HEADLINE_RULE
    protocols = stages.get("protocols") or {}
    for source, key in (("gt", "map_gt_boxes"), ("detector", "map_detector_boxes")):
        original = (protocols.get(source) or {}).get("original")
        if original:
            figures[f"{key}_original"] = original["mAP"]
            figures[f"tie_band_{source}_original"] = [original["tie_band_low"], original["tie_band_high"]]
    picks = {"detector_recall": ("detector", "recall"), "detector_ap": ("detector", "ap"),
             "video_demo": ("video_demo", "video")}
    figures.update({key: stages[stage][name] for key, (stage, name) in picks.items()
                    if name in stages.get(stage, {})})
    return figures


def write_summary(out: Path, header: dict, record: DemoRecord, error: str | None = None) -> Path:
    """Write ``<out>/summary.json`` atomically: the run's header, the record, the headline, any error."""
    summary = {**header, **record.to_json(), **headline_figures(record.stages)}
    if error is not None:
        summary["error"] = error
    path = out / SUMMARY_NAME
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    return path
