"""Batched, resumable YOLO inference over the keyframes of a csv or pkl -> a proposals pkl (released schema)."""
from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.atomic import write_text_atomic
from common.cli import run_main
from detect.convert import image_size
from detect.offline import prepare_ultralytics, resolve_device
from formats.annotation_pkl import classes_from_label_map, frame_path, load_annotation_pkl, save_annotation_pkl
from formats.official_csv import FRAME_RATE, read_official_csv
from formats.pbtxt import read_label_map

LOGGER = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: JSON (1 was a pickle)
_TEMPLATE_KEYS = ("video", "time", "start_frame", "n_frames", "mid_frame", "format_str", "frame_rate")

KeyframeKey = tuple[str, int]


@dataclass(frozen=True)
class KeyframeSource:
    """The keyframes to detect on.

    Attributes:
        templates: one element dict without ``labels`` per csv row or pkl element, in file order.
        classes: the pkl ``classes`` list written to the output.
    """

    templates: list[dict]
    classes: list[dict]

    def distinct(self) -> dict[KeyframeKey, dict]:
        """``{(video, time): first template}`` in first-appearance order."""
        keyframes: dict[KeyframeKey, dict] = {}
        for template in self.templates:
            keyframes.setdefault((template["video"], template["time"]), template)
        return keyframes


def _default_classes(csv_path: Path, label_map: str | Path | None) -> list[dict]:
    """Classes from ``label_map``, else the ``list_action.pbtxt`` beside the csv, else the 50 CW classes."""
    if label_map is not None:
        return classes_from_label_map(read_label_map(label_map))
    beside = csv_path.with_name("list_action.pbtxt")
    if beside.is_file():
        return classes_from_label_map(read_label_map(beside))
    from datasets.synthetic import load_cw_classes

    return classes_from_label_map(load_cw_classes())


def load_keyframe_source(path: str | Path, label_map: str | Path | None = None) -> KeyframeSource:
    """Read the keyframes listed by an official csv or an annotation pkl (chosen by the ``.pkl`` suffix).

    Raises:
        FileNotFoundError: no such file.
        FormatError: a malformed csv row or pkl element (file and line/element named).
    """
    path = Path(path)
    if path.suffix == ".pkl":
        loaded = load_annotation_pkl(path)
        templates = [{key: element[key] for key in _TEMPLATE_KEYS} for element in loaded.elements]
        return KeyframeSource(templates, loaded.classes)
    templates = [{"video": row.video, "time": int(row.time), "start_frame": row.start_frame,
                  "n_frames": row.n_frames, "mid_frame": row.keyframe, "format_str": f"{row.video}_%06d.png",
                  "frame_rate": FRAME_RATE} for row in read_official_csv(path)]
    return KeyframeSource(templates, _default_classes(path, label_map))


def person_class_index(names: dict[int, str]) -> int:
    """Index of the 'person' class in a model's ``names``; 0 for a one-class model.

    Raises:
        ValueError: several classes and none named 'person'.
    """
    for index, name in names.items():
        if str(name).lower() == "person":
            return int(index)
    if len(names) == 1:
        return int(next(iter(names)))
    raise ValueError(f"the detector has no 'person' class; its classes are {dict(names)}")


def labels_from_result(result, person: int, conf: float, keep_scores: bool) -> list[dict]:
    """Proposal entries of one ultralytics ``Results``: person boxes with confidence >= ``conf``.

    Boxes are ``xyxyn``: pixels divided by the size of the image that was read, so they are normalised
    whatever the frame size. Entries keep ultralytics' order (descending confidence).
    """
    boxes = result.boxes
    xyxyn = boxes.xyxyn.cpu().tolist()
    scores = boxes.conf.cpu().tolist()
    classes = boxes.cls.cpu().tolist()
    entries = []
    for box, score, cls in zip(xyxyn, scores, classes):
        if int(cls) != person or score < conf:
            continue
        entry = {"bounding_box": [min(max(float(v), 0.0), 1.0) for v in box], "label": [0], "person_id": [0]}
        if keep_scores:
            entry["score"] = float(score)
        entries.append(entry)
    return entries


