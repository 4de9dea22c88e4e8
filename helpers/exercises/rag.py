"""Checks for notebook 07, RAG or fine-tune: cosine top-k retrieval and choosing an approach."""
from __future__ import annotations

from helpers.exercises._common import _check_choices, _not_done, _verdict


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
    return _check_choices(answers, DECISION_SCENARIOS, DECISIONS, DECISION_REASONS)
