"""The AVA label map in both of its layouts: ``item { name id }`` and ``label { name label_id label_type }``.

The published files of both datasets, Chaotic World's ``list_action.pbtxt`` (50 classes, every one
``PERSON_MOVEMENT``) and AVA v2.2's ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``, use
``label { name: "..." label_id: N label_type: T }``; copies in circulation also use ``item { name:
"..." id: N }``. The official reader accepts both spellings of the id, so we do too, with any
whitespace and in any field order; both layouts may not be mixed in one file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.atomic import write_text_atomic
from common.errors import FormatError

_BLOCK = re.compile(r"(?<![A-Za-z0-9_])(?P<kind>item|label)\s*\{(?P<body>[^{}]*)\}", re.S)
_NAME = re.compile(r'(?<![A-Za-z0-9_])name\s*:\s*"(?P<name>[^"]*)"')
# ``id`` (item layout) or ``label_id`` (label layout); the look-behind keeps ``label_id`` from also
# matching as ``id`` and ``xid`` from matching at all.
_ID = {"item": re.compile(r"(?<![A-Za-z0-9_])id\s*:\s*(?P<id>-?\d+)"),
       "label": re.compile(r"(?<![A-Za-z0-9_])label_id\s*:\s*(?P<id>-?\d+)")}
_TYPE = re.compile(r"(?<![A-Za-z0-9_])label_type\s*:\s*(?P<type>[A-Za-z_][A-Za-z0-9_]*)")
_ID_SPELLING = {"item": "id", "label": "label_id"}


@dataclass(frozen=True)
class LabelMapEntry:
    """One class of a label map.

    Attributes:
        class_id: the id as written (1..50 for Chaotic World, 1..80 for AVA).
        name: the class name.
        label_type: ``PERSON_MOVEMENT`` etc. in the AVA layout, None where the file has none.
    """

    class_id: int
    name: str
    label_type: str | None = None


def read_label_map_entries(path: str | Path) -> list[LabelMapEntry]:
    """Read a label map in either layout, keeping file order and label types.

    Args:
        path: the pbtxt file.

    Returns:
        The entries in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: no block, a block without name or id, a duplicate id, both layouts in one file,
            or text outside the blocks (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(path, f"not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    entries: list[LabelMapEntry] = []
    seen: set[int] = set()
    layout: str | None = None
    last_end = 0
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        stray = _strip_comments(text[last_end:match.start()])
        if stray:
            raise FormatError(path, f"unexpected text outside an item or label block: {stray[:40]!r}", line)
        last_end = match.end()
        kind, body = match.group("kind"), match.group("body")
        if layout is None:
            layout = kind
        elif kind != layout:
            raise FormatError(path, f"a '{kind} {{ ... }}' block in a file of '{layout} {{ ... }}' blocks", line)
        name, class_id = _NAME.search(body), _ID[kind].search(body)
        if name is None or class_id is None:
            raise FormatError(path, f"{kind} without a quoted 'name' or an integer '{_ID_SPELLING[kind]}'", line)
        key = int(class_id.group("id"))
        if key in seen:
            raise FormatError(path, f"duplicate class id {key}", line)
        seen.add(key)
        label_type = _TYPE.search(body)
        entries.append(LabelMapEntry(key, name.group("name"), label_type.group("type") if label_type else None))
    if not entries:
        raise FormatError(path, "no 'item { name: ... id: ... }' or 'label { name: ... label_id: ... }' entries "
                                "(empty or not a label map)")
    trailing = _strip_comments(text[last_end:])
    if trailing:
        # An unclosed or misspelled last block would otherwise vanish without a word.
        line = text.count("\n", 0, last_end) + 1
        raise FormatError(path, f"unexpected text after the last item or label block: {trailing[:40]!r}", line)
    return entries


def read_label_map(path: str | Path) -> dict[int, str]:
    """Read a label map in either layout.

    Args:
        path: the pbtxt file.

    Returns:
        ``{class_id: name}`` in file order (ids as written, e.g. 1..50 for Chaotic World).

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: see ``read_label_map_entries``.
    """
    return {entry.class_id: entry.name for entry in read_label_map_entries(path)}


def _strip_comments(text: str) -> str:
    """``text`` without '#' comment lines and surrounding blanks."""
    kept = [row for row in text.splitlines() if row.strip() and not row.strip().startswith("#")]
    return "\n".join(kept).strip()


def write_label_map(path: str | Path, labels: dict[int, str], label_types: dict[int, str] | None = None) -> None:
    """Write ``{class_id: name}`` atomically: the ``item`` layout, or the AVA ``label`` layout with types.

    Args:
        path: output pbtxt.
        labels: ``{class_id: name}`` in the order to write.
        label_types: ``{class_id: label_type}``; when given, every block is written in the AVA v2.2
            layout ``label { name label_id label_type }``.
    """
    lines = []
    for class_id, name in labels.items():
        if label_types is None:
            lines.append(f'item {{\n  name: "{name}"\n  id: {int(class_id)}\n}}\n')
        else:
            lines.append(f'label {{\n  name: "{name}"\n  label_id: {int(class_id)}\n'
                         f'  label_type: {label_types[class_id]}\n}}\n')
    write_text_atomic(path, "".join(lines))
