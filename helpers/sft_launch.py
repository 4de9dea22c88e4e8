"""The course's training path (:mod:`helpers.sft`) as a script: one fresh process, or several with DDP.

    python -m helpers.sft_launch --out outputs/run --peft outputs/run/peft --examples 32 --steps 6
    accelerate launch --multi_gpu --num_processes 2 -m helpers.sft_launch --out ... (the very same script)

It trains the base model on the first ``--examples`` intent requests for ``--steps`` optimizer steps of
``--batch-size`` requests (the global batch: each of N processes takes 1/N of it), with the adapter whose
peft config was saved in ``--peft`` (``peft_config.save_pretrained(folder)``; without it every weight
trains). It writes ``OUT/run.json`` (the loss of every step, seconds, peak memory of each process,
parameter counts) and ``OUT/final/``. A run in its own process has a peak memory of its own, which is how
notebook 04 compares methods. Under ``accelerate launch`` the transformers ``Trainer`` inside ``SFTTrainer``
finds the processes itself: over gloo on CPUs, NCCL on GPUs, or DeepSpeed ZeRO with
``launch_command(..., deepspeed_config=...)``. Two processes compute what one does: the same seeded order,
each process taking every other micro-batch, and a loss divided by the tokens of the whole global batch.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m helpers.sft_launch", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for run.json and final/")
    p.add_argument("--peft", default=None, help="a folder with a saved peft config (none: full fine-tuning)")
    p.add_argument("--examples", type=int, default=32, help="the first N requests of the intent train split")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="the GLOBAL batch, split across the processes")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--optimizer", default="adamw_torch", help="an optim name of transformers, e.g. adafactor")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations: less memory")
    p.add_argument("--bf16-base", action="store_true", help="load the base model in bf16 (native bf16 only)")
    p.add_argument("--gpu", action="store_true", help="train on the GPUs (default: the CPU)")
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ``ru_maxrss`` would count a forking parent's too)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> dict:
    import torch
    from accelerate import PartialState
    from peft import PeftConfig

    from helpers import model as base
    from helpers import sft
    from helpers.course_data import intent_chat, load_intents

    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {world} processes.")
    frame = load_intents("train").head(args.examples)
    examples = [intent_chat(t, label) for t, label in zip(frame.text, frame.label)]
    model, tokenizer = base.load_base_model("cuda" if args.gpu else "cpu",
                                            dtype=torch.bfloat16 if args.bf16_base else None)
    peft_config = PeftConfig.from_pretrained(args.peft) if args.peft else None
    config = sft.course_config(args.out, max_steps=args.steps, per_device_train_batch_size=args.batch_size // world,
                               learning_rate=args.lr, optim=args.optimizer, save_strategy="no", use_cpu=not args.gpu,
                               gradient_checkpointing=args.gradient_checkpointing, disable_tqdm=True,
                               train_sampling_strategy="random")
    result = sft.train(model, tokenizer, examples, None, config, peft_config)
    trainable, total = result.model.get_nb_trainable_parameters() if peft_config else \
        (sum(p.numel() for p in result.model.parameters()),) * 2
    state = PartialState()
    peaks = [peak_rss_mb()]
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, peaks[0])
        peaks = gathered
    summary = {"method": type(peft_config).__name__ if peft_config else "full", "world_size": world,
               "backend": state.backend if world > 1 else None, "losses": result.metrics.train_loss.tolist(),
               "seconds": round(result.seconds, 2), "peak_rss_mb": [round(p, 1) for p in peaks],
               "trainable": int(trainable), "total": int(total), "final_dir": result.final_dir}
    if state.is_main_process:
        (Path(args.out) / "run.json").write_text(json.dumps(summary, indent=1))
    return summary


def launch_command(out, num_processes: int = 2, extra: list[str] | None = None, deepspeed_config=None) -> list[str]:
    """The ``accelerate launch`` command that runs this script in ``num_processes`` processes, its flags spelled
    out (no ``accelerate config`` needed) and on a free local port. ``deepspeed_config`` (for example
    ``helpers/deepspeed/zero2.json``) launches under DeepSpeed ZeRO on the GPUs instead."""
    how = ["--use_deepspeed", "--deepspeed_config_file", str(deepspeed_config)] if deepspeed_config else \
        ["--multi_gpu", "--mixed_precision", "no"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", str(num_processes),
            "--num_machines", "1", "--dynamo_backend", "no", "--main_process_port", str(port),
            "-m", "helpers.sft_launch", "--out", str(out), *(["--gpu"] if deepspeed_config else []), *(extra or [])]


def launch(out, num_processes: int = 1, extra: list[str] | None = None, threads: int | None = None,
           peft_config=None) -> dict:
    """Run the script in new processes and return its ``run.json``. ``peft_config`` is saved to ``OUT/peft``
    and passed on. Each process gets ``threads`` CPU threads (default: the cores shared out). Freed blocks of
    128 KB and more go back to the system (``MALLOC_MMAP_THRESHOLD_``), so a peak measures what the training
    holds rather than what glibc kept from an earlier step."""
    from helpers.environment import REPO_ROOT

    out = Path(out)
    extra = list(extra or [])
    if peft_config is not None:
        peft_config.save_pretrained(out / "peft")
        extra += ["--peft", str(out / "peft")]
    command = [sys.executable, "-m", "helpers.sft_launch", "--out", str(out), *extra] if num_processes == 1 \
        else launch_command(out, num_processes, extra)
    threads = threads or max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1) // num_processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"The training script exited with code {done.returncode}. Its output ends:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return {**json.loads((out / "run.json").read_text()), "wall_seconds": round(time.perf_counter() - started, 1)}


def max_difference(path_a, path_b) -> float:
    """The largest absolute difference between the weights two runs saved (same names and shapes)."""
    from safetensors.torch import load_file

    a, b = (load_file(next(Path(p).glob("*.safetensors"))) for p in (path_a, path_b))
    if a.keys() != b.keys():
        raise ValueError(f"The runs saved different tensors: {sorted(a.keys() ^ b.keys())[:3]}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


if __name__ == "__main__":
    main()
