"""Reading what training tells you: result files, fit diagnosis, curves, task metrics, forgetting.

One schema for every result file (:data:`SCHEMA`)::

    frame = read_result_csv("outputs/run/step_metrics.csv")     # local trainer or course server
    frame = read_result_csv(client.files.content(fid).read())   # OpenAI: base64-encoded CSV bytes
    diagnose(frame)   # Diagnosis(verdict='good fit', reasons=[...], best_step=36)
    plot_curves({"local": frame, "azure": other})

Formats, detected by their columns:

* ``openai``: ``step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy``: OpenAI's result
  file, which the course's trainer and server also write (the trainer may add ``epoch`` and ``full_valid_*``).
* ``azure``: ``step, train_loss, train_mean_token_accuracy, valid_loss, valid_mean_token_accuracy,
  full_valid_loss, full_valid_mean_token_accuracy``.
* ``legacy-2023``: OpenAI's 2023 file for prompt/completion models: ``step, elapsed_tokens, elapsed_examples,
  training_loss, training_sequence_accuracy, training_token_accuracy`` and the ``validation_*`` twins.
  The token accuracies map to the schema; the sequence accuracies are dropped.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.environment import DATA_DIR

SCHEMA = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "full_valid_loss",
          "full_valid_accuracy", "source"]
# For each format: the columns that identify it, and its name for each schema column.
FORMATS = {
    "legacy-2023": ({"step", "training_loss", "elapsed_tokens"}, {
        "training_loss": "train_loss", "training_token_accuracy": "train_accuracy",
        "validation_loss": "valid_loss", "validation_token_accuracy": "valid_accuracy"}),
    "azure": ({"step", "train_loss", "train_mean_token_accuracy"}, {
        "train_mean_token_accuracy": "train_accuracy", "valid_mean_token_accuracy": "valid_accuracy",
        "full_valid_mean_token_accuracy": "full_valid_accuracy"}),
    "openai": ({"step", "train_loss", "train_accuracy"}, {
        "valid_mean_token_accuracy": "valid_accuracy", "full_valid_mean_token_accuracy": "full_valid_accuracy"}),
}
VERDICTS = ("underfitting", "overfitting", "good fit")


# ---------------------------------------------------------------- result files
def _csv_bytes(data) -> bytes:
    """The CSV bytes of a path, CSV text or bytes; base64 (as OpenAI serves result files) is decoded."""
    one_line = isinstance(data, str) and "\n" not in data.strip()
    if isinstance(data, Path) or (one_line and Path(data).is_file()):
        data = Path(data).read_bytes()
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.lstrip(b"\xef\xbb\xbf \r\n").startswith(b"step"):
        return raw
    try:
        decoded = base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.lstrip(b"\xef\xbb\xbf \r\n").startswith(b"step"):
        return decoded
    if one_line:
        raise FileNotFoundError(f"No result file at {data!r}, and it is not base64 of a result file either.")
    return raw


def detect_format(columns) -> str:
    """``"openai"``, ``"azure"`` or ``"legacy-2023"`` from a result file's column names."""
    found = {str(c).strip() for c in columns}
    for name, (needed, _) in FORMATS.items():
        if needed <= found:
            return name
    known = "; ".join(f"{name}: {', '.join(sorted(needed))}" for name, (needed, _) in FORMATS.items())
    raise ValueError(f"Not a known result-file format. Columns found: {', '.join(map(str, columns)) or 'none'}. "
                     f"Each format needs these columns: {known}.")


RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
EXTRA_COLUMNS = ["epoch", "full_valid_loss", "full_valid_mean_token_accuracy"]


