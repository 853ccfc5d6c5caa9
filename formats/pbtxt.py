"""The AVA label map (``list_action.pbtxt``): ``item { name: "..." id: N }`` blocks."""
from __future__ import annotations

import re
from pathlib import Path

from formats.atomic import write_text_atomic
from formats.errors import FormatError

_ITEM = re.compile(r"item\s*\{(?P<body>[^{}]*)\}", re.S)
_NAME = re.compile(r'name\s*:\s*"(?P<name>[^"]*)"')
_ID = re.compile(r"(?<![a-z_])id\s*:\s*(?P<id>-?\d+)")


def read_label_map(path: str | Path) -> dict[int, str]:
    """Read a label map.

    Args:
        path: the pbtxt file.

    Returns:
        ``{class_id: name}`` in file order (ids as written, e.g. 1..50 for Chaotic World).

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: no item, an item without name or id, a duplicate id, or text outside items.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    text = path.read_text(encoding="utf-8")
    labels: dict[int, str] = {}
    last_end = 0
    for match in _ITEM.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        stray = _strip_comments(text[last_end:match.start()])
        if stray:
            raise FormatError(path, f"unexpected text outside an item: {stray[:40]!r}", line)
        last_end = match.end()
        body = match.group("body")
        name, class_id = _NAME.search(body), _ID.search(body)
        if name is None or class_id is None:
            raise FormatError(path, "item without a quoted 'name' or an integer 'id'", line)
        key = int(class_id.group("id"))
        if key in labels:
            raise FormatError(path, f"duplicate class id {key}", line)
        labels[key] = name.group("name")
    if not labels:
        raise FormatError(path, "no 'item { name: ... id: ... }' entries (empty or not a label map)")
    trailing = _strip_comments(text[last_end:])
    if trailing:
        # An unclosed or misspelled last item would otherwise vanish without a word.
        line = text.count("\n", 0, last_end) + 1
        raise FormatError(path, f"unexpected text after the last item: {trailing[:40]!r}", line)
    return labels


def _strip_comments(text: str) -> str:
    """``text`` without '#' comment lines and surrounding blanks."""
    kept = [row for row in text.splitlines() if row.strip() and not row.strip().startswith("#")]
    return "\n".join(kept).strip()


def write_label_map(path: str | Path, labels: dict[int, str]) -> None:
    """Write ``{class_id: name}`` as an AVA-style pbtxt, atomically."""
    lines = []
    for class_id, name in labels.items():
        lines.append(f'item {{\n  name: "{name}"\n  id: {int(class_id)}\n}}\n')
    write_text_atomic(path, "".join(lines))
