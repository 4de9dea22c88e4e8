"""One training script for one process or several: data parallelism (DDP) with Hugging Face Accelerate.

    python -m helpers.distributed --out outputs/ddp/one --steps 4
    accelerate launch --multi_gpu --num_processes 2 -m helpers.distributed --out outputs/ddp/two --steps 4

Accelerate calls every launch of several local processes ``--multi_gpu`` (it starts them with ``torchrun``);
without that flag and without a config file, ``accelerate launch`` on a machine with no GPU starts one
process. The script builds ``Accelerator(cpu=True)``, so the processes train on the CPU and add up their
gradients over the gloo backend. On GPUs, ``main(argv, cpu=False)`` lets Accelerate use them (NCCL);
``launch_command(..., deepspeed_config=...)`` starts it under DeepSpeed ZeRO (see ``helpers/deepspeed/``).

It trains the base model on the first ``--examples`` requests of the intent task with ``--method`` lora,
prompt_tuning or full, and writes ``OUT/run.json`` (the loss of every step, seconds, peak memory,
parameter counts) and ``OUT/final/`` (the adapter or the full weights; ``trainer.load_adapter`` reads it).
It reuses the trainer's encoding (loss on the reply tokens only), padding and loss. Full fine-tuning with
AdamW needs 16 bytes a parameter (weights, gradients, two moments: about 2.2 GB for SmolLM2-135M);
``--optimizer adafactor`` keeps only a few numbers per row and column of each matrix instead.

Why one process and two give the same result
--------------------------------------------
* Same global batch: every step takes the next ``--batch-size`` examples of one seeded order. Process k of
  n trains on examples k, k+n, k+2n, ... of that batch.
* Same loss: the trainer's loss is the sum over the batch's reply tokens divided by their number. Each
  process divides its own sum by the number of the whole global batch and multiplies by n, because DDP
  averages the n gradients: their average is then exactly the one-process gradient.
* Same start: the seed is set before the adapter is created, and DDP copies process 0's weights to all.
* No dropout (``--lora-dropout 0``): dropout draws its random masks differently in each layout.
What remains is rounding: sums taken in another order, about 1e-6 of the loss. Adam divides each gradient
by its running size, so where a gradient is near zero that rounding can move a weight by a few hundredths
of one step (the learning rate); a real mismatch, such as another batch, moves weights by whole steps.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import trainer
from helpers.course_data import intent_chat, load_intents
from helpers.model import load_tokenizer

METHODS = ("lora", "prompt_tuning", "full")
OPTIMIZERS = ("adamw", "adafactor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m helpers.distributed", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for run.json and final/")
    p.add_argument("--method", default="lora", choices=METHODS)
    p.add_argument("--examples", type=int, default=32, help="the first N requests of the intent train split")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="the GLOBAL batch, split across the processes")
    p.add_argument("--lr", type=float, default=None, help="default: trainer.SUGGESTED_LEARNING_RATE[method]")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj",
                   help="comma-separated module names (or name endings, e.g. layers.29.self_attn.q_proj)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS,
                   help="adamw: two fp32 moments per weight; adafactor: factored second moment, no momentum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster where supported, less exact)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: far less memory, about 40%% slower")
    p.add_argument("--gpu", action="store_true", help="train on the GPUs (default: the CPU, gloo)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.examples < 1:
        p.error("--batch-size, --steps and --examples must be >= 1")
    return args


def global_batches(n_examples: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of example indices: a seeded shuffle per pass over the data, cut into batches."""
    import torch

    batches, generator, order = [], torch.Generator().manual_seed(seed), []
    while len(batches) < steps:
        if len(order) < batch_size:
            order += torch.randperm(n_examples, generator=generator).tolist()
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's share of a global batch: items rank, rank + n, rank + 2n, ..."""
    return batch[rank::world_size]


