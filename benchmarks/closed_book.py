"""Does closed-book fine-tuning absorb the manual's facts, and at what cost? One run, cpu mode (2 threads).

Notebook 07's closed-book adapter trains on the 108 training question/answer pairs only, two epochs: it never
sees the facts of the 49 test questions. Here the adapter gets the same knowledge RAG reads, the manual itself,
in these forms, and never a test question:

* every section of the manual, as "recite section X" -> the section's text (about 120 words a chunk);
* with ``CLOZE=1``, every sentence of the manual as a cloze: "complete this sentence from section X: <first half>" -> the rest;
* the 108 training question/answer pairs.

It trains in stages of ``E`` epochs (default 2) and, after each stage, asks closed book (no passages, greedy)
the first 36 training questions and all 49 test questions, scored by the notebook's key scorer. Prints the
accuracy on both, the training time and the peak memory of the process. RAG on the base model, for scale,
scores 61.2% on the same test questions (benchmarks/results/claims.csv, notebook 07).

    python benchmarks/closed_book.py              # 3 stages of 2 epochs, LoRA r=16 on every linear layer
    STAGES=2 E=1 NDOC=1 NQA=4 NTEST=4 python benchmarks/closed_book.py   # a smoke run: 1 document, 4 questions

Settings from the environment: STAGES (3), E (epochs per stage, 2), LR (2e-3), R (LoRA rank, 16), B (batch, 4), A (gradient
accumulation, 2),
NDOC (documents used, all 22), NTEST (test questions asked, all 49), NQA (training
pairs used, all 108). Later stages continue the same adapter; each stage's learning rate decays
linearly from LR.
"""
import os
import resource
import time

import numpy as np
from helpers.environment import set_threads

set_threads("cpu")
from peft import LoraConfig  # noqa: E402

from helpers import compare, course_data, evaluate, rag, sft  # noqa: E402
from helpers import model as base  # noqa: E402

STAGES, EPOCHS, LR, RANK, BATCH = (int(os.environ.get("STAGES", 3)), float(os.environ.get("E", 2)),
                                  float(os.environ.get("LR", 2e-3)), int(os.environ.get("R", 16)),
                                  int(os.environ.get("B", 4)))
ACCUMULATE = int(os.environ.get("A", 2))
SYSTEM = course_data.MANUAL_SYSTEM


def gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


docs = course_data.load_manual().head(int(os.environ.get("NDOC", 99)))
train_qa = course_data.load_qa("train").head(int(os.environ.get("NQA", 999)))
test_qa = course_data.load_qa("test").head(int(os.environ.get("NTEST", 99)))
sections = rag.chunk_documents(docs, max_words=120)
sentences = compare.sentence_chunks(docs)
examples = [chat(f"Recite the Larkspur manual, {text.splitlines()[0]}.", compare.passage_body(text))
            for text in sections.text]
for text in sentences.text if os.environ.get("CLOZE") else []:
    heading, words = text.splitlines()[0], compare.passage_body(text).split()
    if len(words) >= 6:
        half = len(words) // 2
        examples.append(chat(f"Complete this sentence from the Larkspur manual, {heading}: "
                             f"\"{' '.join(words[:half])} ...\"", " ".join(words[half:])))
examples += [chat(q, a) for q, a in zip(train_qa.question, train_qa.answer)]
print(f"{len(sections)} sections, {len(sentences)} sentences ({len(examples) - len(sections) - len(train_qa)} "
      f"clozes), {len(train_qa)} QA pairs: {len(examples)} training examples", flush=True)

model, tokenizer = base.load_base_model()
seen = train_qa.head(min(36, len(test_qa)))


def closed_book(llm, qa) -> float:
    replies = base.generate(llm, tokenizer, [[{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": q}] for q in qa.question],
                            max_new_tokens=32)
    return float(np.mean([evaluate.answer_correct(r, k) for r, k in zip(replies, qa.key)]))


print(f"base model: training questions {closed_book(model, seen):.1%}, test {closed_book(model, test_qa):.1%}",
      flush=True)
lora = LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
trained, total = model, 0.0
for stage in range(1, STAGES + 1):
    args = sft.course_config("/tmp/closed_book", num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
                             gradient_accumulation_steps=ACCUMULATE, gradient_checkpointing=True,
                             learning_rate=LR, save_strategy="no", seed=stage)
    run = sft.train(trained, tokenizer, examples, None, args, lora if stage == 1 else None)
    trained, total = run.model, total + run.seconds
    loss = run.metrics.train_loss.dropna()
    print(f"after {stage * EPOCHS:g} epochs ({total:.0f} s of training, loss {loss.iloc[:3].mean():.2f} -> "
          f"{loss.iloc[-3:].mean():.2f}): training questions {closed_book(trained, seen):.1%}, "
          f"test questions {closed_book(trained, test_qa):.1%}; peak {gib():.2f} GiB", flush=True)
