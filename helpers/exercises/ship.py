"""Checks for notebook 08, ship it: the best checkpoint, drift-monitor settings and a decline detector."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict


def check_best_checkpoint(choice, table) -> bool:
    """``choice``: the model name (or step) of the checkpoint with the lowest full validation loss in
    ``table`` (a :func:`helpers.ship.checkpoint_table`)."""
    if _not_done(choice):
        return False
    table = table.dropna(subset=["full_valid_loss"])
    if table.empty:
        return _verdict(["the table has no full validation loss: the job needs a validation file"])
    best = table.loc[table["full_valid_loss"].idxmin()]
    if choice in (best["model"], best["step"]):
        return _verdict([])
    last = table.iloc[-1]
    hint = (" The last checkpoint is not always the best: compare full_valid_loss, not train_loss."
            if choice in (last["model"], last["step"]) else " Look at the full_valid_loss column.")
    return _verdict([f"{choice!r} is not the checkpoint with the lowest validation loss.{hint}"])


def check_drift_settings(window, threshold, baseline: float, in_domain, shifted) -> bool:
    """A :class:`helpers.ship.DriftMonitor` with ``window`` and ``threshold`` must stay quiet on the
    in-domain stream (``in_domain``: True/False per request) and raise an alert during ``shifted``."""
    from helpers.ship import DriftMonitor

    if _not_done(window) or _not_done(threshold):
        return False
    if not isinstance(window, int) or window < 1 or not 0 < threshold < 1:
        return _verdict(["window must be a whole number of requests and threshold a fraction, e.g. 0.15"])
    monitor = DriftMonitor(baseline, window=window, threshold=threshold)
    quiet = [n for n, correct in enumerate(in_domain, start=1) if monitor.add(correct)]
    caught = [n for n, correct in enumerate(shifted, start=len(in_domain) + 1) if monitor.add(correct)]
    problems = []
    if quiet:
        problems.append(f"false alarm at request {quiet[0]}, before the shift: the threshold is too small "
                        "for this window (see ship.suggest_threshold)")
    if not caught:
        problems.append(f"no alert in the {len(shifted)} shifted requests: the window is too long or the "
                        "threshold too large")
    return _verdict(problems)


DECLINE_CASES = [
    "I don't know.",
    "The passages do not say what the Wi-Fi password is.",
    "Sorry, I cannot find that in the manual.",
    "There is no information about the bin collection day.",
    "I'm not sure; the manual doesn't mention it.",
    "That is not mentioned in the passages.",
]
ANSWER_CASES = [
    "Start the heater by 16:30 [1].",
    "The garage remote is in the key drawer of the oak chest.",
    "No, it is defrosting; steam for up to 10 minutes is normal.",
    "Press and hold the button for 10 seconds [2].",
    "It knows the tariff and charges the car after 23:00.",
    "Don't open the fuse box yourself; call Larkspur support.",
]


def check_decline_detector(detect) -> bool:
    """``detect(answer)`` must be True for every :data:`DECLINE_CASES` and False for every :data:`ANSWER_CASES`."""
    if _not_done(detect):
        return False
    problems = [f"missed the decline {a!r}" for a in DECLINE_CASES if not detect(a)]
    problems += [f"called the answer {a!r} a decline" for a in ANSWER_CASES if detect(a)]
    return _verdict(problems)