def _state_path(out_pkl: Path) -> Path:
    return out_pkl.with_name(out_pkl.name + ".partial")


def _load_state(path: Path, signature: dict) -> dict[KeyframeKey, list[dict]]:
    """Done keyframes of an interrupted run with the same settings; empty when there is none.

    The state is JSON. A state file from before (a pickle) is ignored, never unpickled: unpickling
    runs code named by the file.
    """
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if raw[:1] == b"\x80":  # pickle protocol 2+ header
        LOGGER.warning("ignoring resume state %s: an old pickle state file, which is not unpickled because "
                       "that could run code; starting over", path)
        return {}
    try:
        state = json.loads(raw.decode("utf-8"))
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION \
                or state.get("signature") != json.loads(json.dumps(signature)):
            LOGGER.warning("resume state %s was written with other settings; starting over", path)
            return {}
        return {(str(video), int(time)): list(entries) for video, time, entries in state["done"]}
    except (ValueError, TypeError, KeyError) as exc:
        LOGGER.warning("ignoring unreadable resume state %s (%s); starting over", path, exc)
        return {}


def _save_state(path: Path, signature: dict, done: dict[KeyframeKey, list[dict]]) -> None:
    rows = [[video, time, entries] for (video, time), entries in done.items()]
    write_text_atomic(path, json.dumps({"version": STATE_VERSION, "signature": signature, "done": rows}))


def _signature(weights: Path, source: Path, conf: float, imgsz: object, keep_scores: bool) -> dict:
    stat = weights.stat()
    return {"weights": str(weights), "weights_size": stat.st_size, "weights_mtime_ns": stat.st_mtime_ns,
            "source": str(source.resolve()), "conf": float(conf), "imgsz": imgsz, "keep_scores": keep_scores}


def _frame_paths(keyframes: dict[KeyframeKey, dict], frames_root: Path, source: Path) -> dict[KeyframeKey, str]:
    """Absolute frame path of each keyframe; all must exist (checked before the long run)."""
    paths = {key: str(frame_path(frames_root, t, t["mid_frame"]).absolute()) for key, t in keyframes.items()}
    missing = [p for p in paths.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} keyframe frame(s) listed in {source} are missing under "
                                f"{frames_root}, e.g. {missing[0]}")
    return paths


def stream_predictions(model, paths: Sequence[str], batch: int, **predict_args) -> Iterator:
    """Stream ultralytics ``Results`` for image files, ``batch`` images per forward pass.

    The paths go through a temporary ``.txt`` manifest: ultralytics reads a manifest lazily, batch by
    batch (threaded decoding, and on CUDA loading overlapped with inference), whereas a Python list
    of paths is decoded into memory all at once and run as ONE batch whatever ``batch`` says.
    Results come in sorted path order; ``result.path`` is the absolute path of the image.

    Args:
        model: an ``ultralytics.YOLO``.
        paths: absolute image paths.
        batch: images per forward pass.
        **predict_args: further ``YOLO.predict`` arguments (``conf``, ``imgsz``, ``device``...).
    """
    with tempfile.TemporaryDirectory(prefix="yolo_manifest_") as folder:
        manifest = Path(folder) / "frames.txt"
        manifest.write_text("".join(f"{path}\n" for path in paths), encoding="utf-8")
        yield from model.predict(str(manifest), stream=True, batch=batch, verbose=False, save=False, **predict_args)


def _detect(model, todo: dict[KeyframeKey, str], done: dict[KeyframeKey, list[dict]], settings: dict,
            save: Callable[[], None], checkpoint_every: int, progress: bool) -> None:
    """Run the detector over ``todo`` (key -> path) in batches, filling ``done`` and saving periodically."""
    by_path = {path: key for key, path in todo.items()}
    results = stream_predictions(model, list(by_path), settings["batch"], conf=settings["conf"],
                                 imgsz=settings["imgsz"], device=settings["device"], classes=[settings["person"]])
    since_save = 0
    with tqdm(total=len(done) + len(todo), initial=len(done), unit="keyframe", desc="detect",
              disable=not progress) as bar:
        for result in results:
            key = by_path[str(result.path)]
            done[key] = labels_from_result(result, settings["person"], settings["conf"], settings["keep_scores"])
            since_save += 1
            bar.update(1)
            if since_save >= checkpoint_every:
                save()
                since_save = 0
    missing = len(todo) - sum(1 for key in todo if key in done)
    if missing:
        raise RuntimeError(f"the detector returned no result for {missing} keyframe(s)")


