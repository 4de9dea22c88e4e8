"""Checks for notebook 06, read the metrics: fit verdicts, macro F1, ROUGE-L's blind spot, and the mystery runs."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict


def check_fit_verdicts(answers: dict, runs: dict) -> bool:
    """``answers`` maps each run name in ``runs`` to "underfitting", "overfitting" or "good fit"."""
    from helpers.metrics import VERDICTS, diagnose

    if _not_done(answers):
        return False
    hints = {"overfitting": "look at the validation loss: does it turn up while the training loss keeps falling?",
             "underfitting": "look at the end of the training loss: is it still falling steeply?",
             "good fit": "both losses flatten out and stay close together"}
    problems = []
    for name, frame in runs.items():
        given, expected = str(answers.get(name, "")).strip().lower(), diagnose(frame).verdict
        if given not in VERDICTS:
            problems.append(f"run {name}: answer one of {VERDICTS}, not {given!r}")
        elif given != expected:
            problems.append(f"run {name}: not {given}. Hint: {hints[expected]}")
    return _verdict(problems)


def check_macro_f1(macro_f1) -> bool:
    """``macro_f1(truth, predicted, labels)`` must match scikit-learn's macro-averaged F1."""
    from sklearn.metrics import f1_score

    if _not_done(macro_f1):
        return False
    labels = ["lights", "heating", "media"]
    cases = [(["lights", "heating", "media"], ["lights", "heating", "media"]),
             (["lights", "lights", "heating", "media"], ["lights", "heating", "heating", "lights"]),
             (["lights", "heating", "media", "media"], ["lights", "lights", "lights", "lights"]),
             (["heating", "media"], ["lights", "lights"])]
    problems = []
    for truth, predicted in cases:
        expected = f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)
        got = macro_f1(truth, predicted, labels)
        if got is None or abs(float(got) - expected) > 1e-9:
            problems.append(f"truth={truth}, predicted={predicted}: got {got}, expected {expected:.4f}. Hint: "
                            "F1 = 2PR/(P+R) per label (0 when P+R is 0), then the plain mean over labels.")
    return _verdict(problems)


def check_rouge_blind_spot(text, reference: str, threshold: float = 0.5) -> bool:
    """``text`` scores ROUGE-L >= ``threshold`` against ``reference`` yet changes one of its numbers."""
    import re

    from helpers.metrics import rouge_l

    if _not_done(text):
        return False
    score = rouge_l([text], [reference])
    numbers = re.compile(r"\d+(?:[.,]\d+)?")
    problems = []
    if score < threshold:
        problems.append(f"ROUGE-L is {score:.2f}, below {threshold}: keep more of the reference's wording")
    if sorted(numbers.findall(text)) == sorted(numbers.findall(reference)):
        problems.append("every number is still the same as in the reference: change one (a wrong fact)")
    if not problems:
        print(f"ROUGE-L {score:.2f} for a description with a wrong number: the metric cannot tell.")
    return _verdict(problems)


def mystery_runs() -> dict:
    """Three made-up runs, ``{"A": frame, "B": frame, "C": frame}``, for notebook 06's diagnosis exercise."""
    from helpers.metrics import synthetic_curve

    kinds = {"A": "overfitting", "B": "underfitting", "C": "good fit"}
    return {name: synthetic_curve(kind, seed=11).assign(source=f"run {name}") for name, kind in kinds.items()}
