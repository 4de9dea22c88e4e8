"""How fast is the course trainer? Side by side, in one run, on identical work.

    python benchmarks/trainer_speed.py                      # 8 optimizer steps of batch 8
    python benchmarks/trainer_speed.py --steps 4 --threads 1

Work: the base model, the intent training requests, LoRA (r 8, alpha 16, dropout 0.05, q/k/v/o), the same
learning rate and number of optimizer steps, loss on the reply tokens only, in every run.

1. ``course``:   ``helpers.trainer.train`` (dynamic padding, length grouping, bf16 autocast on a GPU that
                 has it, the vocabulary projection only on labelled tokens).
   ``course_micro``: the same with each batch run in micro-batches of 2 (``micro_batch_size``): the same
                 gradient, with one micro-batch's activations in memory at a time.
   ``course_lowmem``: the same with ``gradient_checkpointing=True`` (less memory, more time).
   ``course_bf16``: the same with the frozen base weights stored in bf16 (``bf16_base=True``), where the
                 hardware has native bf16 (skipped elsewhere).
2. ``baseline``: a plain transformers ``Trainer`` + peft, every example padded to ``max_length`` as most
                 tutorials do (``padding="max_length"``), fp32.
3. ``baseline_dynamic``: the same Trainer with per-batch padding (``DataCollatorForSeq2Seq``), to show how
                 much of the gain is padding alone.

Each run is a fresh child process, so its peak RSS is its own. Every run is timed alike: from the chat
examples (tokenizing, adding the adapter) to the adapter saved on disk. Reported per run: seconds, real
(non-pad) tokens per second, achieved FLOP/s and its fraction of the measured matmul roof, peak RSS.

Achieved FLOP/s counts the *useful* work on real tokens, the same for every run: LoRA freezes the base
weights, so each token costs a forward (2 FLOPs per weight) and the input-gradient half of the backward
(2 more): 4 x the decoder's matmul weights per token, plus 4 x the vocabulary projection per labelled token.
The roof is the best of fp32 and (where supported) bf16 ``torch.mm`` on matrices of the model's shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL_SPEEDUP, GOAL_RSS_GIB = 1.5, 2.0


def _examples(n: int):
    from helpers.course_data import intent_chat, load_intents

    frame = load_intents("train")
    return [intent_chat(t, l) for t, l in zip(frame.text[:n], frame.label[:n])]


def _native_bf16() -> bool:
    from helpers.trainer import bf16_supported

    return bf16_supported()[0]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _useful_flops(model, rows) -> float:
    """4 x matmul weights per real token, 4 x vocabulary projection per labelled token (see the docstring)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in inner.get_decoder().named_parameters()
               if p.ndim == 2 and "embed" not in n and "lora" not in n)
    tokens = sum(len(r["input_ids"]) for r in rows)
    labelled = sum(sum(label != -100 for label in r["labels"][1:]) for r in rows)
    return 4.0 * body * tokens + 4.0 * head * labelled


def worker(kind: str, args) -> dict:
    """One timed training run in this process; returns its measurements."""
    import torch

    torch.set_num_threads(args.threads)
    from helpers import model as base
    from helpers import trainer

    examples = _examples(args.steps * args.batch_size)
    config = trainer.TrainConfig(n_epochs=1, batch_size=args.batch_size, max_length=args.max_length,
                                 learning_rate=2e-4, keep_checkpoints=0, seed=0)
    tokenizer = base.load_tokenizer()
    rows = [trainer.encode_example(e, tokenizer, config.max_length) for e in examples]
    model, _ = base.load_base_model()
    if kind.startswith("course"):
        config.gradient_checkpointing = kind == "course_lowmem"
        config.micro_batch_size = args.micro_batch_size if kind == "course_micro" else 0
        config.bf16_base = kind == "course_bf16"
        start = time.perf_counter()
        result = trainer.train(examples, None, config, Path(args.workdir) / "course", model=model)
        seconds, steps = time.perf_counter() - start, len(result.metrics)
        model = result.model
        device = "cuda" if torch.cuda.is_available() else "cpu"
        bf16 = "weights" if config.bf16_base else trainer.use_bf16(config.bf16, device)
    else:
        from peft import get_peft_model
        from transformers import (
            DataCollatorForSeq2Seq,
            Trainer,
            TrainingArguments,
            default_data_collator,
        )

        start = time.perf_counter()  # like the course run: from chat examples to a saved adapter
        model = get_peft_model(model, trainer._peft_config(config))
        rows = [trainer.encode_example(e, tokenizer, config.max_length) for e in examples]
        if kind == "baseline":  # pad every example to max_length, as tutorials do
            data = []
            for r in rows:
                pad = config.max_length - len(r["input_ids"])
                data.append({"input_ids": r["input_ids"] + [tokenizer.pad_token_id] * pad,
                             "attention_mask": [1] * len(r["input_ids"]) + [0] * pad,
                             "labels": r["labels"] + [-100] * pad})
            collator = default_data_collator
        else:
            data = [{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows]
            collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        targs = TrainingArguments(output_dir=str(Path(args.workdir) / kind), per_device_train_batch_size=args.batch_size,
                                  max_steps=args.steps, learning_rate=2e-4, lr_scheduler_type="linear",
                                  warmup_steps=0, weight_decay=0.0, logging_strategy="no", save_strategy="no",
                                  report_to=[], disable_tqdm=True, seed=0, dataloader_num_workers=0)
        hf = Trainer(model=model, args=targs, train_dataset=data, data_collator=collator)
        hf.train()
        hf.save_model(str(Path(args.workdir) / kind / "final"))
        seconds, steps, bf16 = time.perf_counter() - start, hf.state.global_step, False
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"kind": kind, "seconds": seconds, "steps": steps, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "flops_per_s": _useful_flops(model, rows) / seconds, "bf16": bf16, "peak_rss_gib": _peak_rss_gib()}


