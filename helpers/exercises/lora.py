"""Checks for notebook 04, LoRA on your machine: adapter parameter counts and ZeRO memory per GPU."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict


def check_lora_params(lora_params, measured: dict) -> bool:
    """``lora_params(r)`` must give the trainable parameters of a LoRA adapter of rank ``r``.

    ``measured`` maps ranks to the counts that peft reported (``trainer.count_parameters``).
    """
    if _not_done(lora_params):
        return False
    problems = []
    for r, expected in sorted(measured.items()):
        got = lora_params(r)
        if got is ... or got is None:
            problems.append(f"lora_params({r}) returned {got!r}: the function body is not written yet")
            break
        if got != expected:
            hint = ""
            if got and expected and got * 2 == expected:
                hint = " (half: each adapted layer has two matrices, A and B)"
            elif got and expected and expected % got == 0:
                hint = f" ({expected // got}x too few: count every adapted module in every layer)"
            problems.append(f"r={r}: you computed {got:,}, peft counts {expected:,}{hint}")
    if len(measured) > 1 and not problems:
        print("The count grows linearly with r: r * (d_in + d_out) per adapted module.")
    return _verdict(problems)


ZERO_CASES = [  # (parameters, GPUs, stage) -> GB per GPU, from the ZeRO paper (Rajbhandari et al., 2020)
    ((7.5e9, 64, 0), 120.0), ((7.5e9, 64, 1), 31.4), ((7.5e9, 64, 2), 16.6), ((7.5e9, 64, 3), 1.88),
    ((135e6, 2, 0), 2.16), ((135e6, 2, 3), 1.08),
]


def zero_memory_gb(n_params: float, n_gpus: int, stage: int) -> float:
    """The course's own answer, for cells that need the numbers whether or not the exercise was done: GB per
    GPU for weights, gradients and optimizer state under ZeRO ``stage`` (0 is plain data parallelism)."""
    weights, grads, optimizer = 2, 2 / (n_gpus if stage >= 2 else 1), 12 / (n_gpus if stage >= 1 else 1)
    return n_params * (weights / (n_gpus if stage >= 3 else 1) + grads + optimizer) / 1e9


def check_zero_memory(memory_gb) -> bool:
    """``memory_gb(n_params, n_gpus, stage)``: GB per GPU for mixed-precision Adam (16 bytes a parameter:
    2 for the bf16 weights, 2 for the gradients, 12 for the fp32 master copy and Adam's two moments)."""
    if _not_done(memory_gb):
        return False
    problems = []
    for (n, gpus, stage), expected in ZERO_CASES:
        got = memory_gb(n, gpus, stage)
        if got is ... or got is None:
            problems.append("memory_gb returned None: the function body is not written yet")
            break
        if abs(got - expected) > 0.02 * expected:
            problems.append(f"memory_gb({n:.3g}, {gpus}, stage={stage}) = {got!r}, expected about {expected:g} GB")
    if problems:
        problems.append("Hint: stage 1 divides the 12 optimizer bytes by the GPUs, stage 2 also the 2 gradient "
                        "bytes, stage 3 all 16.")
    return _verdict(problems)
