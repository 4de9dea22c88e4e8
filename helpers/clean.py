"""Cleaning training data: normalise, de-duplicate, scrub PII, flag offensive text, check balance.

Every step is a small function you can run on its own; :func:`clean_frame` chains them and keeps a
log, so nothing disappears silently::

    clean, log = clean_frame(raw_df, column="text", blocklist=["darn"])
    log.groupby(["step", "action"]).size()

The PII scrubber is a handful of regular expressions. That is enough to show the idea and to catch
the common cases, but regexes only find what they were written for: a name without an introduction
("Regards, Priya Shah"), a phone number spelled out in words, or an address without a street word
slips through, and two capitalised words after "I am" are taken for a name even when they are
not ("I am In Bed"). Treat :func:`scrub_pii` as a first pass, not a guarantee; real projects add a
named-entity model and a human spot check.
"""
from __future__ import annotations

import re
import unicodedata
import warnings
from pathlib import Path

import pandas as pd
from rapidfuzz import fuzz, process

from helpers.environment import DATA_DIR

BLOCKLIST_FILE = DATA_DIR / "raw" / "offensive_terms.txt"

# ---------------------------------------------------------------- normalising
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")  # zero-width characters
_SPACES = re.compile(r"\s+")  # \s covers tabs, newlines, non-breaking and other Unicode spaces


def normalise(text: str) -> str:
    """NFKC, straight quotes, zero-width characters removed, whitespace collapsed, stripped."""
    text = unicodedata.normalize("NFKC", str(text)).translate(_QUOTES)
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def _key(text) -> str:
    """The comparison key for duplicates: normalised and case-folded."""
    return "" if pd.isna(text) else normalise(text).casefold()


# ---------------------------------------------------------------- duplicates
def dedupe(df: pd.DataFrame, column: str = "text", threshold: float = 0.95):
    """Drop exact and near duplicates of ``df[column]``, keeping the first of each group.

    Exact means equal after :func:`normalise` and case-folding; near means rapidfuzz
    ``fuzz.ratio >= threshold * 100`` against a row already kept. Returns ``(kept_df, dropped_df)``;
    ``dropped_df`` adds ``reason`` ("exact" / "near") and ``duplicate_of`` (index of the kept row).
    """
    first_seen: dict[str, object] = {}          # key -> index label of the kept row
    kept_keys, kept_labels, kept_pos = [], [], []
    dropped_pos, drops = [], []                 # drops: (reason, duplicate_of)
    for pos, (label, text) in enumerate(zip(df.index, df[column])):
        key = _key(text)
        if key in first_seen:
            dropped_pos.append(pos)
            drops.append(("exact", first_seen[key]))
            continue
        match = process.extractOne(key, kept_keys, scorer=fuzz.ratio, score_cutoff=threshold * 100)
        if match is not None:                   # match = (choice, score, position in kept_keys)
            dropped_pos.append(pos)
            drops.append(("near", kept_labels[match[2]]))
            continue
        first_seen[key] = label
        kept_keys.append(key)
        kept_labels.append(label)
        kept_pos.append(pos)
    dropped = df.iloc[dropped_pos].assign(reason=[r for r, _ in drops], duplicate_of=[d for _, d in drops])
    return df.iloc[kept_pos].copy(), dropped


# ---------------------------------------------------------------- PII
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(
    r"\+\d{1,3}[\s-]?(?:\(0\)[\s-]?)?\d{1,5}(?:[\s-]?\d{2,6}){1,4}\b"   # international: +44 20 7946 0958
    r"|(?:\(\d{3}\)\s?|\b\d{3}[\s.-])?\b555[\s.-]01\d\d\b"              # US fiction: (202) 555-0142
    r"|\b\d(?:[\s-]?\d){6,}\b")                                          # any 7+ digits: 07700 900123
ADDRESS = re.compile(r"\b\d{1,4}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){1,3}"
                     r"(?:Road|Street|Lane|Avenue|Rd|St|Ave|Close|Drive)\b")
_WORD = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"        # Maya, O'Neill, Mary-Jane
NAME = re.compile(rf"\b(?i:this is|my name is|i['\u2019]m|i am)\s+(?P<name>{_WORD}\s+{_WORD})\b")
NOT_NAMES = {"Larkspur", "The", "Not", "Very", "So", "Really", "Just", "Still", "Glow", "Sentry", "Hearth"}


def scrub_pii(text: str):
    """Replace emails, phone numbers, street addresses and introduced names with placeholders.

    Returns ``(clean_text, found)`` where ``found`` lists ``(kind, value)`` tuples, kind one of
    ``email``, ``address``, ``phone``, ``name``. Addresses run before phones so a house number
    is never read as part of a phone number. Known misses: see the module docstring.
    """
    found: list[tuple[str, str]] = []

    def swap(kind: str, placeholder: str):
        def repl(match: re.Match) -> str:
            found.append((kind, match.group(0).strip()))
            return placeholder
        return repl

    text = EMAIL.sub(swap("email", "[EMAIL]"), text)
    text = ADDRESS.sub(swap("address", "[ADDRESS]"), text)
    text = PHONE.sub(swap("phone", "[PHONE]"), text)

    def name(match: re.Match) -> str:
        value = match.group("name")
        if value.split()[0] in NOT_NAMES:        # "this is Larkspur Living" is a company, not a person
            return match.group(0)
        found.append(("name", value))
        return match.group(0)[: match.start("name") - match.start()] + "[NAME]"

    return NAME.sub(name, text), found


