"""How fast is the course's training path? Side by side, in one run, on identical work.

    python benchmarks/trainer_speed.py                 # every run, 2 threads (or all cores)
    python benchmarks/trainer_speed.py --runs course,trl_sft --threads 1

Work, the same in every run: the base model, notebook 04's 96 intent training requests (16 per label), LoRA
(r 8, alpha 16, no dropout, the 7 projections of every layer), learning rate 2e-3, batches of 8, one epoch
(12 optimizer steps), loss on the replies.

1. ``course``: ``helpers.sft.train``, as notebook 04 runs it: the base model loaded in bf16 where the
   hardware has native bf16 (fp32 adapters), micro-batches of 4 with gradient accumulation, batches grouped
   by length, the vocabulary projection only at labelled positions, no gradient checkpointing.
   What each piece buys, by taking one away:
   ``course_fp32`` (fp32 base weights), ``course_trl_loss`` (TRL's own loss, which projects every position),
   ``course_whole`` (whole batches of 8: the time micro-batches cost), ``course_checkpointing``
   (gradient checkpointing on: the memory lever).
2. ``trl_sft``: TRL's ``SFTTrainer`` with its defaults (gradient checkpointing on, bf16 autocast, the model
   loaded from its folder), the data as a conversational prompt/completion ``datasets.Dataset``.
3. ``hf_trainer``: a transformers ``Trainer`` + peft with dynamic padding (``DataCollatorForSeq2Seq``) and
   ``train_sampling_strategy="group_by_length"``, fp32.

Each run is a fresh child process, so its peak RSS is its own, timed from loading the model to the end of
training. Reported: seconds, real (non-pad) tokens per second, useful FLOP/s as a fraction of the measured
matmul roof, peak RSS. Useful FLOPs are the same for every run: 4 x the decoder's matmul weights per real
token (forward, and the backward to the inputs; LoRA freezes the weights) plus 4 x the vocabulary projection
per labelled token. The roof is the best of fp32 and (where native) bf16 ``torch.mm`` on the model's shapes.
Writes ``benchmarks/results/trainer_speed.json`` with the commit it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = "course,course_fp32,course_trl_loss,course_whole,course_checkpointing,trl_sft,hf_trainer"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GOAL_SPEEDUP, GOAL_GIB = 1.5, 2.0


def _examples():
    from helpers.course_data import intent_chat, load_intents

    frame = load_intents("train").groupby("label").head(16).sample(frac=1, random_state=0)
    return [intent_chat(t, label) for t, label in zip(frame.text, frame.label)]


def _peak_rss_gib() -> float:
    from helpers.sft_launch import peak_rss_mb

    return peak_rss_mb() / 1024


def _useful_flops(model, rows) -> float:
    """4 x matmul weights per real token, 4 x vocabulary projection per labelled token (see the docstring)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in inner.get_decoder().named_parameters()
               if p.ndim == 2 and "embed" not in n and "lora" not in n)
    tokens = sum(len(r["input_ids"]) for r in rows)
    labelled = sum(sum(label != -100 for label in r["labels"][1:]) for r in rows)
    return 4.0 * body * tokens + 4.0 * head * labelled


