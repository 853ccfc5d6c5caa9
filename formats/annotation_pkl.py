"""Annotation / proposal pickles: ``[elements, classes]`` in the original's schema (DATA.md §3).

An element is one keyframe (the released files may repeat a keyframe once per csv row; we read them
as given). Elements stay plain dicts because the released files are plain dicts and the engine must
read them unchanged; this module only validates them and writes them atomically. Extra keys (for
example a detector's ``score`` inside a ``labels`` entry) are kept and ignored by every reader.

Loading goes through ``formats.safe_pickle``: a pkl that names any global outside builtin containers and
scalars is refused before it can run code.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

from common.atomic import atomic_open
from common.errors import FormatError
from formats.safe_pickle import safe_load

ELEMENT_KEYS = ("video", "time", "start_frame", "n_frames", "mid_frame", "format_str", "frame_rate", "labels")
LABEL_KEYS = ("bounding_box", "label", "person_id")
# Boxes are normalised; allow float noise from pixel -> [0, 1] conversions.
BOX_TOLERANCE = 1e-6
# The original tools write this label type for every Chaotic World class.
DEFAULT_LABEL_TYPE = "PERSON_MOVEMENT"


@dataclass(frozen=True)
class AnnotationFile:
    """A loaded annotation or proposal pkl.

    Attributes:
        elements: one dict per keyframe entry, in file order (schema in DATA.md §3).
        classes: ``[{'name', 'id', 'label_type'}]``; list position c is the model's output index c.
    """

    elements: list[dict]
    classes: list[dict]


def classes_from_label_map(label_map: dict[int, str]) -> list[dict]:
    """Build the pkl ``classes`` list from ``{id: name}`` (ids in ascending order)."""
    return [{"name": label_map[cid], "id": int(cid), "label_type": DEFAULT_LABEL_TYPE} for cid in sorted(label_map)]


def _describe(index: int, element: object) -> str:
    if isinstance(element, dict):
        return f"element {index} (video {element.get('video')!r}, time {element.get('time')!r})"
    return f"element {index}"


def validate_element(element: object, index: int, num_classes: int, path: str | Path) -> None:
    """Check one element against the schema; raise FormatError naming the file, element and field."""
    where = _describe(index, element)
    if not isinstance(element, dict):
        raise FormatError(path, f"{where}: expected a dict, found {type(element).__name__}")
    missing = [key for key in ELEMENT_KEYS if key not in element]
    if missing:
        raise FormatError(path, f"{where}: missing key(s) {missing}")
    if not isinstance(element["video"], str) or not element["video"]:
        raise FormatError(path, f"{where}: 'video' must be a non-empty string")
    for key in ("time", "start_frame", "n_frames", "mid_frame", "frame_rate"):
        value = element[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise FormatError(path, f"{where}: {key!r} must be an int, found {value!r}")
    if element["start_frame"] < 1:
        raise FormatError(path, f"{where}: 'start_frame' is {element['start_frame']}; frames are numbered from 1")
    if element["n_frames"] < 1:
        raise FormatError(path, f"{where}: 'n_frames' is {element['n_frames']}; a clip needs at least one frame")
    fmt = element["format_str"]
    if not isinstance(fmt, str) or "%" not in fmt:
        raise FormatError(path, f"{where}: 'format_str' must be a printf pattern like '<vid>_%06d.png', found {fmt!r}")
    if not isinstance(element["labels"], list):
        raise FormatError(path, f"{where}: 'labels' must be a list")
    for box_index, entry in enumerate(element["labels"]):
        _validate_label_entry(entry, f"{where}, box {box_index}", num_classes, path)


def _validate_label_entry(entry: object, where: str, num_classes: int, path: str | Path) -> None:
    if not isinstance(entry, dict):
        raise FormatError(path, f"{where}: expected a dict, found {type(entry).__name__}")
    missing = [key for key in LABEL_KEYS if key not in entry]
    if missing:
        raise FormatError(path, f"{where}: missing key(s) {missing}")
    box = entry["bounding_box"]
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise FormatError(path, f"{where}: 'bounding_box' must be [x1, y1, x2, y2], found {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise FormatError(path, f"{where}: non-numeric 'bounding_box' {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise FormatError(path, f"{where}: 'bounding_box' {box!r} has a NaN or infinite coordinate")
    if min(x1, y1, x2, y2) < -BOX_TOLERANCE or max(x1, y1, x2, y2) > 1 + BOX_TOLERANCE:
        raise FormatError(path, f"{where}: box {box!r} is outside [0, 1] (boxes are normalised by the frame size)")
    if x2 < x1 or y2 < y1:
        raise FormatError(path, f"{where}: box {box!r} has x2 < x1 or y2 < y1")
    labels = entry["label"]
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise FormatError(path, f"{where}: 'label' must be a list of ints, found {labels!r}")
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad:
        raise FormatError(path, f"{where}: label(s) {bad} outside 0..{num_classes - 1}")
    if not isinstance(entry["person_id"], list):
        raise FormatError(path, f"{where}: 'person_id' must be a list, found {entry['person_id']!r}")


def validate_classes(classes: object, path: str | Path) -> None:
    """Check the ``classes`` list: dicts with name, id and label_type, unique ids."""
    if not isinstance(classes, list) or not classes:
        raise FormatError(path, "the second item must be a non-empty list of classes")
    seen: set[int] = set()
    for index, entry in enumerate(classes):
        if not isinstance(entry, dict) or not {"name", "id"} <= set(entry):
            raise FormatError(path, f"class {index}: expected a dict with 'name' and 'id', found {entry!r}")
        if entry["id"] in seen:
            raise FormatError(path, f"class {index}: duplicate id {entry['id']}")
        seen.add(entry["id"])


def load_annotation_pkl(path: str | Path) -> AnnotationFile:
    """Read and validate an annotation or proposal pkl.

    Args:
        path: the pkl file (``[elements, classes]``).

    Returns:
        The elements (unchanged dicts, file order) and the classes.

    Raises:
        FileNotFoundError: no such file.
        FormatError: not a pickle, not ``[elements, classes]``, or an element breaks the schema
            (the message names the element index, video and time, and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation pkl not found: {path}")
    if path.stat().st_size == 0:
        raise FormatError(path, "empty file")
    # Restricted: these files hold only lists, dicts, str, int and float, so nothing else may load.
    data = safe_load(path)
    if not isinstance(data, (list, tuple)) or len(data) != 2:
        raise FormatError(path, "expected a pickled list [elements, classes]")
    elements, classes = data
    validate_classes(classes, path)
    if not isinstance(elements, list):
        raise FormatError(path, "the first item (elements) must be a list")
    for index, element in enumerate(elements):
        validate_element(element, index, len(classes), path)
    return AnnotationFile(elements=list(elements), classes=list(classes))


def save_annotation_pkl(path: str | Path, elements: list[dict], classes: list[dict]) -> None:
    """Validate and write ``[elements, classes]`` atomically (temp file + rename)."""
    validate_classes(classes, path)
    for index, element in enumerate(elements):
        validate_element(element, index, len(classes), path)
    with atomic_open(path, "wb") as handle:
        pickle.dump([elements, classes], handle, protocol=4)


def frame_path(root: str | Path, element: dict, frame_index: int) -> Path:
    """Path of frame ``frame_index`` of an element's video: ``root/<video>/<format_str % index>``."""
    return Path(root) / element["video"] / (element["format_str"] % frame_index)
