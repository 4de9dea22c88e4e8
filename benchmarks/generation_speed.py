"""How fast does the course label requests, and in how much memory? Four setups side by side, in one run.

    python benchmarks/generation_speed.py                    # 150 intent test requests, 2 repeats
    python benchmarks/generation_speed.py --requests 48 --repeats 3 --threads 2

The work is the same for every setup: :func:`helpers.evaluate.classify` (greedy, 8 new tokens, batches of
16) on the first ``--requests`` requests of the intent test split, with the base model. The setups:

1. ``fp32``: float32 weights, float32 arithmetic (what a CPU without native bf16 runs).
2. ``fp32_autocast``: float32 weights, bf16 autocast (``bf16=True``): each weight is cast to bf16 for
   every generation call.
3. ``bf16_unfixed``: weights stored in bf16 (``load_adapter(..., bf16_base=True)``, as the trainer's
   ``bf16_base``), with the output layer fed the slice that generation hands it. On a CPU, PyTorch's
   bf16 matrix product then copies the 49,152 × 576 output weight for every sequence.
4. ``bf16``: weights stored in bf16, with :func:`helpers.model.generate`'s fix (a contiguous input for the
   output layer). What the notebooks run where bf16 is native.

Each setup runs in a fresh process (so that its memory is its own), after loading the model and one warm-up
batch; the repeats are interleaved so that a busy machine slows every setup alike. Reported: the median
seconds, the ratio to ``fp32_autocast``, and the *working memory*: the process's peak during labelling
minus its size before (the weights are not counted). The bf16 setups are skipped where bf16 is not
native. All setups must give the same labels up to near-ties; the script prints how many differ.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETUPS = ("fp32", "fp32_autocast", "bf16_unfixed", "bf16")


def worker(setup: str, requests: int) -> dict:
    """Label the requests once with ``setup`` in this process; return seconds, working memory and labels."""
    import psutil

    from helpers import course_data, evaluate, trainer
    from helpers import model as base

    model, tokenizer = base.load_base_model()
    if setup.startswith("bf16"):
        model.requires_grad_(False)
        trainer.frozen_to_bf16(model)
    if setup == "bf16_unfixed":
        base._contiguous_input = lambda module, args: args   # the hook stays, the fix is gone
    texts = course_data.load_intents("test")["text"].tolist()[:requests]
    autocast = setup != "fp32"
    evaluate.classify(model, tokenizer, texts[:16], bf16=autocast)   # warm-up: one batch
    trainer.release_memory()
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    before = process.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    labels = evaluate.classify(model, tokenizer, texts, bf16=autocast)
    seconds = time.perf_counter() - started
    done.set()
    return {"setup": setup, "seconds": seconds, "working_gib": max(0, peak[0] - before) / 2**30, "labels": labels}


def run_worker(setup: str, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, __file__, "--worker", setup, "--requests", str(args.requests)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(f"The {setup} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.requests)))
        return

    from helpers import trainer

    native, why = trainer.bf16_supported("cpu")
    setups = SETUPS if native else SETUPS[:2]
    print(f"{args.requests} intent requests, {args.threads} threads, {args.repeats} repeats; {why}")
    runs = {s: [] for s in setups}
    for _ in range(args.repeats):
        for setup in setups:
            runs[setup].append(run_worker(setup, args))
    reference = statistics.median(r["seconds"] for r in runs["fp32_autocast"])
    labels = runs["fp32_autocast"][0]["labels"]
    print(f"{'setup':<15} {'seconds':>8} {'speed-up vs fp32_autocast':>26} {'working memory':>15} "
          f"{'labels differ':>14}")
    for setup, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        memory = statistics.median(r["working_gib"] for r in results)
        differ = sum(a != b for a, b in zip(results[0]["labels"], labels))
        print(f"{setup:<15} {seconds:8.1f} {reference / seconds:25.2f}x {memory:11.2f} GiB {differ:14d}")
    if not native:
        print("bf16_unfixed and bf16 skipped: this CPU has no native bf16.")


if __name__ == "__main__":
    main()