def worker(kind: str, workdir: Path) -> dict:
    """One timed training run in this process; returns its measurements."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from helpers import model as base
    from helpers import sft
    from helpers.environment import bf16_supported

    examples, tokenizer = _examples(), base.load_tokenizer()
    rows = [sft.encode_example(e, tokenizer) for e in examples]
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    common = dict(num_train_epochs=1, learning_rate=2e-3, per_device_train_batch_size=8, save_strategy="no",
                  report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=0)
    bf16 = bf16_supported()[0] and kind != "course_fp32"
    start = time.perf_counter()
    if kind.startswith("course"):
        model, _ = base.load_base_model(dtype=torch.bfloat16 if bf16 else None)
        settings = {**common, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}
        if kind == "course_whole":
            settings.update(per_device_train_batch_size=8, gradient_accumulation_steps=1)
        args = sft.course_config(workdir / kind, gradient_checkpointing=kind == "course_checkpointing", **settings)
        if kind == "course_trl_loss":   # the same settings and data, TRL's own loss
            trainer = SFTTrainer(model=model, args=args, train_dataset=sft.chat_dataset(examples, tokenizer),
                                 processing_class=tokenizer, peft_config=lora)
            trainer.train()
            model = trainer.model
        else:
            model = sft.train(model, tokenizer, examples, None, args, lora).model
    elif kind == "trl_sft":
        from datasets import Dataset

        data = Dataset.from_list([{"prompt": e["messages"][:-1], "completion": e["messages"][-1:]} for e in examples])
        trainer = SFTTrainer(model=base.model_source(), args=SFTConfig(str(workdir / kind), **common),
                             train_dataset=data, peft_config=lora)
        trainer.train()
        model, bf16 = trainer.model, "autocast"
    else:
        from peft import get_peft_model
        from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

        model, _ = base.load_base_model()
        model = get_peft_model(model, lora)
        data = [{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows]
        args = TrainingArguments(str(workdir / kind), train_sampling_strategy="group_by_length", **common)
        Trainer(model=model, args=args, train_dataset=data,
                data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)).train()
    seconds = time.perf_counter() - start
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"kind": kind, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "flops_per_s": _useful_flops(model, rows) / seconds, "bf16": bf16, "peak_rss_gib": _peak_rss_gib()}


def matmul_roof(threads: int, seconds: float = 1.0) -> dict:
    """The best FLOP/s of ``torch.mm`` on the model's shapes, fp32 and (where native) bf16."""
    import torch

    from helpers.environment import bf16_supported

    torch.set_num_threads(threads)
    best = {}
    for dtype in [torch.float32] + ([torch.bfloat16] if bf16_supported("cpu")[0] else []):
        for m, k, n in [(512, 576, 1536), (512, 1536, 576), (1024, 1024, 1024)]:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.mm(a, b)
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 3:
                torch.mm(a, b)
                count += 1
            name = str(dtype).split(".")[1]
            best[name] = max(best.get(name, 0), 2 * m * k * n * count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "benchmarks" / "trainer_speed"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("COURSE_MODE", "ci")   # no progress bars inside the timed runs
    if args.worker:
        import warnings

        import torch

        warnings.filterwarnings("ignore")
        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, Path(args.workdir))))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(ROOT)}
    results = {}
    for kind in args.runs.split(","):
        cmd = [sys.executable, __file__, "--worker", kind, "--threads", str(args.threads), "--workdir", args.workdir]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            sys.exit(f"{kind} failed:\n{out.stderr[-3000:]}")
        results[kind] = json.loads(line[0][7:])
        print(f"{kind} done in {results[kind]['seconds']:.1f} s", flush=True)
    roof = matmul_roof(args.threads)
    best = max(roof.values())
    print(f"\n96 requests, 12 steps of batch 8, {args.threads} thread(s); matmul roof "
          + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in roof.items()) + " GFLOP/s")
    print(f"{'run':<22}{'seconds':>9}{'tokens/s':>10}{'of roof':>9}{'peak RSS':>11}  bf16")
    for r in results.values():
        r["of_roof"] = r["flops_per_s"] / best
        print(f"{r['kind']:<22}{r['seconds']:>9.1f}{r['tokens_per_s']:>10.0f}{r['of_roof']:>9.1%}"
              f"{r['peak_rss_gib']:>7.2f} GiB  {r['bf16']}")
    summary = {"runs": results, "roof_flops_per_s": roof, "threads": args.threads}
    if {"course", "trl_sft"} <= results.keys():
        course, trl = results["course"], results["trl_sft"]
        ratio = course["tokens_per_s"] / trl["tokens_per_s"]
        summary.update(course_tokens_per_s=round(course["tokens_per_s"], 1),
                       trl_sft_tokens_per_s=round(trl["tokens_per_s"], 1), speedup_vs_trl_sft=round(ratio, 3),
                       course_peak_gib=round(course["peak_rss_gib"], 3))
        print(f"\ncourse vs TRL SFTTrainer defaults: {ratio:.2f}x tokens/s (goal >= {GOAL_SPEEDUP}x: "
              f"{'met' if ratio >= GOAL_SPEEDUP else 'NOT met'}); course peak {course['peak_rss_gib']:.2f} GiB "
              f"(goal <= {GOAL_GIB} GiB: {'met' if course['peak_rss_gib'] <= GOAL_GIB else 'NOT met'})")
        for kind, piece in [("course_fp32", "bf16 base weights"), ("course_trl_loss", "the labelled-positions loss"),
                            ("course_whole", "micro-batches (a cost, for memory)"),
                            ("course_checkpointing", "no gradient checkpointing"), ("hf_trainer", "everything, vs a plain Trainer")]:
            if kind in results:
                print(f"  {piece:<36} {course['tokens_per_s'] / results[kind]['tokens_per_s']:.2f}x speed, "
                      f"{course['peak_rss_gib'] - results[kind]['peak_rss_gib']:+.2f} GiB")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "helpers", "benchmarks"], cwd=ROOT).returncode
    summary["commit"] = commit + ("+dirty" if dirty else "")
    path = ROOT / "benchmarks" / "results" / "trainer_speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"-> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
