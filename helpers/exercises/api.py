"""Checks for notebook 03, fine-tune through the API: the ``"auto"`` epochs rule and a job's events as a frame."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict

AUTO_EPOCH_CASES = (1, 10, 24, 33, 34, 50, 120, 480, 5_000, 8_333, 8_334, 30_000, 100_000)


def check_auto_epochs(auto_epochs) -> bool:
    """``auto_epochs(n_examples)`` must give the ``n_epochs`` that ``"auto"`` resolves to (OpenAI's rule,
    :func:`helpers.tokens.default_epochs`) for every case in :data:`AUTO_EPOCH_CASES`."""
    from helpers.tokens import default_epochs

    if _not_done(auto_epochs):
        return False
    problems = []
    for n in AUTO_EPOCH_CASES:
        got, expected = auto_epochs(n), default_epochs(n)
        if got is ... or got is None:
            problems.append(f"auto_epochs({n}) returned {got!r}: the function body is not written yet")
            break
        if got != expected:
            problems.append(f"auto_epochs({n}) gave {got!r}, expected {expected} "
                            f"({n} x {expected} = {n * expected:,} example-passes)")
    if problems:
        problems.append("the rule: 3 epochs, unless that gives fewer than 100 or more than 25,000 "
                        "example-passes; then the whole number of epochs (integer division) closest to that "
                        "bound, from 1 to 25")
    return _verdict(problems)


def _metrics_rows(events) -> list[dict]:
    """The ``data`` of each metrics event that names a step, oldest step first, one row per step."""
    rows = {}
    for event in events:
        data = getattr(event, "data", None) or {}
        if getattr(event, "type", None) == "metrics" and "step" in data:
            rows.setdefault(int(data["step"]), data)
    return [rows[step] for step in sorted(rows)]


def check_events_frame(events_to_frame, events) -> bool:
    """``events_to_frame(events)`` turns a job's events (newest first, as the API lists them) into a
    DataFrame with one row per step, oldest first, and the columns step, train_loss and valid_loss."""
    import math

    import pandas as pd

    if _not_done(events_to_frame):
        return False
    frame = events_to_frame(events)
    if frame is ... or frame is None:
        _not_done(None)  # prints the "not done yet" hint
        return False
    if not isinstance(frame, pd.DataFrame):
        return _verdict([f"return a pandas DataFrame, not {type(frame).__name__}"])
    expected = _metrics_rows(events)
    missing = [c for c in ("step", "train_loss", "valid_loss") if c not in frame.columns]
    if missing:
        return _verdict([f"the frame needs the column(s) {missing}; it has {list(frame.columns)}"])
    problems = []
    steps = [int(s) for s in frame["step"]]
    if steps != [int(r["step"]) for r in expected]:
        if len(steps) != len(set(steps)):
            problems.append("some steps appear twice: the end-of-epoch summary repeats its step; keep one row")
        elif steps != sorted(steps):
            problems.append("sort the rows by step, oldest first (the API lists events newest first)")
        else:
            problems.append(f"expected {len(expected)} steps (every metrics event with a step), got {len(steps)}")
    else:
        for row, want in zip(frame.itertuples(), expected):
            for column in ("train_loss", "valid_loss"):
                got, ref = getattr(row, column), want.get(column)
                same = (ref is None and (got is None or got != got)) or \
                    (ref is not None and got is not None and math.isclose(float(got), float(ref), rel_tol=1e-6))
                if not same:
                    problems.append(f"step {row.step}: {column} is {got!r}, the event says {ref!r}")
                    break
            if problems:
                break
    return _verdict(problems)
