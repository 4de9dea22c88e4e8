"""Checks for notebook 05, choose a base model and how much data: the gain per doubling of the data."""
from __future__ import annotations

import math

import numpy as np

from helpers.exercises._common import _not_done, _verdict

# (sizes, accuracies, the gain per doubling): a straight line in log2(n), with several runs per size in the last
DOUBLING_CASES = [
    ([6, 12, 24, 48], [0.40, 0.50, 0.60, 0.70], 0.10),
    ([10, 20, 40, 80, 160], [0.30, 0.35, 0.40, 0.45, 0.50], 0.05),
    ([6, 6, 12, 12, 24, 24], [0.50, 0.54, 0.58, 0.66, 0.70, 0.70], 0.09),
]


def check_gain_per_doubling(gain_per_doubling, sizes=None, accuracies=None, expected=None) -> bool:
    """``gain_per_doubling(sizes, accuracies)`` must return the slope of a straight line fitted to the
    accuracies against log2 of the sizes (one point per run). The check tries the cases above and, when
    given, the notebook's own curve (``sizes``, ``accuracies``) against ``expected``."""
    if _not_done(gain_per_doubling):
        return False
    cases = list(DOUBLING_CASES) + ([(list(sizes), list(accuracies), expected)] if sizes is not None else [])
    problems = []
    for n, acc, want in cases:
        got = gain_per_doubling(n, acc)
        if got is ... or got is None:
            problems.append("gain_per_doubling returned None: the function body is not written yet")
            break
        got = float(got)
        if abs(got - want) <= 1e-6 + 1e-3 * abs(want):
            continue
        hint = ""
        for base, name in ((10, "log10"), (math.e, "the natural log")):
            if abs(got - want * math.log2(base)) < 1e-3 * abs(want) + 1e-9:
                hint = f" (you used {name}: one doubling is a step of 1 in log2(n))"
        if not hint and abs(got - float(np.polyfit(n, acc, 1)[0])) < 1e-9:
            hint = " (that is the slope against n itself: fit against log2(n))"
        problems.append(f"sizes {n[:4]}...: you computed {got:.4f}, expected {want:.4f}{hint}")
    return _verdict(problems)
