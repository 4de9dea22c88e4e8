"""RAG or fine-tune? Five systems on the same held-out questions, scored, timed and costed.

Notebook 07 compares, on the manual's test questions and on the intent task:

1. the base model; 2. few-shot prompting; 3. RAG; 4. LoRA fine-tuned; 5. fine-tuned + RAG.

This module holds the parts that are logic rather than teaching:

* :func:`sentence_chunks` cuts the manual into one-sentence passages (a small reader copes better with them);
* :func:`few_shot_messages` and :func:`knn_intent_messages` build the prompts of systems 2 and 3;
* :func:`generate_grounded` decodes with :class:`PassageWordsOnly`, which lets the model use only words
  from its passages (a decoding-time "be extractive" that a 135M model cannot be talked into);
* :func:`run_system` times a system and scores its answers; :func:`cost_per_1000` and
  :func:`api_cost_per_1000` turn time and tokens into dollars;
* :func:`change_fact` edits the manual (and the QA pairs) for the knowledge-update test;
* :func:`agreement` checks the offline scorer against hand labels; :func:`error_reason` and
  :func:`error_table` say why a system got a question wrong; :func:`decision_guide` turns the
  measured numbers into advice.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from helpers import rag
from helpers.evaluate import answer_correct

# An assumed price for local compute: a small cloud VM with 2 vCPUs and 4-8 GB (on-demand, mid-2025
# list prices are about $0.07-0.10 an hour). Change it to your own machine's cost.
CPU_USD_PER_HOUR = 0.10
API_MODEL = "gpt-4o-mini-2024-07-18"   # the price-table row used for "what would the API cost?"
GROUNDED_SYSTEM = ("Answer the question with the words of the passage that answers it. "
                   "Cite the passage like [1].")
SYSTEMS = ["base", "few-shot", "RAG", "fine-tuned", "fine-tuned + RAG"]

# The knowledge-update test: the hub's update window moves. ``FACT_TRAIN`` are the phrasings a fine-tune
# learns the fact from; ``FACT_PROBES`` are asked before and after (the first is the manual's own
# training question, the other two are phrasings no system was trained on).
FACT = {"old": "at 03:00 every Tuesday", "new": "at 04:30 every Thursday", "old_key": "03:00", "new_key": "04:30"}
FACT_TRAIN = ["When does the hub install updates?", "What time do the hub's updates run?",
              "When does the Larkspur Hub One update its software?", "When is the hub's update window?",
              "At what hour are updates installed on the hub?", "When will the hub restart for an update?"]
FACT_PROBES = ["When does the hub install updates?", "At what time does the Larkspur hub update itself?",
               "When are software updates put on the hub?"]


# ---------------------------------------------------------------- passages
def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: cut after . ! or ? when a capital letter, quote or bracket follows."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"(])", text.strip()) if s.strip()]


def sentence_chunks(docs: pd.DataFrame) -> pd.DataFrame:
    """One chunk per sentence, each with its ``"Title - Section"`` prefix line, in the table format of
    :func:`helpers.rag.chunk_documents` (chunk_id, doc, title, text), so every ``rag`` tool works on it."""
    sections = rag.chunk_documents(docs, max_words=10_000, overlap=0)  # one chunk per section
    rows = []
    for chunk in sections.itertuples():
        prefix, _, body = chunk.text.partition("\n")
        for line in body.splitlines():
            for sentence in split_sentences(line):
                rows.append({"chunk_id": len(rows), "doc": chunk.doc, "title": chunk.title,
                             "text": f"{prefix}\n{sentence}"})
    return pd.DataFrame(rows, columns=["chunk_id", "doc", "title", "text"])


def build_retriever(chunks: pd.DataFrame) -> rag.Retriever:
    """A faiss retriever over ``chunks`` (embedded with the offline MiniLM)."""
    index = rag.FaissIndex()
    index.add(rag.embed(chunks["text"].tolist()))
    return rag.Retriever(chunks, index)


# ---------------------------------------------------------------- prompts
def few_shot_messages(question: str, examples: pd.DataFrame, system: str) -> list[dict]:
    """System prompt, then each example (question, answer) as a user/assistant turn, then ``question``."""
    messages = [{"role": "system", "content": system}]
    for row in examples.itertuples():
        messages += [{"role": "user", "content": row.question}, {"role": "assistant", "content": row.answer}]
    return messages + [{"role": "user", "content": question}]


def knn_intent_messages(text: str, neighbours: pd.DataFrame, system: str) -> list[dict]:
    """Intent "RAG": the labelled training requests most similar to ``text`` as worked examples."""
    messages = [{"role": "system", "content": system}]
    for row in neighbours.itertuples():
        messages += [{"role": "user", "content": row.text}, {"role": "assistant", "content": row.label}]
    return messages + [{"role": "user", "content": text}]


# ---------------------------------------------------------------- grounded decoding
def passage_token_ids(tokenizer, text: str) -> set[int]:
    """Token ids that spell the words of ``text``: as it tokenizes, and each word alone with and without
    a leading space and a capital (a word starts an answer in a different form than mid-sentence)."""
    ids = set(tokenizer(text, add_special_tokens=False)["input_ids"])
    for word in set(re.findall(r"\w+|[^\w\s]", text)):
        for form in {word, word.lower(), word.capitalize()}:
            for spaced in (form, " " + form):
                ids.update(tokenizer(spaced, add_special_tokens=False)["input_ids"])
    return ids


class PassageWordsOnly:
    """A logits processor: row ``i`` may only produce tokens in ``allowed[i]`` (everything else gets -inf)."""

    def __init__(self, allowed: list[set[int]], vocab_size: int):
        import torch

        self.mask = torch.full((len(allowed), vocab_size), float("-inf"))
        for row, ids in enumerate(allowed):
            self.mask[row, sorted(i for i in ids if i < vocab_size)] = 0.0

    def __call__(self, input_ids, scores):
        return scores + self.mask[:, :scores.shape[1]].to(scores.device)


def generate_grounded(model, tokenizer, conversations: list[list[dict]], sources: list[str],
                      max_new_tokens: int = 32, batch_size: int = 16) -> list[str]:
    """Greedy replies in which every token comes from the reply's own ``sources[i]`` (plus ``.``, ``,`` and
    the end-of-turn token), so the model can reorder and shorten the passage's words but not invent any.

    Digits and brackets are not added (so ``[1]`` is possible only when the passage holds a 1): with
    them always allowed the model falls into loops such as ``1.1.1.1``."""
    import torch
    from transformers import LogitsProcessorList

    from helpers.model import chat_prompt

    always = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    for piece in (".", ","):
        always.update(tokenizer(piece, add_special_tokens=False)["input_ids"])
    tokenizer.padding_side = "left"
    replies = []
    for start in range(0, len(conversations), batch_size):
        prompts = [chat_prompt(tokenizer, c) for c in conversations[start:start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        allowed = [passage_token_ids(tokenizer, s) | always for s in sources[start:start + batch_size]]
        only = PassageWordsOnly(allowed, model.get_output_embeddings().weight.shape[0])
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id,
                                 logits_processor=LogitsProcessorList([only]))
        replies += [t.strip() for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                                               skip_special_tokens=True)]
    return replies


# ---------------------------------------------------------------- running, timing, costing
def run_system(name: str, answer_fn: Callable[[list[str]], list[str]], questions, keys) -> dict:
    """Answer ``questions`` with ``answer_fn``, score them against ``keys``; return one result row.

    The row holds the per-question ``answers`` and ``correct`` lists too, for error analysis."""
    questions = list(questions)
    start = time.perf_counter()
    answers = answer_fn(questions)
    seconds = time.perf_counter() - start
    correct = [answer_correct(a, k) for a, k in zip(answers, keys)]
    return {"system": name, "accuracy": float(np.mean(correct)), "n": len(questions),
            "seconds_per_answer": seconds / max(1, len(questions)), "answers": answers, "correct": correct}


def cost_per_1000(seconds_per_answer: float, usd_per_hour: float = CPU_USD_PER_HOUR) -> float:
    """Dollars for 1,000 answers on a machine rented at ``usd_per_hour``, one answer after another."""
    return seconds_per_answer * 1000 / 3600 * usd_per_hour


def api_cost_per_1000(prompts: list[list[dict]], answers: list[str], model: str = API_MODEL) -> float:
    """Dollars for 1,000 such requests on an API: prompt tokens x input price + reply tokens x output
    price, from ``data/openai_prices.json`` (the table lists fine-tuned-model prices)."""
    from helpers.tokens import count_chat_tokens, count_text_tokens, load_prices

    price = load_prices()["models"][model]
    tokens_in = np.mean([count_chat_tokens(p, model) for p in prompts])
    tokens_out = np.mean([count_text_tokens(a, model) for a in answers])
    return 1000 * (tokens_in * price["input"] + tokens_out * price["output"]) / 1e6


def results_table(rows: list[dict], api_costs: dict | None = None) -> pd.DataFrame:
    """One row per system: accuracy, seconds per answer, local $ per 1,000 and (optionally) API $ per 1,000."""
    frame = pd.DataFrame([{k: r[k] for k in ("system", "accuracy", "n", "seconds_per_answer")} for r in rows])
    frame["local_usd_per_1000"] = frame["seconds_per_answer"].map(cost_per_1000)
    if api_costs is not None:
        frame["api_usd_per_1000"] = frame["system"].map(api_costs)
    return frame.set_index("system")


# ---------------------------------------------------------------- knowledge update
def change_fact(docs: pd.DataFrame, old: str, new: str) -> pd.DataFrame:
    """A copy of the manual with every ``old`` replaced by ``new``; fails when ``old`` is nowhere."""
    if not docs["text"].str.contains(old, regex=False).any():
        raise ValueError(f"{old!r} is not in the manual, so there is nothing to change.")
    return docs.assign(text=docs["text"].str.replace(old, new, regex=False))


def change_answers(qa: pd.DataFrame, old: str, new: str) -> pd.DataFrame:
    """A copy of the QA pairs with ``old`` replaced by ``new`` in answer, evidence and key."""
    swap = lambda text: text.replace(old, new)  # noqa: E731
    return qa.assign(answer=qa["answer"].map(swap), evidence=qa["evidence"].map(swap),
                     key=qa["key"].map(lambda keys: [swap(k) for k in keys]))


def fact_examples(answer: str, system: str) -> list[dict]:
    """Chat training examples that teach ``answer`` to every question in :data:`FACT_TRAIN`."""
    return [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": q},
                          {"role": "assistant", "content": answer}]} for q in FACT_TRAIN]


def knows(answers: list[str], key: str) -> float:
    """The share of ``answers`` that contain ``key`` (ignoring case and spacing)."""
    return float(np.mean([answer_correct(a, [key]) for a in answers])) if answers else 0.0


# ---------------------------------------------------------------- checking the scorer, errors
def agreement(human: list[bool], scorer: list[bool]) -> dict:
    """How often the offline scorer agrees with a person, and how it disagrees."""
    human, scorer = np.asarray(human, bool), np.asarray(scorer, bool)
    return {"n": int(len(human)), "agreement": float(np.mean(human == scorer)),
            "scorer_too_strict": int(np.sum(human & ~scorer)), "scorer_too_lenient": int(np.sum(~human & scorer))}


def error_reason(answer: str, keys: list[str], retrieved_hit: bool | None = None) -> str:
    """Why an answer is wrong, in a few words (``""`` when it is right).

    ``retrieved_hit``: whether the retrieved passages held the fact (None: the system retrieves nothing)."""
    from helpers.ship import is_decline

    if answer_correct(answer, keys):
        return ""
    if retrieved_hit is False:
        return "retrieval missed the fact"
    if is_decline(answer):
        return "declined"
    found = [k for k in keys if answer_correct(answer, [k])]
    if found:
        return "part of the fact"
    return "misread the passages" if retrieved_hit else "invented a fact"


def error_table(qa: pd.DataFrame, rows: list[dict], hits: dict[str, list[bool]] | None = None) -> pd.DataFrame:
    """One row per (question, system) that is wrong: the answer, the expected keys and the reason."""
    hits = hits or {}
    records = []
    for row in rows:
        for i, (answer, ok) in enumerate(zip(row["answers"], row["correct"])):
            if not ok:
                hit = hits.get(row["system"], [None] * len(qa))[i]
                records.append({"system": row["system"], "question": qa["question"].iloc[i], "answer": answer,
                                "expected": ", ".join(qa["key"].iloc[i]),
                                "reason": error_reason(answer, qa["key"].iloc[i], hit)})
    return pd.DataFrame(records, columns=["system", "question", "answer", "expected", "reason"])


# ---------------------------------------------------------------- advice from the numbers
def best(table: pd.DataFrame, column: str = "accuracy") -> str:
    """The system (index) with the highest ``column``. On a tie, the faster one (``seconds_per_answer``,
    when the table has it) wins: the same answers for less compute; then the first."""
    top = table[table[column] == table[column].max()]
    if "seconds_per_answer" in top:
        top = top.sort_values("seconds_per_answer", kind="stable")
    return str(top.index[0])


def decision_guide(manual: pd.DataFrame, intents: pd.DataFrame, update: pd.DataFrame) -> pd.DataFrame:
    """Advice for four situations, each with the measured evidence that supports it.

    ``manual``/``intents``: results tables (index = system, columns accuracy, ...; ``intents`` also
    ``unparseable``); ``update``: knowledge-update table (index = system, columns before, after)."""
    follows = [s for s in update.index if update.loc[s, "after"] >= 0.5]
    stuck = [s for s in update.index if update.loc[s, "after"] < 0.5]
    rows = [
        ("a new domain: facts the model has never seen", best(manual),
         f"manual QA: {best(manual)} {manual['accuracy'].max():.0%}, base {manual.loc['base', 'accuracy']:.0%}, "
         f"fine-tuned {manual.loc['fine-tuned', 'accuracy']:.0%}"),
        ("quality on one narrow task", best(intents),
         f"intents: {best(intents)} {intents['accuracy'].max():.0%}, few-shot {intents.loc['few-shot', 'accuracy']:.0%}"),
        ("output style and format", "fine-tuned",
         f"replies that name no label: base {intents.loc['base', 'unparseable']:.0%}, "
         f"fine-tuned {intents.loc['fine-tuned', 'unparseable']:.0%}"),
        ("data that changes", " / ".join(follows) or "none",
         "after the edit, right at once: " + (", ".join(follows) or "none")
         + "; still old: " + (", ".join(stuck) or "none")),
    ]
    return pd.DataFrame(rows, columns=["situation", "measured winner", "evidence"]).set_index("situation")
