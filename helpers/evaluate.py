"""Scoring a model on the course tasks: intent accuracy and manual-question correctness.

``python -m helpers.evaluate`` measures the base model on the held-out splits; the datasheets in
``data/`` quote its output.
"""
from __future__ import annotations

import re
import time
import unicodedata

from helpers import course_data
from helpers import model as base


def parse_label(reply: str, labels: list[str]) -> str | None:
    """The first of ``labels`` that appears as a word in ``reply`` (``None`` when none does)."""
    words = re.findall(r"[a-z]+", reply.lower())
    return next((w for w in words if w in labels), None)


def accuracy(truth, predicted) -> float:
    truth, predicted = list(truth), list(predicted)
    return sum(t == p for t, p in zip(truth, predicted)) / max(1, len(truth))


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(text.replace("’", "'").split())


def answer_correct(answer: str, keys: list[str]) -> bool:
    """True when every key fact (e.g. ``["16:30"]``) appears in the answer, ignoring case and spacing."""
    answer = _plain(answer)
    return all(_plain(key) in answer for key in keys)


def classify(model, tokenizer, texts: list[str], batch_size: int = 16, bf16: bool = False) -> list[str | None]:
    """Ask the model for the intent of each text; parse the label from its reply (``bf16``: see
    :func:`helpers.model.generate`)."""
    replies = base.generate(model, tokenizer, [course_data.intent_chat(t) for t in texts],
                            max_new_tokens=8, batch_size=batch_size, bf16=bf16)
    return [parse_label(r, course_data.INTENT_LABELS) for r in replies]


def answer_questions(model, tokenizer, questions: list[str], system: str = course_data.MANUAL_SYSTEM,
                     max_new_tokens: int = 48, batch_size: int = 16) -> list[str]:
    conversations = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in questions]
    return base.generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)


def measure_base(limit: int | None = None) -> dict:
    """The base model, without help, on the intent test split and the manual's test questions."""
    model, tokenizer = base.load_base_model()
    intents = course_data.load_intents("test")
    qa = course_data.load_qa("test")
    if limit:
        intents, qa = intents.head(limit), qa.head(limit)
    start = time.perf_counter()
    predicted = classify(model, tokenizer, intents["text"].tolist())
    answers = answer_questions(model, tokenizer, qa["question"].tolist())
    return {
        "intent_accuracy": accuracy(intents["label"], predicted),
        "intent_unparseable": sum(p is None for p in predicted) / len(predicted),
        "n_intents": len(intents),
        "qa_accuracy": sum(answer_correct(a, k) for a, k in zip(answers, qa["key"])) / len(qa),
        "n_questions": len(qa),
        "seconds": time.perf_counter() - start,
        "examples": list(zip(qa["question"].head(3), answers[:3])),
    }


if __name__ == "__main__":
    from helpers.environment import setup

    setup(check=False)
    result = measure_base()
    for key, value in result.items():
        print(f"{key}: {value}")
