"""Shared pieces of the exercise checks: the "not done yet" hint, the verdict and multiple-choice answers."""
from __future__ import annotations


def _not_done(answer) -> bool:
    """Print the "not done yet" hint and return True while ``answer`` is still ``...`` (or None)."""
    if answer is ... or answer is None:
        print("Not done yet: replace the ... with your answer, run the cell, then run this check again.")
        return True
    return False


def _verdict(problems: list[str]) -> bool:
    """Print the ``problems`` and return False, or print "Correct!" and return True when there are none."""
    if problems:
        print("Not quite:\n- " + "\n- ".join(problems))
        return False
    print("Correct!")
    return True


def _check_choices(answers: dict, scenarios: dict, choices: tuple, reasons: dict) -> bool:
    """``answers`` maps each scenario of ``scenarios`` (scenario -> expected choice) to one of ``choices``;
    a wrong choice gets the hint ``reasons[expected]``."""
    if _not_done(answers):
        return False
    problems = []
    for scenario, expected in scenarios.items():
        given = str(answers.get(scenario, "")).strip().lower()
        if given not in choices:
            problems.append(f"{scenario!r}: answer one of {choices}, not {given!r}.")
        elif given != expected:
            problems.append(f"{scenario!r}: {given} is not the best fit. Hint: {reasons[expected]}.")
    return _verdict(problems)
