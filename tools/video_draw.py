"""Drawing of the annotated video: person boxes, label stacks that never overlap, and a side panel with
the time, the untrained-weights stamp and the legend of the action classes shown."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
# Occupancy grid of the label placement, in pixels: stacks are placed on it, so two stacks whose
# cells do not meet cannot overlap in pixels either.
CELL = 4
# Track colours (BGR), bright enough for black text on them.
TRACK_COLOURS = ((0, 200, 255), (255, 170, 40), (90, 230, 90), (230, 110, 255), (60, 120, 255), (255, 255, 60),
                 (160, 255, 200), (200, 160, 255), (40, 220, 210), (255, 120, 170))
# Action class colours (BGR) of the legend, in order of first use: a qualitative palette.
CLASS_COLOURS = ((75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245), (180, 30, 145),
                 (240, 240, 70), (230, 50, 240), (60, 245, 210), (212, 190, 250), (128, 128, 0), (255, 190, 220),
                 (40, 110, 170), (200, 250, 255), (0, 0, 128), (195, 255, 170), (0, 128, 128), (180, 215, 255))
BACKGROUND = (32, 32, 32)
TEXT = (245, 245, 245)
STAMP = (30, 30, 210)


def display_size(video_size: tuple[int, int], height: int | None = None) -> tuple[int, int]:
    """Size of the annotated video's picture: the video's aspect at ``height`` (default: its own
    height clamped to 360..1080, so that labels stay readable on small videos and drawing stays
    cheap on large ones); both even (H.264)."""
    width, own = video_size
    target = height if height is not None else min(max(own, 360), 1080)
    return max(2, int(round(width * target / own / 2)) * 2), max(2, int(round(target / 2)) * 2)


@dataclass(frozen=True)
class Style:
    """Text and line sizes for a picture height (Hershey font)."""

    scale: float
    thickness: int
    line: int
    pad: int

    @classmethod
    def for_height(cls, height: int) -> Style:
        scale = 0.5 * height / 360
        (_, text_h), base = cv2.getTextSize("Ag", FONT, scale, 1)
        return cls(scale=scale, thickness=max(2, round(height / 240)), line=text_h + base + 4,
                   pad=max(2, round(height / 180)))

    def width(self, text: str) -> int:
        return cv2.getTextSize(text, FONT, self.scale, 1)[0][0]


@dataclass(frozen=True)
class Person:
    """One person on one frame.

    Attributes:
        track_id: the track's id.
        box: ``(x1, y1, x2, y2)`` in pixels of the picture.
        actions: top-k ``(name, score)`` (empty when not classified at this second).
    """

    track_id: int
    box: tuple[int, int, int, int]
    actions: tuple[tuple[str, float], ...]


def stack_lines(person: Person, keep: int) -> list[tuple[str, str | None]]:
    """Lines of a label stack: ``('#id', None)`` then ``keep`` actions ``('name 0.87', name)``."""
    return [(f"#{person.track_id}", None)] + [(f"{name} {score:.2f}", name) for name, score in person.actions[:keep]]


def stack_size(lines: Sequence[tuple[str, str | None]], style: Style) -> tuple[int, int]:
    swatch = style.line - 4
    width = max(style.width(text) + (swatch + style.pad if name else 0) for text, name in lines) + 2 * style.pad
    return width, style.line * len(lines)


class Occupancy:
    """Cells of the picture taken by placed label stacks (and anything else kept clear)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.grid = np.zeros((-(-height // CELL), -(-width // CELL)), dtype=np.int32)

    def _cells(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        return y // CELL, -(-(y + h) // CELL), x // CELL, -(-(x + w) // CELL)

    def free(self, x: int, y: int, w: int, h: int) -> bool:
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            return False
        r1, r2, c1, c2 = self._cells(x, y, w, h)
        return not self.grid[r1:r2, c1:c2].any()

    def take(self, x: int, y: int, w: int, h: int) -> None:
        r1, r2, c1, c2 = self._cells(x, y, w, h)
        self.grid[r1:r2, c1:c2] = 1

    def nearest_free(self, w: int, h: int, x: int, y: int) -> tuple[int, int] | None:
        """The free grid-aligned position for a ``w`` x ``h`` stack nearest to ``(x, y)``, or None."""
        rows, cols = -(-h // CELL), -(-w // CELL)
        grid_h, grid_w = self.grid.shape
        if rows > grid_h or cols > grid_w:
            return None
        summed = np.pad(self.grid, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        taken = (summed[rows:, cols:] - summed[:-rows, cols:] - summed[rows:, :-cols] + summed[:-rows, :-cols])
        free_r, free_c = np.nonzero(taken[:grid_h - rows + 1, :grid_w - cols + 1] == 0)
        ok = (free_c * CELL + w <= self.width) & (free_r * CELL + h <= self.height)
        free_r, free_c = free_r[ok], free_c[ok]
        if not len(free_r):
            return None
        best = int(np.argmin((free_c * CELL - x) ** 2 + (free_r * CELL - y) ** 2))
        return int(free_c[best] * CELL), int(free_r[best] * CELL)


def _snap(value: int) -> int:
    return (value // CELL) * CELL


def place_stacks(people: Sequence[Person], style: Style, size: tuple[int, int],
                 keep_clear: Sequence[tuple[int, int, int, int]] = ()) -> list[tuple[int, int, list] | None]:
    """Where each person's label stack goes so that no two stacks overlap.

    People are placed top to bottom (then left to right). Each tries its full stack, then the id and
    its top action, then the id alone; each size tries above its box, below it, inside its top edge,
    then the free spot nearest above its box. A person for whom nothing fits gets no stack (None).

    Args:
        people: the people of the frame.
        style: text sizes.
        size: ``(width, height)`` of the picture.
        keep_clear: rectangles ``(x, y, w, h)`` no stack may cover.

    Returns:
        Per person, ``(x, y, lines)`` of its stack's top-left corner and lines, or None.
    """
    occupancy = Occupancy(*size)
    for rect in keep_clear:
        occupancy.take(*rect)
    order = sorted(range(len(people)), key=lambda i: (people[i].box[1], people[i].box[0], people[i].track_id))
    placed: list[tuple[int, int, list] | None] = [None] * len(people)
    for index in order:
        person = people[index]
        x1, y1, x2, y2 = person.box
        for keep in dict.fromkeys((len(person.actions), min(1, len(person.actions)), 0)):
            lines = stack_lines(person, keep)
            w, h = stack_size(lines, style)
            candidates = [(x1, y1 - h), (x1, y2 + 1), (x1, y1 + 1), (x2 - w, y1 - h)]
            spot = next(((_snap(x), _snap(y)) for x, y in candidates
                         if occupancy.free(_snap(x), _snap(y), w, h)), None)
            spot = spot or occupancy.nearest_free(w, h, x1, y1 - h)
            if spot is not None:
                occupancy.take(spot[0], spot[1], w, h)
                placed[index] = (spot[0], spot[1], lines)
                break
    return placed


def track_colour(track_id: int) -> tuple[int, int, int]:
    return TRACK_COLOURS[track_id % len(TRACK_COLOURS)]


def _text(image: np.ndarray, text: str, x: int, y: int, style: Style, colour: tuple[int, int, int]) -> None:
    """Text with its top-left corner at ``(x, y)`` of a line of ``style.line`` pixels."""
    (_, text_h), base = cv2.getTextSize(text, FONT, style.scale, 1)
    baseline = y + (style.line + text_h - base) // 2
    cv2.putText(image, text, (x, baseline), FONT, style.scale, colour, 1, cv2.LINE_AA)


def draw_people(image: np.ndarray, people: Sequence[Person], style: Style, colours: dict[str, tuple[int, int, int]],
                keep_clear: Sequence[tuple[int, int, int, int]] = ()) -> int:
    """Draw the boxes, then the label stacks (so that no box line crosses a label); in place.

    Returns:
        How many people got no stack (no room left on the picture).
    """
    for person in people:
        x1, y1, x2, y2 = person.box
        cv2.rectangle(image, (x1, y1), (x2, y2), track_colour(person.track_id), style.thickness)
    placements = place_stacks(people, style, (image.shape[1], image.shape[0]), keep_clear)
    swatch = style.line - 4
    for person, placement in zip(people, placements):
        if placement is None:
            continue
        x, y, lines = placement
        w, h = stack_size(lines, style)
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), BACKGROUND, cv2.FILLED)
        cv2.rectangle(image, (x, y), (x + w - 1, y + style.line - 1), track_colour(person.track_id), cv2.FILLED)
        for row, (text, name) in enumerate(lines):
            top = y + row * style.line
            left = x + style.pad
            if name is not None:
                cv2.rectangle(image, (left, top + 2), (left + swatch - 1, top + 2 + swatch - 1),
                              colours.get(name, TEXT), cv2.FILLED)
                left += swatch + style.pad
            _text(image, text, left, top, style, (0, 0, 0) if name is None else TEXT)
    return sum(placement is None for placement in placements)


def class_colours(names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per action class name, in the given order (most shown first); the palette repeats."""
    return {name: CLASS_COLOURS[index % len(CLASS_COLOURS)] for index, name in enumerate(names)}


def panel_width(style: Style, legend: Sequence[str], height: int) -> int:
    """Width of the side panel: its widest line, at least a third of the height."""
    texts = ["UNTRAINED", "WEIGHTS", "t 00:00:00.0", "actions shown"] + list(legend)
    widest = max(style.width(text) for text in texts) + style.line + 4 * style.pad
    return -(-max(widest, height // 3) // 2) * 2  # even: H.264


def draw_panel(panel: np.ndarray, style: Style, seconds: float, people: int, legend: Sequence[str],
               colours: dict[str, tuple[int, int, int]], untrained: bool) -> None:
    """The side panel: stamp (untrained weights), time, people on screen, legend of action classes."""
    panel[:] = BACKGROUND
    width = panel.shape[1]
    y = style.pad
    if untrained:
        block = 2 * style.line + 2 * style.pad
        cv2.rectangle(panel, (style.pad, y), (width - style.pad - 1, y + block - 1), STAMP, cv2.FILLED)
        for row, text in enumerate(("UNTRAINED", "WEIGHTS")):
            _text(panel, text, 2 * style.pad, y + style.pad + row * style.line, style, (255, 255, 255))
        y += block + style.pad
    minutes, rest = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    for text in (f"t {hours:02d}:{minutes:02d}:{rest:04.1f}", f"people {people}", "actions shown"):
        _text(panel, text, 2 * style.pad, y, style, TEXT)
        y += style.line
    swatch = style.line - 4
    room = (panel.shape[0] - y - style.pad) // style.line
    shown = list(legend) if len(legend) <= room else list(legend)[:max(0, room - 1)]
    for name in shown:
        cv2.rectangle(panel, (2 * style.pad, y + 2), (2 * style.pad + swatch - 1, y + 1 + swatch), colours[name],
                      cv2.FILLED)
        _text(panel, name, 3 * style.pad + swatch, y, style, TEXT)
        y += style.line
    if len(shown) < len(legend):
        _text(panel, f"... {len(legend) - len(shown)} more", 2 * style.pad, y, style, TEXT)