def matmul_roof(threads: int, seconds: float = 1.0) -> dict:
    """The best FLOP/s of ``torch.mm`` on the model's shapes, fp32 and (where native) bf16."""
    import torch

    from helpers.trainer import bf16_supported

    torch.set_num_threads(threads)
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_supported("cpu")[0] else [])
    best = {}
    for dtype in dtypes:
        for m, k, n in [(512, 576, 1536), (512, 1536, 576), (1024, 1024, 1024)]:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.mm(a, b)
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 3:
                torch.mm(a, b)
                count += 1
            rate = 2 * m * k * n * count / (time.perf_counter() - start)
            best[str(dtype).split(".")[1]] = max(best.get(str(dtype).split(".")[1], 0), rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256, help="the TrainConfig default; the baseline pads to it")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--micro-batch-size", type=int, default=2, help="the course_micro run's pieces")
    parser.add_argument("--runs", default="course,course_micro,course_lowmem,course_bf16,baseline,baseline_dynamic")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "benchmarks" / "trainer_speed"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("COURSE_MODE", "ci")  # no progress bars inside the timed runs

    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        print("RESULT " + json.dumps(worker(args.worker, args)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    results = {}
    for kind in args.runs.split(","):
        cmd = [sys.executable, __file__, "--worker", kind]
        if kind == "course_bf16" and not _native_bf16():
            print("course_bf16 skipped: this machine has no native bf16", flush=True)
            continue
        for name in ("steps", "batch-size", "micro-batch-size", "max-length", "threads", "workdir"):
            cmd += [f"--{name}", str(getattr(args, name.replace("-", "_")))]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            sys.exit(f"{kind} failed:\n{out.stderr[-3000:]}")
        results[kind] = json.loads(line[0][7:])
        print(f"{kind} done in {results[kind]['seconds']:.1f} s", flush=True)
    roof = matmul_roof(args.threads)
    best_roof = max(roof.values())

    print(f"\n{args.steps} optimizer steps x batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.threads} thread(s); matmul roof " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in roof.items())
          + " GFLOP/s")
    print(f"{'run':<18}{'seconds':>9}{'tokens/s':>10}{'GFLOP/s':>9}{'of roof':>9}{'peak RSS':>10}  bf16")
    for r in results.values():
        print(f"{r['kind']:<18}{r['seconds']:>9.1f}{r['tokens_per_s']:>10.0f}{r['flops_per_s'] / 1e9:>9.1f}"
              f"{r['flops_per_s'] / best_roof:>9.1%}{r['peak_rss_gib']:>8.2f} GiB  {r['bf16']}")
    for name in ("course", "course_micro", "course_lowmem", "course_bf16"):
        if name not in results:
            continue
        run = results[name]
        for kind in ("baseline", "baseline_dynamic"):
            if kind in results:
                ratio = run["tokens_per_s"] / results[kind]["tokens_per_s"]
                goal = f" (goal >= {GOAL_SPEEDUP}x: {'met' if ratio >= GOAL_SPEEDUP else 'NOT met'})" if kind == "baseline" else ""
                print(f"{name} speed-up vs {kind}: {ratio:.2f}x{goal}")
        rss = run["peak_rss_gib"]
        print(f"{name}: {run['flops_per_s'] / best_roof:.1%} of the matmul roof; peak RSS {rss:.2f} GiB "
              f"(goal <= {GOAL_RSS_GIB} GiB: {'met' if rss <= GOAL_RSS_GIB else 'NOT met'})")

if __name__ == "__main__":
    main()
