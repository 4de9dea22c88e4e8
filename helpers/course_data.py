"""The smart-home data that the course writes and ships in ``data/`` (see each folder's DATASHEET.md).

Larkspur Living is a fictional smart-home company; every fact in its manual is invented, so a
pretrained model cannot know it.
"""
from __future__ import annotations

import json

import pandas as pd

from helpers.environment import DATA_DIR
from helpers.formats import chat_example, read_jsonl

INTENT_LABELS = ["lights", "heating", "security", "media", "appliances", "energy"]
INTENT_SYSTEM = ("You sort requests to the Larkspur smart-home assistant. Reply with one word: "
                 + ", ".join(INTENT_LABELS) + ".")
MANUAL_SYSTEM = "You are the Larkspur Living home assistant. Answer questions about the house briefly."


def load_intents(split: str = "train") -> pd.DataFrame:
    """Requests to the assistant with one intent label each. ``split``: train, valid or test."""
    return pd.DataFrame(read_jsonl(DATA_DIR / "intents" / f"{split}.jsonl"))


def intent_chat(text: str, label: str | None = None) -> dict | list[dict]:
    """A classification request as chat: a training example with ``label``, or the prompt without it."""
    if label is not None:
        return chat_example(text, label, INTENT_SYSTEM)
    return [{"role": "system", "content": INTENT_SYSTEM}, {"role": "user", "content": text}]


def load_manual() -> pd.DataFrame:
    """The house and product manual: one row per document (doc, title, text)."""
    rows = []
    for path in sorted((DATA_DIR / "manual" / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        rows.append({"doc": path.name, "title": text.splitlines()[0].lstrip("# ").strip(), "text": text})
    return pd.DataFrame(rows)


def load_qa(split: str | None = None) -> pd.DataFrame:
    """Question/answer pairs whose answers are only in the manual (``split``: train, test or None for all)."""
    frame = pd.DataFrame(read_jsonl(DATA_DIR / "manual" / "qa.jsonl"))
    return frame if split is None else frame[frame["split"] == split].reset_index(drop=True)


def load_unanswerable() -> pd.DataFrame:
    """Questions about the house that the manual does not answer (the model should decline)."""
    return pd.DataFrame(read_jsonl(DATA_DIR / "manual" / "unanswerable.jsonl"))


def load_products(split: str | None = None) -> pd.DataFrame:
    """Product attributes (in plain sentences) and their marketing descriptions."""
    frame = pd.DataFrame(read_jsonl(DATA_DIR / "products" / "products.jsonl"))
    return frame if split is None else frame[frame["split"] == split].reset_index(drop=True)


def load_alpaca() -> list[dict]:
    """The Alpaca-format sample (instruction, input, output, system, history)."""
    return json.loads((DATA_DIR / "alpaca" / "smart_home_alpaca.json").read_text(encoding="utf-8"))


def load_legacy() -> list[dict]:
    """The legacy prompt/completion sample."""
    return read_jsonl(DATA_DIR / "legacy" / "smart_home_legacy.jsonl")
