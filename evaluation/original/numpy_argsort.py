"""numpy 1.21.6's default ``np.argsort`` for float64, reproduced exactly (the original evaluator's ranking).

An introsort, compiled with numba: median-of-three quicksort on an explicit stack (the smaller side
first), insertion sort for partitions of at most 16 elements, heapsort once the depth exceeds
2 floor(log2 n). It is not stable, so it fixes the order of equal scores whatever numpy runs
(docs/protocol.md, section 2, step 6). Golden orders of numpy 1.21.6 itself:
``tests/data/eval/original_protocol/argsort_numpy_1_21_6.npz``.
"""
from __future__ import annotations

import numba
import numpy as np

# numpy's introsort switches to insertion sort for partitions of at most this many + 1 elements.
_SMALL_QUICKSORT = 15
# Explicit stack of the iterative quicksort: the larger partition is pushed, so log2(n) entries suffice.
_STACK_SIZE = 128


@numba.njit(cache=True, inline="always")
def _less(a: float, b: float) -> bool:
    # numpy's float "less than" orders NaN last; scores are checked finite before they get here.
    return a < b or (b != b and a == a)


@numba.njit(cache=True)
def _most_significant_bit(number: int) -> int:
    depth = 0
    number >>= 1
    while number:
        depth += 1
        number >>= 1
    return depth


@numba.njit(cache=True, inline="always")
def _heap_sift(values: np.ndarray, order: np.ndarray, base: int, slot: int, count: int, moving: int) -> None:
    """Sink ``moving`` from ``slot`` into the 1-based max-heap ``order[base + 1 .. base + count]``."""
    child = slot << 1
    while child <= count:
        if child < count and _less(values[order[base + child]], values[order[base + child + 1]]):
            child += 1
        if _less(values[moving], values[order[base + child]]):
            order[base + slot] = order[base + child]
            slot = child
            child += child
        else:
            break
    order[base + slot] = moving


@numba.njit(cache=True)
def _heapsort_indices(values: np.ndarray, order: np.ndarray, start: int, count: int) -> None:
    """Heapsort ``order[start:start+count]`` by ``values`` (1-based heap over the slice)."""
    base = start - 1
    for half in range(count >> 1, 0, -1):
        _heap_sift(values, order, base, half, count, order[base + half])
    while count > 1:
        moving = order[base + count]
        order[base + count] = order[base + 1]
        count -= 1
        _heap_sift(values, order, base, 1, count, moving)


@numba.njit(cache=True)
def numpy_1_21_argsort(values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values`` ascending, in exactly the order numpy 1.21.6's ``np.argsort`` gives.

    Args:
        values: ``[N]`` float64.

    Returns:
        ``[N]`` int64 permutation (ties in introsort order, not stable).
    """
    count = len(values)
    order = np.arange(count)
    if count < 2:
        return order
    bounds = np.empty(2 * _STACK_SIZE, dtype=np.int64)
    depths = np.empty(_STACK_SIZE, dtype=np.int64)
    top = 0
    low, high = 0, count - 1
    depth = _most_significant_bit(count) * 2
    while True:
        if depth < 0:
            _heapsort_indices(values, order, low, high - low + 1)
        else:
            while high - low > _SMALL_QUICKSORT:
                middle = low + ((high - low) >> 1)
                # Median of three moves the pivot candidate to the middle, the extremes to the ends.
                if _less(values[order[middle]], values[order[low]]):
                    order[middle], order[low] = order[low], order[middle]
                if _less(values[order[high]], values[order[middle]]):
                    order[high], order[middle] = order[middle], order[high]
                if _less(values[order[middle]], values[order[low]]):
                    order[middle], order[low] = order[low], order[middle]
                pivot = values[order[middle]]
                left, right = low, high - 1
                order[middle], order[right] = order[right], order[middle]
                while True:
                    left += 1
                    while _less(values[order[left]], pivot):
                        left += 1
                    right -= 1
                    while _less(pivot, values[order[right]]):
                        right -= 1
                    if left >= right:
                        break
                    order[left], order[right] = order[right], order[left]
                order[left], order[high - 1] = order[high - 1], order[left]
                # Continue with the smaller side; the larger one waits on the stack with the depth.
                if left - low < high - left:
                    bounds[2 * top], bounds[2 * top + 1] = left + 1, high
                    high = left - 1
                else:
                    bounds[2 * top], bounds[2 * top + 1] = low, left - 1
                    low = left + 1
                depth -= 1
                depths[top] = depth
                top += 1
            for index in range(low + 1, high + 1):
                moving = order[index]
                moving_value = values[moving]
                slot = index
                while slot > low and _less(moving_value, values[order[slot - 1]]):
                    order[slot] = order[slot - 1]
                    slot -= 1
                order[slot] = moving
        if top == 0:
            break
        top -= 1
        low, high, depth = bounds[2 * top], bounds[2 * top + 1], depths[top]
    return order
