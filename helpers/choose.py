"""Choosing a base model and how much data: measure candidates on one task, and draw a learning curve.

Notebook 05 compares a small chat model fine-tuned with LoRA against an encoder with a classification head,
on the course's intent task and with the same training requests and epochs. For each candidate it measures
what a choice depends on: parameters, the size of the weights on disk, load time, accuracy before and after
fine-tuning, latency per request and peak memory. The learning curve trains the encoder on balanced subsets
of growing size, several times each, and measures what each doubling of the data gains.

Memory comes from :class:`helpers.environment.MemoryPeak`: the resident memory of this process, sampled every
20 ms while one candidate runs, after freed memory went back to the system.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.course_data import INTENT_LABELS
from helpers.environment import MemoryPeak, release_memory
from helpers.evaluate import accuracy


# ---------------------------------------------------------------- measuring
def weights_mb(folder) -> float:
    """The size on disk of the model weights (``*.safetensors``, else ``*.bin``) in a folder, in MB."""
    files = list(Path(folder).glob("*.safetensors")) or list(Path(folder).glob("*.bin"))
    return sum(f.stat().st_size for f in files) / 1e6


def median_ms(predict_one, texts) -> float:
    """The median time of ``predict_one(text)`` over ``texts``, one request at a time (batch 1), in ms."""
    times = []
    for text in texts:
        start = time.perf_counter()
        predict_one(text)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def balanced(frame: pd.DataFrame, per_label: int, seed: int = 0) -> pd.DataFrame:
    """``per_label`` random rows of each label (all of them where a label has fewer), shuffled."""
    picked = pd.concat([g.sample(min(per_label, len(g)), random_state=seed) for _, g in frame.groupby("label")])
    return picked.sample(frac=1, random_state=seed).reset_index(drop=True)


# ---------------------------------------------------------------- the encoder with a classification head
def load_encoder(path, seed: int = 0, labels=INTENT_LABELS, freeze_word_table: bool = True):
    """``(model, tokenizer)``: the encoder at ``path`` with a new classification head for ``labels``, its
    weights drawn with ``seed``. ``freeze_word_table``: the table of word vectors (about half of a small
    encoder's weights) does not train, which nearly halves the optimizer's work for little loss in accuracy."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    if freeze_word_table:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model.eval(), AutoTokenizer.from_pretrained(path)


def encoder_dataset(frame: pd.DataFrame, tokenizer, labels=INTENT_LABELS):
    """A ``datasets.Dataset`` of token ids and label numbers, for transformers' ``Trainer``."""
    from datasets import Dataset

    data = Dataset.from_dict({"text": list(frame.text), "label": [labels.index(x) for x in frame.label]})
    return data.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=64), batched=True,
                    remove_columns=["text"])


def encoder_trainer(model, tokenizer, frame: pd.DataFrame, args):
    """transformers' ``Trainer`` for ``model`` on ``frame`` (text, label), padding each batch to its longest."""
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.trainer_callback import PrinterCallback

    trainer = Trainer(model=model, args=args, train_dataset=encoder_dataset(frame, tokenizer),
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)   # without a progress bar: no summary line per run either
    return trainer


