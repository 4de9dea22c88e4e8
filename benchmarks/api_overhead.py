"""What does going through the course server's OpenAI-compatible API cost? Side by side, in one run.

    python benchmarks/api_overhead.py                  # ci mode (1 thread), 2 repeats
    python benchmarks/api_overhead.py --mode cpu --repeats 3

Two pairs, each measured on identical work and interleaved (API, direct, API, direct, ...) so that a busy
machine slows both alike; the ratio reported is the median of the paired ratios:

1. **A fine-tuning job.** API: ``jobs.create`` until ``jobs.retrieve`` shows ``succeeded`` (polled every
   0.1 s), i.e. file validation, queueing, training, checkpoints, the result file and the model record.
   Direct: :func:`helpers.trainer.train` with the very configuration the server derives
   (:func:`helpers.server.rules.train_config`, gradient checkpointing included off the GPU), plus writing the result CSV. 30 intent examples, 10
   validation examples, 2 epochs of batch 4.
2. **A chat completion.** API: ``chat.completions.create`` (temperature 0, 8 tokens) on the base model.
   Direct: :func:`helpers.model.generate` on the same conversation, in this process while the server
   idles. Per-request latency, the two alternating request by request.

Both sides are warm: the server has run one tiny job and one chat before timing (imports and the base
model loaded), and each direct run imports everything and loads the base model once before its timer
starts. Both use the same thread count (the mode's: ci 1 thread, cpu every core). Goal: ratio <= 1.10.
On a shared machine the job pair is the noisier one; the job's own split (the client's wall time against
the server's time inside its training call, both from the same run) shows the API's overhead directly.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL = 1.10
SEED = 11
N_TRAIN, N_VALID, HYPERPARAMETERS = 30, 10, {"n_epochs": 2, "batch_size": 4}


def _data(split: str, n: int) -> list[dict]:
    from helpers.course_data import intent_chat, load_intents

    frame = load_intents(split).head(n)
    return [intent_chat(t, label) for t, label in zip(frame.text, frame.label)]


def _questions(n: int) -> list[list[dict]]:
    from helpers.course_data import intent_chat, load_intents

    return [intent_chat(t) for t in load_intents("test").text.head(n)]


# --- the direct side ------------------------------------------------------------------------------------
def direct_train() -> float:
    """One timed training run (in a fresh child process, as the server is one)."""
    from helpers import model as base
    from helpers import trainer
    from helpers.environment import get_mode, set_threads
    from helpers.server.rules import LOW_MEMORY, MAX_LENGTH, train_config

    mode = get_mode()
    set_threads(mode)
    base.load_base_model()  # warm: imports and the weights in the page cache, as in the warm server
    examples, valid = _data("train", N_TRAIN), _data("valid", N_VALID)
    _, config = train_config(HYPERPARAMETERS, len(examples), SEED, MAX_LENGTH[mode], low_memory=LOW_MEMORY[mode])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = trainer.train(examples, valid, config, folder)
        trainer.write_result_csv(result.metrics, Path(folder) / "step_metrics.csv")
        return time.perf_counter() - start


def run_direct_train(env: dict) -> float:
    out = subprocess.run([sys.executable, __file__, "--direct"], env=env, capture_output=True, text=True,
                         check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        sys.exit(f"direct training failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


# --- the API side ---------------------------------------------------------------------------------------
def api_job(client, file_ids: dict) -> tuple[float, float]:
    """The job's wall time seen by the client, and the seconds the server spent inside its training call."""
    start = time.perf_counter()
    job = client.fine_tuning.jobs.create(training_file=file_ids["train"], validation_file=file_ids["valid"],
                                         model="gpt-4o-mini-2024-07-18", seed=SEED, hyperparameters=HYPERPARAMETERS)
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    seconds = time.perf_counter() - start
    if job.status != "succeeded":
        sys.exit(f"the API job ended {job.status}: {job.error}")
    done = client.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
    return seconds, done.data["train_seconds"]