def scrub_pii_frame(df: pd.DataFrame, column: str = "text") -> pd.DataFrame:
    """A copy of ``df`` with ``column`` scrubbed and a ``pii_found`` column of ``(kind, value)`` lists."""
    results = [scrub_pii(text) for text in df[column]]
    out = df.copy()
    out[column] = [clean for clean, _ in results]
    out["pii_found"] = [found for _, found in results]
    return out


# ---------------------------------------------------------------- offensive content
def load_blocklist(path: str | Path = BLOCKLIST_FILE) -> list[str]:
    """Read one term per line, lower-cased; blank lines and ``#`` comments are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def flag_offensive(text: str, terms) -> list[str]:
    """The blocklist terms that occur in ``text`` as whole words (case-insensitive), in list order."""
    return [term for term in terms
            if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, flags=re.IGNORECASE)]


# ---------------------------------------------------------------- label balance
def balance_report(labels) -> pd.DataFrame:
    """One row per label: ``count``, ``share`` of all rows and ``ratio_to_smallest`` class."""
    counts = pd.Series(list(labels), dtype=object).value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")  # ties: alphabetical
    return pd.DataFrame({"label": counts.index, "count": counts.to_numpy(),
                         "share": (counts / counts.sum()).round(3).to_numpy(),
                         "ratio_to_smallest": (counts / counts.min()).round(2).to_numpy()})


def plot_balance(labels, ax=None):
    """Bar chart of examples per label; returns the matplotlib ``Axes``."""
    import matplotlib.pyplot as plt

    report = balance_report(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.bar(report["label"], report["count"], color="#6a8caf")
    ax.set_xlabel("label")
    ax.set_ylabel("examples")
    ax.set_title("Examples per label")
    return ax


def rebalance(df: pd.DataFrame, label_column: str = "label", per_class: int | None = None, seed: int = 0):
    """Downsample every class to ``per_class`` rows (default: the smallest class's size).

    Classes already smaller than ``per_class`` are kept whole (no upsampling). Row order is kept.
    """
    counts = df[label_column].value_counts()
    n = int(counts.min()) if per_class is None else int(per_class)
    chosen = [group.sample(min(n, len(group)), random_state=seed).index
              for _, group in df.groupby(label_column, sort=True)]
    keep = {label for index in chosen for label in index}
    return df[df.index.isin(keep)].copy()


# ---------------------------------------------------------------- the whole pipeline
def clean_frame(df: pd.DataFrame, column: str = "text", blocklist=None):
    """Drop empty, normalise, scrub PII, drop offensive, dedupe. Returns ``(clean_df, log_df)``.

    ``log_df`` has one row per change or drop: ``row`` (index in ``df``), ``step``, ``action``
    ("changed" / "dropped"), ``reason`` and ``text`` (the text after the step, or the dropped text;
    never the PII that was scrubbed). Every input row ends up in ``clean_df`` or dropped in ``log_df``.
    ``blocklist=None`` reads :data:`BLOCKLIST_FILE` when it exists; pass ``[]`` to skip the step.
    """
    if not df.index.is_unique:
        raise ValueError("clean_frame needs a unique index to log rows; call df.reset_index(drop=True) first.")
    log: list[dict] = []

    def note(row, step, action, reason, text):
        log.append({"row": row, "step": step, "action": action, "reason": reason, "text": text})

    out = df.copy()
    empty = out[column].map(lambda t: _key(t) == "")
    for row, text in out.loc[empty, column].items():
        note(row, "empty", "dropped", "empty text", None if pd.isna(text) else text)
    out = out[~empty].copy()

    normalised = out[column].map(normalise)
    for row in out.index[normalised != out[column]]:
        note(row, "normalise", "changed", "unicode, quotes or whitespace normalised", normalised[row])
    out[column] = normalised

    out = scrub_pii_frame(out, column)
    for row, found in out["pii_found"].items():
        if found:
            kinds = ", ".join(sorted({kind for kind, _ in found}))
            note(row, "pii", "changed", f"scrubbed: {kinds}", out.at[row, column])

    if blocklist is None:
        if BLOCKLIST_FILE.exists():
            blocklist = load_blocklist()
        else:
            warnings.warn(f"{BLOCKLIST_FILE} not found; skipping the offensive-content step.")
            blocklist = []
    hits = out[column].map(lambda t: flag_offensive(t, blocklist))
    for row in out.index[hits.map(bool)]:
        note(row, "offensive", "dropped", "blocklist: " + ", ".join(hits[row]), out.at[row, column])
    out = out[~hits.map(bool)]

    out, dropped = dedupe(out, column)
    for row, item in dropped.iterrows():
        note(row, "dedupe", "dropped", f"{item['reason']} duplicate of row {item['duplicate_of']}", item[column])

    log_df = pd.DataFrame(log, columns=["row", "step", "action", "reason", "text"])
    return out, log_df