def encoder_predict(model, tokenizer, texts, batch_size: int = 64) -> list[str]:
    """The label with the highest score for each text."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=64,
                              return_tensors="pt").to(model.device)
            out += [model.config.id2label[int(k)] for k in model(**batch).logits.argmax(-1)]
    return out


def encoder_candidate(path, train: pd.DataFrame, test: pd.DataFrame, args, latency_texts) -> dict:
    """Load, score, fine-tune (``args``: ``TrainingArguments``) and score again the encoder at ``path``; one row
    of the comparison table (see :func:`candidate_row`)."""
    with MemoryPeak() as mem:
        start = time.perf_counter()
        model, tokenizer = load_encoder(path, seed=args.seed)
        load_s = time.perf_counter() - start
        before = accuracy(test.label, encoder_predict(model, tokenizer, list(test.text)))
        start = time.perf_counter()
        encoder_trainer(model, tokenizer, train, args).train()
        train_s = time.perf_counter() - start
        after = accuracy(test.label, encoder_predict(model, tokenizer, list(test.text)))
        latency = median_ms(lambda t: encoder_predict(model, tokenizer, [t]), latency_texts)
    return candidate_row(model, path, load_s, before, after, train_s, latency, mem)


# ---------------------------------------------------------------- a chat model with LoRA
def decoder_candidate(load, train_chats: list, test: pd.DataFrame, args, lora, bf16: bool, latency_texts,
                      weights_folder) -> dict:
    """The same measurements for a chat model: ``load()`` gives ``(model, tokenizer)``; it is scored by asking
    for the label (:func:`helpers.evaluate.classify`), fine-tuned with LoRA through :func:`helpers.sft.train`
    (``args``: ``SFTConfig``, ``lora``: ``LoraConfig``) and scored again."""
    from helpers import evaluate, sft

    with MemoryPeak() as mem:
        start = time.perf_counter()
        model, tokenizer = load()
        load_s = time.perf_counter() - start
        before = accuracy(test.label, evaluate.classify(model, tokenizer, list(test.text), bf16=bf16))
        run = sft.train(model, tokenizer, train_chats, None, args, lora)
        tuned = run.model
        after = accuracy(test.label, evaluate.classify(tuned, tokenizer, list(test.text), bf16=bf16))
        latency = median_ms(lambda t: evaluate.classify(tuned, tokenizer, [t], batch_size=1, bf16=bf16),
                            latency_texts)
    row = candidate_row(tuned, weights_folder, load_s, before, after, run.seconds, latency, mem)
    row["parameters (M)"] = round(sum(p.numel() for n, p in tuned.named_parameters() if "lora_" not in n) / 1e6, 1)
    return row


def candidate_row(model, weights_folder, load_s, before, after, train_s, latency_ms, mem: MemoryPeak) -> dict:
    """One row of the comparison table."""
    return {"parameters (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "weights on disk (MB)": round(weights_mb(weights_folder)),
            "load time (s)": round(load_s, 2), "accuracy before": before, "accuracy after": after,
            "training time (s)": round(train_s, 1), "latency (ms, median, batch 1)": round(latency_ms, 1),
            "peak memory (MB)": round(mem.peak * 1024), "memory added (MB)": round(mem.added_gib * 1024)}


# ---------------------------------------------------------------- the learning curve
def learning_curve(path, train: pd.DataFrame, test: pd.DataFrame, per_label: list[int], seeds: list[int],
                   make_args) -> pd.DataFrame:
    """Fine-tune the encoder on ``per_label`` requests of each label (a balanced random subset per seed) and
    score it on ``test``: one row per run (n, per_label, seed, accuracy). ``make_args(seed)`` gives the
    ``TrainingArguments``; the seed also picks the subset, the head's first weights and the batch order."""
    from datasets.utils import disable_progress_bars, enable_progress_bars, are_progress_bars_disabled

    bars = not are_progress_bars_disabled()
    disable_progress_bars()   # one "Map" bar per run would bury the curve
    rows = []
    for k in per_label:
        for seed in seeds:
            subset = balanced(train, k, seed)
            model, tokenizer = load_encoder(path, seed=seed)
            encoder_trainer(model, tokenizer, subset, make_args(seed)).train()
            rows.append({"n": len(subset), "per_label": k, "seed": seed,
                         "accuracy": accuracy(test.label, encoder_predict(model, tokenizer, list(test.text)))})
            del model
    if bars:
        enable_progress_bars()
    release_memory()
    return pd.DataFrame(rows)


def curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Per training-set size: mean and spread (min, max, standard deviation) of the accuracy over the seeds,
    and the gain of the mean over the size before (one doubling)."""
    summary = curve.groupby("n").accuracy.agg(["mean", "min", "max", "std"]).fillna(0.0)
    summary["gain"] = summary["mean"].diff()
    return summary


def gain_per_doubling(curve: pd.DataFrame, low: int | None = None, high: int | None = None) -> float:
    """The slope of a straight line through accuracy against log2(n) (every run, sizes ``low`` to ``high``):
    the accuracy that each doubling of the data adds, on average, in that stretch."""
    part = curve[(curve.n >= (low or 0)) & (curve.n <= (high or curve.n.max()))]
    return float(np.polyfit(np.log2(part.n), part.accuracy, 1)[0])