def count_tokens(rows: list[dict]) -> int:
    """Labelled tokens the loss counts (position t predicts token t + 1, so the first label never counts)."""
    return sum(label != trainer.IGNORE for r in rows for label in r["labels"][1:])


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    On Linux it reads ``VmHWM``: ``ru_maxrss`` would also count the parent's memory, because a child
    started by ``fork`` + ``exec`` (a notebook starting this script) inherits the parent's high-water mark.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def build_model(args):
    """The base model wrapped for ``args.method`` (seeded first: a LoRA adapter starts random)."""
    from peft import get_peft_model

    from helpers import model as base
    from helpers.environment import set_seed

    set_seed(args.seed)
    model, _ = base.load_base_model("cpu" if args.cpu else None)
    if args.method != "full":
        config = trainer.TrainConfig(method=args.method, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                                     lora_dropout=args.lora_dropout,
                                     target_modules=tuple(args.target_modules.split(",")))
        model = get_peft_model(model, trainer._peft_config(config))
    if args.gradient_checkpointing:
        trainer.enable_gradient_checkpointing(model)
    return model.train()


def make_optimizer(name: str, params: list, lr: float):
    """AdamW (8 bytes of state per trained weight) or Adafactor (a few bytes per row and column of each matrix)."""
    import torch

    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=0.0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _loss_module():
    import torch

    class TokenLoss(torch.nn.Module):
        """Wraps the model so that DDP sees the trainer's loss as its forward (DDP syncs gradients there)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, labels, attention_mask):
            batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
            return trainer.token_loss(self.model, batch)[0]

    return TokenLoss


def run(args) -> dict:
    """Train as ``args`` says (in every process of a launch); process 0 saves and returns the summary."""
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=args.cpu)
    rank, world = accelerator.process_index, accelerator.num_processes
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {world} processes.")
    tokenizer = load_tokenizer()
    frame = load_intents("train").head(args.examples)
    rows = trainer._encode_all([intent_chat(t, l) for t, l in zip(frame.text, frame.label)], tokenizer,
                               args.max_length)
    model = build_model(args)
    trainable, total = trainer.count_parameters(model)
    lr = args.lr if args.lr is not None else trainer.SUGGESTED_LEARNING_RATE[args.method]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(args.optimizer, params, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / args.steps)  # linear to 0
    wrapped, optimizer = accelerator.prepare(_loss_module()(model), optimizer)

    losses, started = [], time.perf_counter()
    for batch_ids in global_batches(len(rows), args.batch_size, args.steps, args.seed):
        n_tokens = count_tokens([rows[i] for i in batch_ids])
        mine = [rows[i] for i in shard(batch_ids, rank, world)]
        batch = trainer.collate(mine, tokenizer.pad_token_id, accelerator.device)
        with torch.autocast("cpu" if args.cpu else accelerator.device.type, dtype=torch.bfloat16,
                            enabled=args.bf16):
            loss_sum = wrapped(**batch)
        accelerator.backward(loss_sum * world / n_tokens)  # DDP averages over the processes
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total_loss = accelerator.reduce(loss_sum.detach().reshape(1), reduction="sum")
        losses.append(float(total_loss) / n_tokens)
    seconds = time.perf_counter() - started
    device = accelerator.device
    peak = accelerator.gather(torch.tensor([peak_rss_mb()], device=device))
    gpu_peak = accelerator.gather(torch.tensor([torch.cuda.max_memory_allocated(device) / 2**20], device=device)) \
        if device.type == "cuda" else None

    summary = {"method": args.method, "world_size": world, "steps": args.steps, "batch_size": args.batch_size,
               "examples": len(rows), "learning_rate": lr, "optimizer": args.optimizer, "losses": losses,
               "seconds": round(seconds, 3), "peak_rss_mb": [round(float(x), 1) for x in peak],
               "peak_gpu_mb": None if gpu_peak is None else [round(float(x), 1) for x in gpu_peak],
               "trainable": trainable, "total": total,
               "backend": torch.distributed.get_backend() if world > 1 else None,
               "final_dir": str(Path(args.out) / "final")}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        accelerator.unwrap_model(wrapped).model.save_pretrained(out / "final")
        (out / "run.json").write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {**summary, "rank": rank}


def main(argv=None, cpu: bool | None = None) -> dict:
    """Parse ``argv`` and train, on the CPU unless ``--gpu`` or ``cpu=False`` lets Accelerate pick the GPUs."""
    args = parse_args(argv)
    args.cpu = (not args.gpu) if cpu is None else cpu
    return run(args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(out, num_processes: int = 2, extra: list[str] | None = None,
                   deepspeed_config=None) -> list[str]:
    """The ``accelerate launch`` command line that runs this script in ``num_processes`` processes.

    The flags that ``accelerate launch`` would otherwise take from ``accelerate config`` are spelled out,
    and the processes meet on a free local port, so two launches at once do not collide.
    ``deepspeed_config`` (a JSON file such as ``helpers/deepspeed/zero2.json``) launches under DeepSpeed
    instead, on the GPUs (``--gpu``): DeepSpeed needs CUDA and the ``deepspeed`` package.
    """
    if deepspeed_config:
        how, script_flags = ["--use_deepspeed", "--deepspeed_config_file", str(deepspeed_config)], ["--gpu"]
    else:
        how, script_flags = ["--multi_gpu", "--mixed_precision", "no"], []
    return [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", str(num_processes),
            "--num_machines", "1", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", "helpers.distributed", "--out", str(out), *script_flags, *(extra or [])]


def launch(out, num_processes: int = 1, extra: list[str] | None = None, threads: int | None = None,
           timeout: float | None = None) -> dict:
    """Run the script in new processes and return its ``run.json`` (plus ``wall_seconds``, start-up included).

    One process: ``python -m helpers.distributed``; more: :func:`launch_command`. Each process gets
    ``threads`` CPU threads (default: ``OMP_NUM_THREADS``, else the cores, shared out between the processes).
    Because every run is a process of its own, its ``peak_rss_mb`` is the memory of that run alone. glibc is
    told to return blocks of 128 KB and more to the system when they are freed (``MALLOC_MMAP_THRESHOLD_``):
    otherwise the activations freed after each step stay in the process, and the peak measures the
    allocator's leftovers (several hundred MB for full fine-tuning) rather than what the training needs.
    """
    from helpers.environment import REPO_ROOT

    if num_processes == 1:
        command = [sys.executable, "-m", "helpers.distributed", "--out", str(out), *(extra or [])]
    else:
        command = launch_command(out, num_processes, extra)
    threads = threads or max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1) // num_processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"The training script exited with code {done.returncode}. Its output ends:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return {**read_run(out), "wall_seconds": round(time.perf_counter() - started, 1)}


def peak_mb(run: dict) -> float:
    """A run's peak memory in MB: the GPU memory it allocated on a GPU, else its largest process's RSS."""
    return max(run.get("peak_gpu_mb") or run["peak_rss_mb"])


def read_run(out) -> dict:
    """The summary that a finished run wrote to ``OUT/run.json``."""
    return json.loads((Path(out) / "run.json").read_text())


def max_difference(path_a, path_b) -> float:
    """The largest absolute difference between the saved weights of two runs (same names, same shapes)."""
    from safetensors.torch import load_file

    def weights(path):
        path = Path(path)
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"No safetensors weights in {path}.")
        tensors = {}
        for f in files:
            tensors.update(load_file(f))
        return tensors

    a, b = weights(path_a), weights(path_b)
    if a.keys() != b.keys():
        raise ValueError(f"The runs saved different tensors: {sorted(a.keys() ^ b.keys())[:3]}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


if __name__ == "__main__":
    result = main()
    if result["rank"] == 0:
        print(json.dumps({k: result[k] for k in ("method", "world_size", "losses", "seconds")}))