def _elements(source: KeyframeSource, done: dict[KeyframeKey, list[dict]], merge: bool) -> list[dict]:
    templates = list(source.distinct().values()) if merge else source.templates
    # Each element gets its own copy of the entries, as the original's per-row files had.
    return [{**template, "labels": copy.deepcopy(done[(template["video"], template["time"])])}
            for template in templates]


@dataclass(frozen=True)
class DetectOptions:
    """How ``detect_to_proposals`` runs (the command line's options; these defaults are the documented ones).

    Attributes:
        conf: confidence threshold (the original used 0.3).
        batch: images per forward pass.
        imgsz: inference size; None = the frame's ``(height, width)`` read from the first keyframe,
            as the original recommends (``(180, 320)``, rounded up by ultralytics to stride 32).
        device: ``'auto'``, ``'cpu'``, ``'0'``...
        keep_scores: add the ``score`` field to each entry.
        resume: continue from ``<out_pkl>.partial`` if an interrupted run with the same settings left one
            (written every ``checkpoint_every`` keyframes and when the run is interrupted).
        merge: one element per distinct keyframe (first appearance order) instead of the original's
            one per csv row / source element (opt-in; DATA.md, "Per-row files and --merge").
        label_map: pbtxt for the output ``classes`` with a csv source (default: ``list_action.pbtxt``
            beside the csv, else the 50 Chaotic World classes); a pkl source keeps its own.
        checkpoint_every: keyframes between two saves of the resume state.
        progress: show a tqdm bar.
    """

    conf: float = 0.3
    batch: int = 32
    imgsz: int | tuple[int, int] | None = None
    device: str = "auto"
    keep_scores: bool = True
    resume: bool = True
    merge: bool = False
    label_map: str | Path | None = None
    checkpoint_every: int = 512
    progress: bool = True


