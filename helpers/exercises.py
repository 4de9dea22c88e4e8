"""Check functions for the notebook exercises.

Each check takes the learner's answer. While the answer is still ``...`` it prints a hint and returns
``False``; a wrong answer prints what is wrong and returns ``False``; a right one prints "Correct" and
returns ``True``. The hidden solution cells call the same checks with ``assert``, so CI proves that every
solution passes.
"""
from __future__ import annotations

from helpers.formats import SEPARATOR, STOP, leakage_key


def _not_done(answer) -> bool:
    if answer is ... or answer is None:
        print("Not done yet: replace the ... with your answer, run the cell, then run this check again.")
        return True
    return False


def _verdict(problems: list[str]) -> bool:
    if problems:
        print("Not quite:\n- " + "\n- ".join(problems))
        return False
    print("Correct!")
    return True


# ---------------------------------------------------------------- 00: why fine-tune
APPROACHES = ("prompt", "rag", "fine-tune")
SCENARIOS = {
    "The assistant must answer from a manual that changes every week.": "rag",
    "Replies must always be one of six labels, thousands of times a day, as cheaply as possible.": "fine-tune",
    "You need a one-off summary of a meeting, in bullet points.": "prompt",
    "Replies must follow the company's house style, which a long prompt only half enforces.": "fine-tune",
    "Customers ask about this month's prices, which live in a database.": "rag",
    "You want to try a new task today, with ten examples and no training budget.": "prompt",
}
REASONS = {
    "rag": "facts that change, or live in documents, belong in retrieval: update the store, not the weights",
    "fine-tune": "a fixed behaviour or style, repeated at volume, is what training bakes in",
    "prompt": "start with a prompt: it costs nothing to try and needs no data",
}


def check_approaches(answers: dict) -> bool:
    """``answers`` maps each scenario in :data:`SCENARIOS` to ``"prompt"``, ``"rag"`` or ``"fine-tune"``."""
    if _not_done(answers):
        return False
    problems = []
    for scenario, expected in SCENARIOS.items():
        given = str(answers.get(scenario, "")).strip().lower()
        if given not in APPROACHES:
            problems.append(f"{scenario!r}: answer one of {APPROACHES}, not {given!r}.")
        elif given != expected:
            problems.append(f"{scenario!r}: {given} is not the best fit. Hint: {REASONS[expected]}.")
    return _verdict(problems)


def check_learning_rate(lr, fit) -> bool:
    """``fit(lr)`` returns the final loss of the line fit; a good ``lr`` gets it under 0.05 in the steps given."""
    if _not_done(lr):
        return False
    loss = fit(lr)
    if loss != loss or loss > 1e6:
        return _verdict([f"lr={lr} makes the loss blow up ({loss:.3g}): each step overshoots. Try a smaller value."])
    if loss > 0.05:
        return _verdict([f"lr={lr} ends at loss {loss:.3f}: too slow to converge. Try a larger value."])
    return _verdict([])


# ---------------------------------------------------------------- 01: collect data
POSTCODE_CASES = {
    "Send it to 22 Birch Road, SW1A 1AA please": "Send it to 22 Birch Road, [POSTCODE] please",
    "my postcode is m1 1ae": "my postcode is [POSTCODE]",
    "Postcode: EC1A 1BB.": "Postcode: [POSTCODE].",
    "The heater runs 16:30 to 18:00": "The heater runs 16:30 to 18:00",
    "Model H2 AB12 is fine": "Model H2 AB12 is fine",
}


def check_mask_postcodes(mask) -> bool:
    """``mask(text)`` must replace UK postcodes (like ``SW1A 1AA``) with ``[POSTCODE]`` and leave the rest."""
    if _not_done(mask):
        return False
    problems = []
    for text, expected in POSTCODE_CASES.items():
        got = mask(text)
        if got != expected:
            problems.append(f"mask({text!r}) gave {got!r}, expected {expected!r}")
    return _verdict(problems)


# ---------------------------------------------------------------- 02: format and validate
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



# ---------------------------------------------------------------- 05: read the metrics
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
    """Three made-up runs, ``{"A": frame, "B": frame, "C": frame}``, for notebook 05's diagnosis exercise."""
    from helpers.metrics import synthetic_curve

    kinds = {"A": "overfitting", "B": "underfitting", "C": "good fit"}
    return {name: synthetic_curve(kind, seed=11).assign(source=f"run {name}") for name, kind in kinds.items()}


# ---------------------------------------------------------------- 03: fine-tune through the API
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


# ---------------------------------------------------------------- 07: ship it
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


