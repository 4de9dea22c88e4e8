"""Checks for notebook 00, why fine-tune: prompt, RAG or fine-tune, and a learning rate that converges."""
from __future__ import annotations

from helpers.exercises._common import _check_choices, _not_done, _verdict

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
    return _check_choices(answers, SCENARIOS, APPROACHES, REASONS)


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
