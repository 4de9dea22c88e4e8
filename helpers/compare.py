"""RAG or fine-tune? Seven systems on the same held-out questions, scored, timed and costed.

Notebook 07 compares, on the manual's test questions and on the intent task:

1. the base model; 2. few-shot prompting; 3. RAG; 4. LoRA fine-tuned; 5. fine-tuned + RAG;
6. and 7. a reader fine-tuned on retrieved passages (RAFT), given three passages or one.

This module holds the parts that are logic rather than teaching:

* :func:`sentence_chunks` cuts the manual into one-sentence passages (a small reader copes better with them);
* :func:`few_shot_messages` and :func:`knn_intent_messages` build the prompts of systems 2 and 3;
* :func:`generate_grounded` decodes with :class:`PassageWordsOnly`, which lets the model use only words
  from its passages (a decoding-time "be extractive" that a 135M model cannot be talked into);
  :func:`generate_extractive` (with :class:`PassageSpansOnly`) goes further: the reply is one quoted span;
* :func:`raft_examples` builds the training chats of a RAFT reader (gold passage plus distractors);
* :func:`run_system` times a system and scores its answers; :func:`cost_per_1000` and
  :func:`api_cost_per_1000` turn time and tokens into dollars;
* :func:`change_fact` edits the manual (and the QA pairs) for the knowledge-update test;
* :func:`agreement` checks the offline scorer against hand labels; :func:`error_reason` and
  :func:`error_table` say why a system got a question wrong; :func:`decision_guide` turns the
  measured numbers into advice; :func:`write_benchmark` writes the results file of the benchmark.
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
SYSTEMS = ["base", "few-shot", "RAG", "fine-tuned", "fine-tuned + RAG", "RAFT reader, 3 passages",
           "RAFT reader, 1 passage"]

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


class PassageSpansOnly:
    """A logits processor for extractive answers: row ``i`` may only continue a span copied word for word
    from one of its passages, ``passages[i]`` (lists of token ids), or end the answer.

    The first token may be any passage token; each later token must be the one that follows the answer
    so far somewhere in a passage. The model still chooses where the quote starts and where it stops."""

    def __init__(self, passages: list[list[list[int]]], prompt_length: int, stop_ids: set[int]):
        self.passages, self.prompt_length, self.stop_ids = passages, prompt_length, sorted(stop_ids)

    def allowed(self, row: int, generated: list[int]) -> set[int]:
        ids, n = set(), len(generated)
        for tokens in self.passages[row]:
            for start in range(len(tokens) - n):
                if tokens[start:start + n] == generated:
                    ids.add(tokens[start + n])
        return ids

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            generated = input_ids[row, self.prompt_length:].tolist()
            if generated and generated[-1] in self.stop_ids:  # finished: let it pad
                mask[row] = 0.0
                continue
            ids = sorted(i for i in self.allowed(row, generated) if i < scores.shape[1])
            mask[row, ids + (self.stop_ids if generated else [])] = 0.0
        return scores + mask


def generate_extractive(model, tokenizer, conversations: list[list[dict]], passages: list[list[str]],
                        max_new_tokens: int = 48, batch_size: int = 16) -> list[str]:
    """Greedy replies that are each one span copied from the reply's own ``passages[i]`` (strings).

    A stricter cousin of :func:`generate_grounded`: not only every word but the order comes from a
    passage, so a small model cannot drop the "not" or swap two times. It can stop early, though,
    and leave out part of the sentence."""
    import torch
    from transformers import LogitsProcessorList

    from helpers.model import chat_prompt

    stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} - {None}
    tokenizer.padding_side = "left"
    replies = []
    for start in range(0, len(conversations), batch_size):
        prompts = [chat_prompt(tokenizer, c) for c in conversations[start:start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        spans = [[tokenizer(form + text, add_special_tokens=False)["input_ids"] for text in texts for form in ("", " ")]
                 for texts in passages[start:start + batch_size]]
        only = PassageSpansOnly(spans, batch["input_ids"].shape[1], stop)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id,
                                 logits_processor=LogitsProcessorList([only]))
        replies += [t.strip() for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                                               skip_special_tokens=True)]
    return replies


# ---------------------------------------------------------------- training the reader (RAFT)
QUOTE_SYSTEM = ("Answer the question by quoting the passage that answers it, word for word, and cite it "
                "like [1]. If no passage answers it, say \"I don't know.\"")
DONT_KNOW = "I don't know."


def passage_body(text: str) -> str:
    """A chunk's text without its ``Title - Section`` line."""
    return text.split("\n", 1)[1] if "\n" in text else text


