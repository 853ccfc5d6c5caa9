"""Drawing of the annotated video: label stacks never overlap (however crowded), stay on the picture,
and the side panel carries the stamp and the legend."""
from __future__ import annotations

import numpy as np
import pytest

from tools.video_draw import (STAMP, Person, Style, class_colours, draw_panel, draw_people, place_stacks,
                              stack_size)

ACTIONS = (("watching", 0.56), ("fighting", 0.40), ("walking", 0.12))


def _rects(people: list[Person], style: Style, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    placed = place_stacks(people, style, size)
    rects = []
    for placement in placed:
        if placement is not None:
            x, y, lines = placement
            rects.append((x, y, *stack_size(lines, style)))
    return rects


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("height,people,seed", [(360, 2, 0), (360, 6, 1), (360, 25, 2), (720, 12, 3), (1080, 40, 4)])
def test_label_stacks_never_overlap_and_stay_on_the_picture(height: int, people: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    width = height * 16 // 9
    style = Style.for_height(height)
    crowd = []
    for track in range(people):
        # Neighbours side by side at one depth: the case whose labels used to print over each other.
        x = int(rng.uniform(0, width - 60))
        y = int(rng.uniform(0.2, 0.5) * height)
        crowd.append(Person(track + 1, (x, y, x + int(0.08 * width), y + int(0.4 * height)), ACTIONS))
    rects = _rects(crowd, style, (width, height))
    assert len(rects) >= min(people, 6)  # a few people always fit; a crowd may lose some stacks
    for index, rect in enumerate(rects):
        assert rect[0] >= 0 and rect[1] >= 0 and rect[0] + rect[2] <= width and rect[1] + rect[3] <= height
        assert not any(_overlap(rect, other) for other in rects[index + 1:])


def test_two_neighbours_both_get_their_full_stacks() -> None:
    style = Style.for_height(360)
    pair = [Person(1, (200, 120, 260, 300), ACTIONS), Person(2, (230, 118, 290, 300), ACTIONS)]
    placed = place_stacks(pair, style, (640, 360))
    assert all(placement is not None and len(placement[2]) == 4 for placement in placed)
    rects = _rects(pair, style, (640, 360))
    assert not _overlap(*rects)


def test_drawing_marks_the_boxes_and_the_panel_says_untrained() -> None:
    style = Style.for_height(360)
    frame = np.zeros((360, 640, 3), dtype=np.uint8)
    colours = class_colours([name for name, _ in ACTIONS])
    missing = draw_people(frame, [Person(3, (300, 150, 360, 330), ACTIONS)], style, colours)
    assert missing == 0
    assert frame[240, 300].any() and not frame[240, 330].any()  # left edge drawn, inside untouched
    assert frame[150 - 4 * style.line:150, 300:360].any()  # the stack above the box
    panel = np.zeros((360, 200, 3), dtype=np.uint8)
    draw_panel(panel, style, 12.0, 1, ["watching", "fighting"], colours, untrained=True)
    stamp = np.all(panel == np.array(STAMP, dtype=np.uint8), axis=-1)
    assert stamp[:2 * style.line].sum() > 2000  # the red UNTRAINED WEIGHTS block at the top
    trained = np.zeros_like(panel)
    draw_panel(trained, style, 12.0, 1, ["watching"], colours, untrained=False)
    assert not np.all(trained == np.array(STAMP, dtype=np.uint8), axis=-1).any()