def write_result_csv(metrics: pd.DataFrame, path, extra_columns: bool = False) -> Path:
    """Write OpenAI's result file, ``step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy``, from
    a training run's rows (``helpers.sft``). Steps without validation leave those cells empty;
    ``extra_columns`` adds epoch and the full-validation columns. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = metrics.reindex(columns=RESULT_COLUMNS + (EXTRA_COLUMNS if extra_columns else []))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False, float_format="%.5f")
    tmp.replace(path)
    return path


def read_result_csv(data, source: str | None = None) -> pd.DataFrame:
    """Any result file as one DataFrame with the columns :data:`SCHEMA` (one row per step).

    ``data``: a path, CSV text, CSV bytes, base64-encoded CSV (text or bytes), or a DataFrame (e.g. a
    :class:`helpers.sft.TrainResult`'s ``metrics``). Missing values (no validation at that step, no
    validation file) are NaN. ``source`` labels the rows; default: the detected format's name.
    """
    frame = data.copy() if isinstance(data, pd.DataFrame) else pd.read_csv(io.BytesIO(_csv_bytes(data)))
    frame.columns = [str(c).strip() for c in frame.columns]
    name = detect_format(frame.columns)
    frame = frame.rename(columns=FORMATS[name][1]).reindex(columns=SCHEMA[:-1])
    frame = frame.apply(pd.to_numeric, errors="coerce").dropna(subset=["step"])
    frame["step"] = frame["step"].astype(int)
    frame["source"] = source or name
    return frame.sort_values("step").reset_index(drop=True)


def sample_path(name: str) -> Path:
    """A course-made sample result file in ``data/results/`` (see its DATASHEET.md)."""
    return DATA_DIR / "results" / name


# ---------------------------------------------------------------- the fit rule
@dataclass
class Diagnosis:
    verdict: str                       # one of VERDICTS
    reasons: list = field(default_factory=list)
    best_step: int | None = None       # the step of the lowest (smoothed) validation loss


def smooth(values: pd.Series, window: int, center: bool = False) -> pd.Series:
    """Moving average over ``window`` values: trailing (a step and the ones before it) or centred."""
    return values.rolling(max(1, window), min_periods=1, center=center).mean()


def _validation(frame: pd.DataFrame) -> pd.Series:
    """Validation loss by step: the small-batch ``valid_loss`` if logged at 3+ steps, else ``full_valid_loss``."""
    for column in ("valid_loss", "full_valid_loss"):
        series = frame.set_index("step")[column].dropna()
        if len(series) >= 3:
            return smooth(series, 3, center=True)
    return pd.Series(dtype=float)


def diagnose(frame: pd.DataFrame, rise: float = 0.10, still_falling: float = 0.15,
             min_drop: float = 0.25, checkpoint_steps=None) -> Diagnosis:
    """Under-, over- or good fit, from the loss curves of one run (a :func:`read_result_csv` frame).

    The rule, on the training loss smoothed over a tenth of the run (trailing average) and the validation
    loss smoothed over 3 points (centred, so that its minimum stays where it was):

    1. **overfitting** when the validation loss ends more than ``rise`` (10%) above its minimum while the
       training loss kept falling after that minimum: the model learns its training examples by heart.
    2. **underfitting** when the training loss fell by more than ``still_falling`` (15%) over the last
       quarter of the run (still falling steeply: more training would help), or by less than ``min_drop``
       (25%) from start to end (it barely learned: raise the learning rate).
    3. **good fit** otherwise.

    ``best_step`` is the step with the lowest smoothed validation loss (the last step when there is no
    validation loss). With ``checkpoint_steps`` (the steps that were saved, e.g. each epoch's end) it is
    the saved step with the lowest validation loss: the checkpoint to keep.
    """
    frame = frame.sort_values("step")
    train = frame.set_index("step")["train_loss"].dropna()
    if len(train) < 2:
        raise ValueError(f"diagnose needs the training loss at 2 or more steps; got {len(train)}.")
    train = smooth(train, round(len(train) / 10))
    valid = _validation(frame)
    reasons, verdict = [], "good fit"
    best = int(valid.idxmin()) if len(valid) else int(train.index[-1])
    if checkpoint_steps is not None and len(valid):
        saved = [int(s) for s in checkpoint_steps]
        at_saved = {s: float(np.interp(s, valid.index, valid.values)) for s in saved}
        best = min(at_saved, key=at_saved.get)

    if len(valid):
        low, end = float(valid.min()), float(valid.iloc[-1])
        low_step = int(valid.idxmin())
        train_at_low = float(train[train.index <= low_step].iloc[-1])
        if end > (1 + rise) * low and low_step < valid.index[-1] and train.iloc[-1] < train_at_low:
            verdict = "overfitting"
            reasons.append(f"validation loss rose {end / low - 1:.0%} from its minimum {low:.3f} (step {low_step}) "
                           f"to {end:.3f}, while training loss kept falling ({train_at_low:.3f} -> {train.iloc[-1]:.3f})")
    else:
        reasons.append("no validation loss: judged from the training loss alone")

    start, last = float(train.iloc[0]), float(train.iloc[-1])
    quarter = float(train[train.index <= train.index[0] + 0.75 * (train.index[-1] - train.index[0])].iloc[-1])
    if verdict == "good fit":
        if last < (1 - still_falling) * quarter:
            verdict = "underfitting"
            reasons.append(f"training loss still falling steeply: {1 - last / quarter:.0%} lower over the last "
                           f"quarter of the run ({quarter:.3f} -> {last:.3f})")
        elif last > (1 - min_drop) * start:
            verdict = "underfitting"
            reasons.append(f"training loss barely fell: {1 - last / start:.0%} from {start:.3f} to {last:.3f}")
    if verdict == "good fit":
        reasons.append(f"training loss fell {1 - last / start:.0%} and flattened ({quarter:.3f} -> {last:.3f} "
                       "over the last quarter)" + ("; validation loss stayed near its minimum" if len(valid) else ""))
    return Diagnosis(verdict, reasons, best)


def synthetic_curve(kind: str, steps: int = 60, seed: int = 0, eval_every: int = 5) -> pd.DataFrame:
    """A made-up run of the given ``kind`` (one of :data:`VERDICTS`) in the schema: for tests and exercises."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1) / steps
    if kind == "underfitting":
        train = 2.6 - 1.4 * t                      # a straight, steep fall that has not flattened
        valid = train + 0.10
    elif kind == "overfitting":
        train = 0.1 + 2.5 * np.exp(-6 * t)         # keeps falling
        valid = 0.55 + 2.0 * np.exp(-8 * t) + 0.9 * np.clip(t - 0.35, 0, None)   # turns up after a third
    elif kind == "good fit":
        train = 0.3 + 2.3 * np.exp(-9 * t)
        valid = train + 0.08
    else:
        raise ValueError(f"kind={kind!r}: use one of {VERDICTS}.")
    train = train * (1 + rng.normal(0, 0.04, steps))
    valid = np.where(np.arange(1, steps + 1) % eval_every == 0, valid * (1 + rng.normal(0, 0.02, steps)), np.nan)
    accuracy = np.clip(1 - train / 3, 0, 1)
    return pd.DataFrame({"step": np.arange(1, steps + 1), "train_loss": train, "train_accuracy": accuracy,
                         "valid_loss": valid, "valid_accuracy": np.where(np.isnan(valid), np.nan, 1 - valid / 3),
                         "full_valid_loss": np.nan, "full_valid_accuracy": np.nan, "source": kind})


def summarise(frame: pd.DataFrame) -> dict:
    """One run in one row: the end of its curves (smoothed), its best validation loss and its verdict."""
    train = frame.set_index("step")[["train_loss", "train_accuracy"]].dropna()
    window = round(len(train) / 10)
    full = frame.dropna(subset=["full_valid_loss"])
    valid = _validation(frame)
    diagnosis = diagnose(frame)
    return {"steps": int(frame["step"].max()),
            "train_loss": float(smooth(train["train_loss"], window).iloc[-1]),
            "train_accuracy": float(smooth(train["train_accuracy"], window).iloc[-1]),
            "min_valid_loss": float(valid.min()) if len(valid) else float("nan"),
            "full_valid_loss": float(full["full_valid_loss"].iloc[-1]) if len(full) else float("nan"),
            "full_valid_accuracy": float(full["full_valid_accuracy"].iloc[-1]) if len(full) else float("nan"),
            "verdict": diagnosis.verdict, "best_step": diagnosis.best_step}


def advice_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Check two rules of thumb for OpenAI's hyperparameters against a sweep (one :func:`summarise` row per
    run, plus ``n_epochs`` and ``lr_multiplier`` columns):

    * "the model does not follow the training data: add epochs" -> more epochs end at a lower training
      loss, at each multiplier. The loss is the measure: the token accuracy of the last batches counts only
      a few label tokens, so it moves in coarse steps (it is shown beside the loss, not judged);
    * "the loss does not converge: raise the learning-rate multiplier" -> with the fewest epochs, some
      larger multiplier ends at a lower training loss than the smallest (raising helps up to a point: the
      largest may overshoot, and the measured column shows every multiplier's loss).
    """
    few, many = sweep["n_epochs"].min(), sweep["n_epochs"].max()
    low = sweep["lr_multiplier"].min()
    at = sweep.set_index(["n_epochs", "lr_multiplier"])
    multipliers = sorted(sweep["lr_multiplier"].unique())
    drops = {m: at.loc[(many, m), "train_loss"] - at.loc[(few, m), "train_loss"] for m in multipliers}
    accuracy = {m: (at.loc[(few, m), "train_accuracy"], at.loc[(many, m), "train_accuracy"]) for m in multipliers}
    losses = {m: at.loc[(few, m), "train_loss"] for m in multipliers}
    before, after = losses[low], min(v for m, v in losses.items() if m != low)
    return pd.DataFrame([
        {"advice": "doesn't follow the data: more epochs",
         "measured": f"training loss {few} -> {many} epochs: "
                     + ", ".join(f"x{m:g}: {d:+.2f}" for m, d in drops.items())
                     + " (token accuracy " + ", ".join(f"{a:.2f}->{b:.2f}" for a, b in accuracy.values()) + ")",
         "holds": all(d < 0 for d in drops.values())},
        {"advice": "doesn't converge: higher LR multiplier",
         "measured": f"training loss after {few} epoch(s): " + ", ".join(f"x{m:g} {v:.2f}" for m, v in losses.items()),
         "holds": bool(after < before)},
    ])


def local_server_result(timeout: float = 2.0):
    """The newest succeeded job's result file on a course server that is ALREADY running (nothing is
    started): ``(frame, job_id)``, or ``(None, reason)``."""
    import json
    import urllib.request

    from helpers.environment import outputs_dir

    info = outputs_dir() / "server" / "server.json"
    try:
        url = json.loads(info.read_text())["url"]
        urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=timeout).close()
    except (OSError, ValueError, KeyError):
        return None, "no course server is running (notebook 03 or 04 starts one)"
    from helpers import api

    client = api.client("local")
    done = [j for j in client.fine_tuning.jobs.list(limit=50).data if j.status == "succeeded" and j.result_files]
    if not done:
        return None, "the course server has no finished job yet"
    return read_result_csv(api.read_result_file(client, done[0].result_files[0]), source="local API"), done[0].id


# ---------------------------------------------------------------- curves
def plot_curves(frames, ax=None, title: str | None = None):
    """Loss (left) and token accuracy (right), train (solid) against validation (dashed), one colour per run.

    ``frames``: one :func:`read_result_csv` frame (its ``source`` column splits runs), a list of them, or a
    dict ``{name: frame}``. ``ax``: two matplotlib axes, or one for the loss alone; default a new figure.
    Raw training values are drawn faintly under their moving average; full-validation points (epoch ends)
    are large dots. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    if isinstance(frames, dict):
        frames = [f.assign(source=name) for name, f in frames.items()]
    runs = [(name, run) for frame in frames for name, run in frame.groupby("source", sort=False)]
    if ax is None:
        ax = plt.subplots(1, 2, figsize=(11, 3.6))[1]
    ax = [ax] if hasattr(ax, "plot") else list(ax)
    for i, (name, run) in enumerate(runs):
        colour = f"C{i % 10}"
        for side, (train, valid, full) in zip(ax, [("train_loss", "valid_loss", "full_valid_loss"),
                                                   ("train_accuracy", "valid_accuracy", "full_valid_accuracy")]):
            line = run.set_index("step")[train].dropna()
            side.plot(line.index, line.values, color=colour, alpha=0.2, linewidth=1)
            side.plot(line.index, smooth(line, round(len(line) / 10)).values, color=colour, label=f"{name} train")
            points = run.set_index("step")[valid].dropna()
            side.plot(points.index, points.values, "--", color=colour, marker=".", label=f"{name} valid")
            points = run.set_index("step")[full].dropna()
            side.plot(points.index, points.values, "o", color=colour, markersize=7, markeredgecolor="black")
    ax[0].set(xlabel="step", ylabel="loss", title=title or "loss")
    if len(ax) > 1:
        ax[1].set(xlabel="step", ylabel="token accuracy", title="token accuracy", ylim=(0, 1.02))
    ax[0].legend(fontsize=8)
    return ax