def chat_pairs(client, requests: int, mode: str) -> list[tuple[float, float]]:
    """``(API seconds, direct seconds)`` per question, the two alternating; the same greedy replies."""
    from helpers import model as base
    from helpers.environment import set_threads

    set_threads(mode)
    model, tokenizer = base.load_base_model()
    questions = _questions(requests + 1)
    pairs = []
    for i, conversation in enumerate(questions):
        start = time.perf_counter()
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=conversation, temperature=0,
                                               max_tokens=8).choices[0].message.content
        middle = time.perf_counter()
        same = base.generate(model, tokenizer, [conversation], max_new_tokens=8, batch_size=1)[0]
        end = time.perf_counter()
        assert reply == same, (reply, same)
        if i:  # the first pair warms both sides
            pairs.append((middle - start, end - middle))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="ci", choices=["ci", "cpu", "gpu"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.direct:
        import warnings

        warnings.filterwarnings("ignore")
        print("RESULT " + json.dumps(direct_train()))
        return

    import openai

    from helpers import api
    from helpers.formats import write_jsonl

    env = {**os.environ, "COURSE_MODE": args.mode, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        folder, port = Path(folder), api.free_port()
        with open(folder / "server.log", "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "helpers.server", "--port", str(port), "--workspace",
                                       str(folder / "workspace")], cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            while api._health(url) is None:
                if server.poll() is not None:
                    sys.exit((folder / "server.log").read_text())
                time.sleep(0.2)
            client = openai.OpenAI(base_url=url, api_key="unused", _strict_response_validation=True)
            ids = {}
            for name, rows in (("train", _data("train", N_TRAIN)), ("valid", _data("valid", N_VALID)),
                               ("warm", _data("train", 12))):
                path = write_jsonl(rows, folder / f"{name}.jsonl")
                ids[name] = client.files.create(file=(path.name, path.read_bytes()), purpose="fine-tune").id
            warm = client.fine_tuning.jobs.create(training_file=ids["warm"], model="gpt-4o-mini",
                                                  hyperparameters={"n_epochs": 1, "batch_size": 12})
            while client.fine_tuning.jobs.retrieve(warm.id).status not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.2)
            print(f"server warm (mode {args.mode}); {args.repeats} job pairs, then {args.requests} chat pairs",
                  flush=True)
            jobs = []  # (API wall, server's training call, direct)
            for repeat in range(args.repeats):
                wall, inside = api_job(client, ids)
                jobs.append((wall, inside, run_direct_train(env)))
                print(f"  job pair {repeat + 1}: API {wall:.1f} s (its training call {inside:.1f} s), "
                      f"direct {jobs[-1][2]:.1f} s", flush=True)
            chats = chat_pairs(client, args.requests, args.mode)
        finally:
            server.terminate()
            server.wait(60)

    rows = [("fine-tuning job (s)", [(a, d) for a, _, d in jobs], 1),
            ("chat completion (ms)", chats, 1000)]
    print(f"\n{N_TRAIN} examples x {HYPERPARAMETERS['n_epochs']} epochs, batch {HYPERPARAMETERS['batch_size']}; "
          f"chat replies of 8 tokens; medians, and the median of the paired ratios")
    print(f"{'':<22}{'API':>10}{'direct':>10}{'ratio':>8}")
    for name, pairs, scale in rows:
        ratio = statistics.median(a / d for a, d in pairs)
        print(f"{name:<22}{scale * statistics.median(a for a, _ in pairs):>10.2f}"
              f"{scale * statistics.median(d for _, d in pairs):>10.2f}{ratio:>7.2f}x  "
              f"(goal <= {GOAL:.2f}x: {'met' if ratio <= GOAL else 'NOT met'})")
    # The same job, split: the client's wall time against the server's own training call. This ratio is
    # free of the run-to-run noise of a shared machine, because both numbers come from the same run.
    own = statistics.median(a / i for a, i, _ in jobs)
    print(f"API wall time / the server's training call, same job: {own:.3f}x "
          f"(API overhead {100 * (own - 1):.1f}%: validation, queue, polling, result file)")


if __name__ == "__main__":
    main()