# ---------------------------------------------------------------- 04: LoRA on your machine
def check_lora_params(lora_params, measured: dict) -> bool:
    """``lora_params(r)`` must give the trainable parameters of a LoRA adapter of rank ``r``.

    ``measured`` maps ranks to the counts that peft reported (``trainer.count_parameters``).
    """
    if _not_done(lora_params):
        return False
    problems = []
    for r, expected in sorted(measured.items()):
        got = lora_params(r)
        if got is ... or got is None:
            problems.append(f"lora_params({r}) returned {got!r}: the function body is not written yet")
            break
        if got != expected:
            hint = ""
            if got and expected and got * 2 == expected:
                hint = " (half: each adapted layer has two matrices, A and B)"
            elif got and expected and expected % got == 0:
                hint = f" ({expected // got}x too few: count every adapted module in every layer)"
            problems.append(f"r={r}: you computed {got:,}, peft counts {expected:,}{hint}")
    if len(measured) > 1 and not problems:
        print("The count grows linearly with r: r * (d_in + d_out) per adapted module.")
    return _verdict(problems)


ZERO_CASES = [  # (parameters, GPUs, stage) -> GB per GPU, from the ZeRO paper (Rajbhandari et al., 2020)
    ((7.5e9, 64, 0), 120.0), ((7.5e9, 64, 1), 31.4), ((7.5e9, 64, 2), 16.6), ((7.5e9, 64, 3), 1.88),
    ((135e6, 2, 0), 2.16), ((135e6, 2, 3), 1.08),
]


def check_zero_memory(memory_gb) -> bool:
    """``memory_gb(n_params, n_gpus, stage)``: GB per GPU for mixed-precision Adam (16 bytes a parameter:
    2 for the bf16 weights, 2 for the gradients, 12 for the fp32 master copy and Adam's two moments)."""
    if _not_done(memory_gb):
        return False
    problems = []
    for (n, gpus, stage), expected in ZERO_CASES:
        got = memory_gb(n, gpus, stage)
        if got is ... or got is None:
            problems.append("memory_gb returned None: the function body is not written yet")
            break
        if abs(got - expected) > 0.02 * expected:
            problems.append(f"memory_gb({n:.3g}, {gpus}, stage={stage}) = {got!r}, expected about {expected:g} GB")
    if problems:
        problems.append("Hint: stage 1 divides the 12 optimizer bytes by the GPUs, stage 2 also the 2 gradient "
                        "bytes, stage 3 all 16.")
    return _verdict(problems)


# ---------------------------------------------------------------- 06: RAG or fine-tune?
def check_cosine_top_k(top_k) -> bool:
    """``top_k(query, vectors, k)`` must return the row numbers of the ``k`` rows of ``vectors`` with the
    highest cosine similarity to ``query``, best first. The vectors here are NOT unit length."""
    if _not_done(top_k):
        return False
    import numpy as np

    rng = np.random.default_rng(6)
    vectors, query = rng.normal(size=(40, 8)) * rng.uniform(0.1, 10, size=(40, 1)), rng.normal(size=8)
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    expected = np.argsort(-cosine)[:5].tolist()
    got = top_k(query, vectors, 5)
    if got is None or got is ...:
        return _verdict(["top_k returned nothing: the function body is not written yet"])
    got = [int(i) for i in got]
    problems = []
    if got == np.argsort(-(vectors @ query))[:5].tolist() and got != expected:
        problems.append("you ranked by the plain dot product: divide by both vectors' lengths first")
    elif got == expected[::-1]:
        problems.append("right rows, wrong order: the best match must come first")
    elif got != expected:
        problems.append(f"expected rows {expected}, got {got}")
    return _verdict(problems)


DECISIONS = ("prompt", "rag", "fine-tune", "both")
DECISION_SCENARIOS = {
    "The assistant must answer from a price list that changes every week.": "rag",
    "Six labels, a strict one-word format, 50,000 requests a day, on a small model.": "fine-tune",
    "You want to try a new summary task this afternoon, with no data and no budget.": "prompt",
    "Answers must come from a changing manual AND always be one short line with a citation, "
    "which the small model does not do when asked.": "both",
    "A new domain with thousands of invented product facts the model has never seen.": "rag",
}
DECISION_REASONS = {
    "rag": "facts (new or changing) belong in the passages: re-index, do not retrain",
    "fine-tune": "a fixed behaviour or format, at volume, is what training bakes in",
    "prompt": "with no data and no budget, start with a prompt: it costs nothing to try",
    "both": "retrieval brings the facts, fine-tuning teaches the behaviour of using them",
}


def check_decisions(answers: dict) -> bool:
    """``answers`` maps each of :data:`DECISION_SCENARIOS` to ``"prompt"``, ``"rag"``, ``"fine-tune"`` or ``"both"``."""
    if _not_done(answers):
        return False
    problems = []
    for scenario, expected in DECISION_SCENARIOS.items():
        given = str(answers.get(scenario, "")).strip().lower()
        if given not in DECISIONS:
            problems.append(f"{scenario!r}: answer one of {DECISIONS}, not {given!r}.")
        elif given != expected:
            problems.append(f"{scenario!r}: {given} is not the best fit. Hint: {DECISION_REASONS[expected]}.")
    return _verdict(problems)
