"""Make ``argsort_numpy_1_21_6.npz``: numpy 1.21.6's default and heapsort argsort orders on tie-heavy arrays.

Run it with Python 3.7 and numpy 1.21.6 (the version the original SFMViT pins), e.g.
``python3.7 -m venv /tmp/py37 && /tmp/py37/bin/pip install numpy==1.21.6`` then
``/tmp/py37/bin/python make_argsort_golden.py``. The inputs are rebuilt by ``argsort_cases`` (the
test does the same), so only the expected permutations are stored.
"""
import numpy as np


def argsort_cases():
    """Deterministic float64 arrays with many ties and the patterns that stress a quicksort."""
    cases = []
    for n in (0, 1, 2, 3, 5, 15, 16, 17, 30, 100, 517, 2000):
        state = np.random.RandomState(n)
        cases += [np.round(state.rand(n), 1), np.round(state.beta(0.5, 6, n), 3),
                  np.sort(np.round(state.rand(n), 2)), np.sort(np.round(state.rand(n), 2))[::-1].copy(),
                  np.concatenate([np.arange(n // 2), np.arange(n - n // 2)[::-1]]).astype(float),
                  np.repeat(np.round(state.rand(max(1, n // 7)), 3), 7)[:n].astype(float)]
    return [np.ascontiguousarray(case, dtype=np.float64) for case in cases]


if __name__ == "__main__":
    assert np.__version__ == "1.21.6", np.__version__
    cases = argsort_cases()
    np.savez_compressed("argsort_numpy_1_21_6.npz",
                        **{"default_%d" % i: np.argsort(c).astype(np.int32) for i, c in enumerate(cases)},
                        **{"heapsort_%d" % i: np.argsort(c, kind="heapsort").astype(np.int32)
                           for i, c in enumerate(cases)})
    print("wrote", len(cases), "cases")