# ---------------------------------------------------------------- classification
NO_LABEL = "(no label)"


def classification_scores(truth, predicted, labels) -> dict:
    """``accuracy``, ``macro_f1`` (the plain mean of each label's F1) and the ``confusion`` matrix.

    A prediction of ``None`` (the reply named no label) counts as wrong and gets its own column.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    truth = list(truth)
    predicted = [NO_LABEL if p is None else p for p in predicted]
    columns = list(labels) + [NO_LABEL]
    matrix = confusion_matrix(truth, predicted, labels=columns)[: len(labels)]
    return {"accuracy": float(np.mean([t == p for t, p in zip(truth, predicted)])) if truth else float("nan"),
            "macro_f1": float(f1_score(truth, predicted, labels=list(labels), average="macro", zero_division=0)),
            "confusion": pd.DataFrame(matrix, index=pd.Index(labels, name="true"),
                                      columns=pd.Index(columns, name="predicted"))}


def errors_by_class(texts, truth, predicted, per_class: int = 2) -> pd.DataFrame:
    """The wrong predictions as example rows (text, true, predicted), at most ``per_class`` per true label."""
    frame = pd.DataFrame({"text": list(texts), "true": list(truth),
                          "predicted": [NO_LABEL if p is None else p for p in predicted]})
    wrong = frame[frame["true"] != frame["predicted"]]
    return wrong.groupby("true", sort=True).head(per_class).sort_values(["true", "predicted"]).reset_index(drop=True)


def plot_confusion(confusion: pd.DataFrame, ax=None, title: str = "confusion matrix"):
    """The confusion matrix as a heat map with counts in the cells."""
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(6.5, 4.5))[1]
    ax.imshow(confusion.values, cmap="Blues")
    ax.set_xticks(range(confusion.shape[1]), confusion.columns, rotation=40, ha="right")
    ax.set_yticks(range(confusion.shape[0]), confusion.index)
    top = confusion.values.max() or 1
    for (i, j), n in np.ndenumerate(confusion.values):
        ax.text(j, i, int(n), ha="center", va="center", color="white" if n > top / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return ax


# ---------------------------------------------------------------- generation
def bleu(hypotheses, references) -> float:
    """Corpus BLEU (0-100) with sacrebleu's standard settings: one reference per hypothesis."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses, references) -> float:
    """Mean ROUGE-L F1 (0-1): the longest common word subsequence, with stemming (Google's rouge-score)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)]
    return float(np.mean(scores)) if scores else float("nan")


def self_bleu(texts) -> float:
    """Diversity: the mean BLEU of each text against all the others (higher means more alike, less diverse)."""
    from sacrebleu.metrics import BLEU

    texts = list(texts)
    scorer = BLEU(effective_order=True)
    scores = [scorer.sentence_score(t, texts[:i] + texts[i + 1:]).score for i, t in enumerate(texts)]
    return float(np.mean(scores)) if len(texts) > 1 else float("nan")


def distinct_n(texts, n: int = 2) -> float:
    """Diversity: unique word n-grams divided by all word n-grams across ``texts`` (1.0: nothing repeats)."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [str(t).lower().split()]
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def generation_scores(hypotheses, references) -> dict:
    """BLEU, ROUGE-L, self-BLEU, distinct-2 and mean length in words, for one list of outputs."""
    hypotheses = list(hypotheses)
    return {"bleu": bleu(hypotheses, references), "rouge_l": rouge_l(hypotheses, references),
            "self_bleu": self_bleu(hypotheses), "distinct_2": distinct_n(hypotheses, 2),
            "words": float(np.mean([len(h.split()) for h in hypotheses])) if hypotheses else float("nan")}