def quotable(table: pd.DataFrame, dont_know: bool = False, cite: bool = False) -> list[str]:
    """What an extractive reader may copy from a retrieved table (or a list of passage strings): each
    passage after its citation,
    ``"[n] sentence"`` (``cite=True``; a reader that starts with the citation goes on into the quote), and (``dont_know=True``) the sentence "I don't know."."""
    texts = table["text"] if isinstance(table, pd.DataFrame) else table
    spans = [f"[{n}] {passage_body(text)}" if cite else passage_body(text) for n, text in enumerate(texts, start=1)]
    return spans + ([DONT_KNOW] if dont_know else [])


def gold_chunk(chunks: pd.DataFrame, qa: dict) -> int | None:
    """Row number of the first chunk that answers ``qa`` (see :func:`helpers.rag.is_hit`), or None."""
    for i, row in enumerate(chunks.to_dict("records")):
        if rag.is_hit(row, qa):
            return i
    return None


def raft_examples(qa: pd.DataFrame, retriever: rag.Retriever, k: int = 3, no_gold_share: float = 0.2,
                  system: str = QUOTE_SYSTEM, seed: int = 0, balanced: bool = False) -> list[dict]:
    """Training chats for a reader of retrieved passages, in the manner of RAFT (Zhang et al., 2024).

    Each question gets ``k`` passages: its gold passage and the retriever's best wrong ones (distractors
    that look relevant); the target cites the gold passage's number and quotes it. With ``balanced=False``
    the gold passage lands at a random position, once per question. With ``balanced=True`` each question
    appears ``k`` times, its gold passage once at each position, so that no position is right more often
    than another: a small reader otherwise learns the most frequent position instead of the evidence.

    A share ``no_gold_share`` of the questions get (with ``balanced``: also get) an example with distractors
    only and the target "I don't know.": a passage that merely looks relevant is not an answer. Questions
    whose gold passage is nowhere in ``retriever.chunks`` are skipped."""
    rng = np.random.default_rng(seed)
    chunks = retriever.chunks
    tables = retriever.search(qa["question"].tolist(), k + 1)
    examples = []

    def chat(question, rows, target):
        return {"messages": rag.rag_messages(question, pd.DataFrame(rows), system=system)
                + [{"role": "assistant", "content": target}]}

    for pair, table in zip(qa.to_dict("records"), tables):
        gold = gold_chunk(chunks, pair)
        if gold is None:
            continue
        wrong = [row for row in table.to_dict("records") if not rag.is_hit(row, pair)][:k]
        gold_row = chunks.iloc[gold].to_dict()
        no_gold = rng.random() < no_gold_share
        if balanced:
            for n in range(k):
                rows = wrong[:n] + [gold_row] + wrong[n:k - 1]
                examples.append(chat(pair["question"], rows, f"[{n + 1}] {passage_body(gold_row['text'])}"))
            if no_gold:
                examples.append(chat(pair["question"], wrong[:k], DONT_KNOW))
            continue
        rows = wrong[:k] if no_gold else wrong[:k - 1] + [gold_row]
        rows = [rows[i] for i in rng.permutation(len(rows))]
        if no_gold:
            examples.append(chat(pair["question"], rows, DONT_KNOW))
        else:
            n = 1 + [r["chunk_id"] for r in rows].index(gold_row["chunk_id"])
            examples.append(chat(pair["question"], rows, f"[{n}] {passage_body(gold_row['text'])}"))
    return examples


def cited_positions(answers: list[str]) -> dict[str, int]:
    """How often each citation (``"[1]"``, ``"[2]"``, ...) opens an answer; ``"other"`` for the rest."""
    import re

    counts: dict[str, int] = {}
    for answer in answers:
        match = re.match(r"\s*(\[\d+\])", answer)
        key = match.group(1) if match else "other"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- the benchmark file
BENCHMARK_COLUMNS = ["system", "accuracy", "seconds_per_answer", "local_usd_per_1000", "api_usd_per_1000", "commit"]


def current_commit(root=None) -> str:
    """The repository's short commit (``-dirty`` when tracked files changed), or ``"unknown"`` outside git."""
    import subprocess
    from pathlib import Path

    root = Path(root or Path(__file__).resolve().parents[1])

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD")
    return (head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")) if head else "unknown"


def write_benchmark(table: pd.DataFrame, path=None, commit: str | None = None):
    """Write a results table (index = system, see :func:`results_table`) to ``path`` (default
    ``benchmarks/results/rag_or_finetune.csv`` in the repository) with :data:`BENCHMARK_COLUMNS`."""
    from pathlib import Path

    path = Path(path or Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rag_or_finetune.csv")
    frame = table.reset_index().rename(columns={"index": "system"})
    frame["commit"] = commit or current_commit()
    for column in BENCHMARK_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[BENCHMARK_COLUMNS].round(4).to_csv(path, index=False)
    return path
