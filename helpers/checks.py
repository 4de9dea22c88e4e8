"""Checks that teach: a measured value against the range the lesson states.

A notebook states what you should see ("LoRA should reach at least 95%"), measures it, then checks::

    from helpers.checks import expect
    expect("lora_accuracy", lora_scores["accuracy"])

which prints one line for the learner::

    ✓ LoRA's accuracy on the held-out test requests: 97.3% (expected 95.0% to 100.0%)

or, when the value falls outside the range, a ⚠ line that says what a different value means. A ⚠ never
stops Run All. It raises :class:`ClaimNotMet` in ``ci`` mode and in the strict claims run
(``COURSE_STRICT=1``, set by ``make claims``), so that what the prose says is what the code measured.

The ranges for every mode live in one place, :mod:`helpers.expectations`, not in the cells. With
``COURSE_CLAIMS_LOG`` set to a file, every check appends one JSON line there (the claims run reads it).

Exercise solutions prove themselves with :func:`confirm`: it runs the exercise's check without its
chatter and prints a single ✓ or ✗ line.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os

from helpers.environment import get_mode
from helpers.expectations import EXPECTATIONS, Expectation


class ClaimNotMet(AssertionError):
    """A measured value fell outside the range the notebook states (raised in ci mode and strict runs)."""


def strict() -> bool:
    """True where an unmet expectation must fail: ci mode, or ``COURSE_STRICT=1`` (the claims run)."""
    return get_mode() == "ci" or os.environ.get("COURSE_STRICT", "").strip().lower() in {"1", "true", "yes"}


def expected_range(key: str, mode: str | None = None) -> tuple[float, float]:
    """``(low, high)`` that :func:`expect` applies to ``key`` in ``mode`` (default: the current mode)."""
    return _lookup(key).range_for(mode or get_mode())


def expect(key: str, value) -> bool:
    """Compare ``value`` with the range that :data:`helpers.expectations.EXPECTATIONS` gives ``key`` for this
    mode; print a ✓ or ⚠ line; log it for the claims run; raise :class:`ClaimNotMet` where :func:`strict`.
    Returns whether the value was in range."""
    spec = _lookup(key)
    mode = get_mode()
    low, high = spec.range_for(mode)
    number = float(value)
    passed = not math.isnan(number) and low <= number <= high
    shown = spec.format(number)
    span = spec.describe(low, high)
    _log(key, spec, number, low, high, passed, mode)
    if passed:
        print(f"✓ {spec.claim}: {shown} ({span})")
        return True
    message = f"⚠ {spec.claim}: {shown}, but {span}. {spec.otherwise}"
    if strict():
        raise ClaimNotMet(f"{message} [expectation {key!r}, {mode} mode]")
    print(message)
    return False


def confirm(check, *args) -> bool:
    """Run an exercise ``check(*args)`` quietly and print one line: ✓ when it passes, ✗ with its message when
    not. Solution cells use it; in ci mode and strict runs a failing solution raises."""
    with contextlib.redirect_stdout(io.StringIO()) as said:
        ok = bool(check(*args))
    if ok:
        print("✓ the solution passes the check")
        return True
    text = said.getvalue().strip()
    if strict():
        raise ClaimNotMet(f"The solution fails its own check: {text}")
    print(f"✗ the solution does not pass the check: {text}")
    return False


def _lookup(key: str) -> Expectation:
    try:
        return EXPECTATIONS[key]
    except KeyError:
        close = [k for k in EXPECTATIONS if key.split("_")[0] in k][:5]
        raise KeyError(f"No expectation named {key!r} in helpers/expectations.py"
                       + (f"; similar: {', '.join(close)}" if close else "")) from None


def _log(key, spec, value, low, high, passed, mode) -> None:
    path = os.environ.get("COURSE_CLAIMS_LOG")
    if not path:
        return
    row = {"notebook": spec.notebook, "key": key, "claim": spec.claim, "value": value, "low": low,
           "high": high, "expected": spec.describe(low, high), "measured": spec.format(value), "pass": passed,
           "mode": mode}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