# ---------------------------------------------------------------- domain shift
SNIPS_TO_COURSE = {"PlayMusic": "media", "AddToPlaylist": "media"}  # the other SNIPS intents have no course label


def _reachable(url: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_out_of_domain(n_per_intent: int = 10, seed: int = 0):
    """SNIPS validation utterances for a domain-shift test: ``(frame, None)``, or ``(None, reason)`` when the
    dataset is not cached, not in the mirror (``COURSE_DATA_MIRROR``) and the internet cannot be reached.

    The frame has ``text``, ``intent`` (SNIPS) and ``course_label`` (the course label that fits, or None).
    """
    import os

    from helpers import datasets
    from helpers.environment import cache_dir

    files = datasets.info("snips_2017")["files"]
    mirror = os.environ.get(datasets.MIRROR_ENV)
    local = all((cache_dir() / "datasets" / f["path"]).is_file() or (mirror and (Path(mirror) / f["path"]).is_file())
                for f in files)
    if not local and not _reachable(files[0]["url"]):
        return None, (f"SNIPS is not cached, {datasets.MIRROR_ENV} is not set to a copy, and the internet "
                      "cannot be reached")
    try:
        frame = datasets.load_snips("valid")
    except datasets.DatasetError as exc:
        return None, str(exc).splitlines()[0]
    frame = frame.groupby("intent", sort=True).sample(n=n_per_intent, random_state=seed).reset_index(drop=True)
    frame["course_label"] = frame["intent"].map(SNIPS_TO_COURSE)
    return frame, None


# ---------------------------------------------------------------- forgetting
def load_probes() -> list[dict]:
    """The general-knowledge probe set ``data/probes/general.jsonl`` (question, key, accept)."""
    from helpers.formats import read_jsonl

    return read_jsonl(DATA_DIR / "probes" / "general.jsonl")


def probe_correct(answer: str, probe: dict) -> bool:
    """True when the answer contains the probe's key (or one of its ``accept`` forms) as a whole word.

    "0" does not match inside "-18.0", nor "4" inside "24" or "4.5". The check is lenient: an answer that
    names the key and then something wrong still counts.
    """
    keys = [probe["key"], *probe.get("accept", [])]
    return any(re.search(r"(?<![\w.])" + re.escape(k) + r"(?![\w]|[.,]\d)", str(answer), flags=re.IGNORECASE)
               for k in keys)


def ask_probes(model, tokenizer, probes, max_new_tokens: int = 24) -> list[str]:
    """The model's greedy answers to the probe questions (one user message each, no system prompt)."""
    from helpers import model as base

    return base.generate(model, tokenizer, [[{"role": "user", "content": p["question"]}] for p in probes],
                         max_new_tokens=max_new_tokens)


@dataclass
class Forgetting:
    before: float              # share of probes answered right before fine-tuning
    after: float               # ... and after
    forgotten: int             # right before, wrong after
    learned: int               # wrong before, right after
    table: pd.DataFrame = field(repr=False)   # one row per probe


def forgetting(before_answers, after_answers, probes) -> Forgetting:
    """Score the probe set before and after fine-tuning; catastrophic forgetting shows as ``forgotten``."""
    probes = list(probes)
    if not (len(before_answers) == len(after_answers) == len(probes)):
        raise ValueError("before_answers, after_answers and probes must have the same length.")
    table = pd.DataFrame({"question": [p["question"] for p in probes], "key": [p["key"] for p in probes],
                          "before": list(before_answers), "after": list(after_answers)})
    table["right_before"] = [probe_correct(a, p) for a, p in zip(before_answers, probes)]
    table["right_after"] = [probe_correct(a, p) for a, p in zip(after_answers, probes)]
    n = max(1, len(table))
    return Forgetting(table["right_before"].sum() / n, table["right_after"].sum() / n,
                      int((table["right_before"] & ~table["right_after"]).sum()),
                      int((~table["right_before"] & table["right_after"]).sum()), table)
