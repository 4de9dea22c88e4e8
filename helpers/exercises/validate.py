"""Checks for notebook 02, format and validate: a legacy prompt-completion record and a leak-free split."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict
from helpers.formats import SEPARATOR, STOP, leakage_key


def check_legacy_record(record, text: str, label: str) -> bool:
    """A hand-written legacy record for (text, label): separator, leading space, stop sequence."""
    if _not_done(record):
        return False
    problems = []
    prompt, completion = record.get("prompt", ""), record.get("completion", "")
    if not prompt.endswith(SEPARATOR):
        problems.append(f"the prompt must end with the separator {SEPARATOR!r}")
    elif prompt[: -len(SEPARATOR)].strip() != text:
        problems.append("the prompt must hold the request text, then the separator")
    if not completion.startswith(" ") or completion.startswith("  "):
        problems.append("the completion must start with exactly one space")
    if not completion.endswith(STOP):
        problems.append(f"the completion must end with the stop sequence {STOP!r}")
    elif completion[: -len(STOP)].strip() != label:
        problems.append(f"the completion must hold the label {label!r}")
    if set(record) - {"prompt", "completion"}:
        problems.append(f"unexpected keys: {sorted(set(record) - {'prompt', 'completion'})}")
    return _verdict(problems)


def check_no_leakage(train: list, valid: list, text_of=lambda r: r["text"]) -> bool:
    """Train and validation share no text, even after case, spacing and punctuation are ignored."""
    if _not_done(train) or _not_done(valid):
        return False
    shared = {leakage_key(text_of(r)) for r in train} & {leakage_key(text_of(r)) for r in valid}
    problems = [f"{len(shared)} texts are on both sides, e.g. {sorted(shared)[:2]}"] if shared else []
    if not valid:
        problems.append("the validation set is empty")
    return _verdict(problems)
