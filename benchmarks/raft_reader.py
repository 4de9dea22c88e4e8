"""How the RAFT reader of notebook 07 compares with RAG, and why: one run, cpu mode (2 threads), side by side.

    python benchmarks/raft_reader.py                  # targets "[n] quote", as in the notebook
    CHOICE_ONLY=1 python benchmarks/raft_reader.py    # targets "[n]" only: all the loss on the choice
    BALANCED=1 E=1 python benchmarks/raft_reader.py   # each question 3 times, gold once at each position
    BALANCED=1 E=1 NQ=54 python benchmarks/raft_reader.py   # the same on half the training questions
    BALANCED=1 E=1 NQ=54 NG=0.1 DK_BOTH=1 python benchmarks/raft_reader.py   # as notebook 07: plus "I don't know"
                                          # examples for 10% of the questions; read with and without that option

Settings from the environment: B (batch, 2), A (gradient accumulation, 4), NG (share without the gold passage,
0.2), E (epochs, 2), LR (1e-3). Prints RAG on the base model (k=1), the base reader given 3 cited passages,
the positions of the gold passage in the training targets, and the trained reader's accuracy and citations
on the 49 test questions with 3 passages and with 1.
"""
import collections
import os
import re
import resource
import time

import numpy as np
from helpers.environment import set_threads
set_threads("cpu")
from peft import LoraConfig
from helpers import compare, course_data, evaluate, rag, sft
from helpers import model as base

BATCH, ACC, NOGOLD, EPOCHS, LR = (int(os.environ.get("B", 2)), int(os.environ.get("A", 4)),
                                  float(os.environ.get("NG", 0.2)), float(os.environ.get("E", 2)), float(os.environ.get("LR", 1e-3)))
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
docs, train_qa, test_qa = course_data.load_manual(), course_data.load_qa("train"), course_data.load_qa("test")
sentences = compare.sentence_chunks(docs)
vectors = rag.embed(sentences.text.tolist())
store = rag.FaissIndex(vectors.shape[1]); store.add(vectors)
retriever = rag.Retriever(sentences, store)
model, tokenizer = base.load_base_model()
print("loaded", f"{rss():.2f} GiB", flush=True)

def read(llm, questions, k, dont_know, cite, system):
    passages = retriever.search(list(questions), k)
    prompts = [rag.rag_messages(q, p, system=system) for q, p in zip(questions, passages)]
    spans = [compare.quotable(p, dont_know, cite) for p in passages]
    return compare.generate_extractive(llm, tokenizer, prompts, spans, max_new_tokens=48)

def acc(answers): return np.mean([evaluate.answer_correct(a, k) for a, k in zip(answers, test_qa.key)])
t = time.time()
base_rag = read(model, test_qa.question, 1, False, False, compare.GROUNDED_SYSTEM)
first3 = read(model, test_qa.question, 3, False, True, compare.QUOTE_SYSTEM)
print("base reader, k=3, cited:", f"{acc(first3):.1%}", compare.cited_positions(first3), flush=True)
print(f"RAG base k=1: {acc(base_rag):.1%} ({time.time()-t:.0f} s)", flush=True)
chats = compare.raft_examples(train_qa, retriever, k=3, no_gold_share=NOGOLD, system=compare.QUOTE_SYSTEM)
print("gold positions in training targets:", collections.Counter(c["messages"][-1]["content"][:3] for c in chats), flush=True)
if os.environ.get("BALANCED"):   # every question three times, its gold passage once at each position
    few = train_qa.head(int(os.environ.get("NQ", len(train_qa))))   # NQ: only the first NQ training questions
    chats = compare.raft_examples(few, retriever, k=3, no_gold_share=NOGOLD, balanced=True)
    print(f"balanced: {len(chats)} examples", compare.cited_positions([c["messages"][-1]["content"] for c in chats]), flush=True)
if os.environ.get("CHOICE_ONLY"):
    for c in chats:
        m = re.match(r"\[\d\]", c["messages"][-1]["content"])
        if m: c["messages"][-1]["content"] = m.group()
args = sft.course_config("/tmp/raftx/out", num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
                         gradient_accumulation_steps=ACC, learning_rate=LR, gradient_checkpointing=True, save_strategy="no")
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
run = sft.train(model, tokenizer, chats, None, args, LoraConfig(**LORA))
print(f"trained {len(chats)} ex in {run.seconds:.0f} s, loss {run.metrics.train_loss.iloc[:2].mean():.2f} -> {run.metrics.train_loss.iloc[-2:].mean():.2f}; peak {rss():.2f} GiB", flush=True)
for k, dk in ((3, True), (3, False), (1, True), (1, False)) if os.environ.get("DK_BOTH") else ((3, False), (1, False)):
    t = time.time(); ans = read(run.model, test_qa.question, k, dk, True, compare.QUOTE_SYSTEM)
    declines = np.mean([a.strip().startswith("I don") for a in ans])
    print(f"RAFT k={k} dont_know={dk}: {acc(ans):.1%}, says don't know on {declines:.0%}, cites {compare.cited_positions(ans)} ({time.time()-t:.0f} s)", flush=True)
print(f"peak {rss():.2f} GiB")