def detect_to_proposals(weights: str | Path, keyframes_source: str | Path, frames_root: str | Path,
                        out_pkl: str | Path, options: DetectOptions = DetectOptions()) -> dict:
    """Detect persons on every keyframe of a csv or pkl and write a proposals pkl.

    The pkl follows the released ``cw_test_yolov8_on_cw_0.3.pkl``: ``[elements, classes]``, by default
    one element per csv row (or source pkl element) in file order, as the original's
    ``detect/detect2pkl.py`` wrote it: a keyframe with k ground-truth rows appears k times, each copy
    holding ALL the detector boxes of that keyframe (DATA.md, "Per-row files and --merge"). The
    detector still runs once per distinct keyframe. Each element has its window fields from the
    source, ``labels`` = one entry per person box
    ``{'bounding_box': [x1, y1, x2, y2] normalised, 'label': [0], 'person_id': [0]}`` plus, with
    ``keep_scores``, ``'score'`` (the detector confidence; readers ignore it). Keyframes without a
    detection are present with ``labels: []``.

    Args:
        weights: local ``.pt`` of the detector (e.g. ``runs/detector/train/weights/best.pt``).
        keyframes_source: official csv or annotation pkl listing the keyframes.
        frames_root: ``frames/`` folder with ``<vid>/<vid>_%06d.png``.
        out_pkl: proposals pkl to write (atomically).
        options: threshold, batch, size, device, resume and layout (``DetectOptions``).

    Returns:
        ``{'keyframes', 'elements', 'boxes', 'empty_keyframes', 'resumed', 'out'}``.

    Raises:
        FileNotFoundError: weights, source or a keyframe frame missing (checked before inference).
        FormatError: malformed source file.
        ValueError: the model has no person class.
    """
    weights, out_pkl, frames_root = Path(weights).resolve(), Path(out_pkl), Path(frames_root)
    if not weights.is_file():
        raise FileNotFoundError(f"detector weights not found: {weights}")
    source = load_keyframe_source(keyframes_source, options.label_map)
    keyframes = source.distinct()
    paths = _frame_paths(keyframes, frames_root, Path(keyframes_source))
    imgsz = options.imgsz
    if imgsz is None and paths:
        width, height = image_size(Path(next(iter(paths.values()))))
        imgsz = (height, width)
    imgsz = list(imgsz) if isinstance(imgsz, (tuple, list)) else imgsz
    signature = _signature(weights, Path(keyframes_source), options.conf, imgsz, options.keep_scores)
    state = _state_path(out_pkl)
    done = _load_state(state, signature) if options.resume else {}
    done = {key: value for key, value in done.items() if key in keyframes}
    resumed = len(done)
    todo = {key: path for key, path in paths.items() if key not in done}
    LOGGER.info("%d keyframes, %d done in %s, %d to detect", len(keyframes), resumed, state, len(todo))
    if todo:
        model = prepare_ultralytics().YOLO(str(weights))
        settings = {"batch": options.batch, "conf": options.conf, "imgsz": imgsz,
                    "device": resolve_device(options.device), "person": person_class_index(model.names),
                    "keep_scores": options.keep_scores}
        try:
            _detect(model, todo, done, settings, lambda: _save_state(state, signature, done),
                    max(1, options.checkpoint_every), options.progress)
        except BaseException:
            # Ctrl-C or a failure mid-run: keep what is done for the next run (periodic saves cover kills).
            _save_state(state, signature, done)
            raise
    elements = _elements(source, done, options.merge)
    save_annotation_pkl(out_pkl, elements, source.classes)
    state.unlink(missing_ok=True)
    stats = {"keyframes": len(keyframes), "elements": len(elements),
             "boxes": sum(len(done[key]) for key in keyframes),
             "empty_keyframes": sum(1 for key in keyframes if not done[key]), "resumed": resumed, "out": str(out_pkl)}
    LOGGER.info("wrote %s: %d elements, %d boxes, %d keyframes without a box", out_pkl, stats["elements"],
                stats["boxes"], stats["empty_keyframes"])
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detect.infer",
                                     description="YOLO person detector over keyframes -> proposals pkl.")
    parser.add_argument("--weights", required=True, help="local detector .pt")
    parser.add_argument("--source", required=True, help="official csv or annotation pkl listing the keyframes")
    parser.add_argument("--frames-root", required=True, help="frames/ folder (<vid>/<vid>_%%06d.png)")
    parser.add_argument("--out", required=True, help="proposals pkl to write")
    parser.add_argument("--conf", type=float, default=DetectOptions.conf)
    parser.add_argument("--batch", type=int, default=DetectOptions.batch)
    parser.add_argument("--imgsz", type=int, nargs="+", default=None,
                        help="H W or one size; default: the frame size (180 320)")
    parser.add_argument("--device", default=DetectOptions.device)
    parser.add_argument("--no-scores", action="store_true", help="leave the 'score' field out")
    parser.add_argument("--no-resume", action="store_true", help="ignore an interrupted run's state")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--merge", action="store_true",
                        help="one element per distinct keyframe (opt-in) instead of one per csv row")
    layout.add_argument("--per-row", action="store_true",
                        help="one element per csv row, as the original: the default, accepted so that older "
                             "commands still work")
    parser.add_argument("--labelmap", default=None, help="pbtxt for the classes list (csv source)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    imgsz = None if args.imgsz is None else (args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz[:2]))
    options = DetectOptions(conf=args.conf, batch=args.batch, imgsz=imgsz, device=args.device,
                            keep_scores=not args.no_scores, resume=not args.no_resume, merge=args.merge,
                            label_map=args.labelmap)
    stats = detect_to_proposals(args.weights, args.source, args.frames_root, args.out, options)
    print(f"{stats['out']}: {stats['elements']} elements, {stats['keyframes']} keyframes, {stats['boxes']} boxes, "
          f"{stats['empty_keyframes']} keyframes without a box ({stats['resumed']} resumed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
