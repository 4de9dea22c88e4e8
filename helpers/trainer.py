"""Supervised fine-tuning of chat data on transformers + peft: LoRA, prompt tuning, P-tuning, full.

One function does the work::

    from helpers import trainer
    result = trainer.train(train_examples, valid_examples, trainer.TrainConfig(n_epochs=2), "outputs/run1")
    result.metrics            # one row per optimizer step: the OpenAI result-file columns
    model, tokenizer = trainer.load_adapter(result.final_dir)

What it trains on
-----------------
Chat examples ``{"messages": [...]}`` (the OpenAI format) or legacy ``{"prompt", "completion"}`` records.
The loss counts **only the assistant's reply tokens** (and the ``<|im_end|>`` that ends each reply, so the
model learns to stop). An assistant message with ``"weight": 0`` is shown to the model but not trained on.
A legacy record is plain text ``prompt + completion + eos`` with the loss on the completion only.

What makes it fast (each trick is a few lines below)
----------------------------------------------------
* **Dynamic padding and grouping by length**: examples are shuffled, then sorted by length inside
  "mega-batches" of 50 batches, so each batch holds similar lengths and is padded only to its own longest.
* **The vocabulary projection only where there is a label**: the last layer (576 -> 49,152 logits) is
  about a fifth of the model's work per token; we run it only on the assistant tokens the loss needs.
* **bf16 autocast** on a GPU that supports it: detected, not assumed. On a CPU only when asked
  (``bf16="on"``): on a Xeon with AMX, autocast made a LoRA epoch of SmolLM2-135M slower (39 s against 34 s)
  and raised its peak memory by about 460 MB, because the frozen weights are cast to bf16 on every step.
  ``TrainConfig(bf16="off")`` keeps everything in fp32.
* **Frozen weights stored in bf16** (``bf16_base=True``, on hardware with native bf16): the base weights are
  cast once, in place, and the adapters and optimizer stay in fp32. Unlike autocast, nothing is cast per
  step. On notebook 04's task (whole batches of 8, no dropout, 2 threads of a Xeon with AMX) training took
  58 and 66 s in two runs against 90 s in fp32, peaked at 1.87 GB against 2.54 GB, and reached 97.3% test
  accuracy against 96.7%. Off by default: the model passed in comes back in bf16. Notebooks 04 and 05 turn
  it on where bf16 is native; ``load_adapter(path, bf16_base=True)`` puts a saved adapter back on such a base.
* **Gradient accumulation**: ``grad_accum`` batches per optimizer step, the loss averaged over all
  their tokens exactly as one big batch would.

Memory: the activations kept for the backward pass dominate. Three settings trade them against time; measured
on notebook 04's run (SmolLM2-135M, LoRA r 8 on all seven projections, batches of 8 intent requests of about
60 tokens, 2 CPU threads, glibc), where the model alone takes about 1.0 GB:

* ``micro_batch_size``: each batch runs as pieces of this many examples, their gradients added up: the very
  same gradient, with the activations of only one piece alive at a time. Pieces of 2 peaked at 1.45 GB
  against 1.85 GB for pieces of 4, for 8% more time (111 s against 103 s).
* ``lora_dropout=0.0``: dropout makes a masked copy of every adapted layer's input, and the backward pass
  keeps it. With 0.05, a step of 4 requests took 27% longer and 180 MB more.
* ``gradient_checkpointing=True`` keeps only each layer's input and recomputes the rest in the backward
  pass: the least memory, for 27% (batches of 8) to 52% (batches of 4) more time.

While it runs it evaluates on one small validation batch every ``eval_every`` steps and on the whole
validation set at the end of each epoch, reports through ``on_event``, and shows a progress bar (silent
in CI). At the end of each epoch it saves a checkpoint that holds the adapter plus the optimizer, scheduler,
RNG states and data order, so ``train(..., resume_from=checkpoint)`` continues the very same loss curve.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers import model as base
from helpers.environment import is_ci, outputs_dir, release_memory, set_seed

METHODS = ("lora", "prompt_tuning", "p_tuning", "full", "qlora")
# Learning rates that work for each method on small models (prompt tuning needs a far larger one).
SUGGESTED_LEARNING_RATE = {"lora": 2e-4, "qlora": 2e-4, "prompt_tuning": 3e-2, "p_tuning": 3e-3, "full": 2e-5}
RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
EXTRA_COLUMNS = ["epoch", "full_valid_loss", "full_valid_mean_token_accuracy"]
IGNORE = -100          # the label of a token that the loss skips
MEGA_BATCH = 50        # batches per length-sorted group
STATE_FILE = "trainer_state.pt"
PROMPT_INIT_TEXT = "Answer the request in the style of the examples."


@dataclass
class TrainConfig:
    """Every setting of a training run. ``learning_rate``: see :data:`SUGGESTED_LEARNING_RATE`."""

    method: str = "lora"            # "lora" | "prompt_tuning" | "p_tuning" | "full" | "qlora" (CUDA only)
    n_epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 2e-4     # the API server passes base_lr * learning_rate_multiplier
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple = ("q_proj", "k_proj", "v_proj", "o_proj")
    num_virtual_tokens: int = 16    # prompt tuning and P-tuning
    max_length: int = 256           # longer examples are cut at the end
    grad_accum: int = 1             # batches per optimizer step
    micro_batch_size: int = 0       # >0: run each batch in pieces of this many examples (same gradient, less memory)
    eval_every: int = 10            # steps between small-batch validation metrics
    warmup_ratio: float = 0.0       # then the learning rate decays linearly to 0
    seed: int = 0
    bf16: str = "auto"              # "auto": bf16 autocast on a GPU that supports it; "on"; "off"
    keep_checkpoints: int = 3       # keep the last N epoch checkpoints
    gradient_checkpointing: bool = False  # recompute activations in the backward: far less memory, ~40% slower
    bf16_base: bool = False         # keep the frozen base weights in bf16 (not "full"/"qlora"): see the docstring

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: use one of {', '.join(METHODS)}.")
        if self.bf16 not in ("auto", "on", "off"):
            raise ValueError(f"bf16={self.bf16!r}: use 'auto', 'on' or 'off'.")
        if min(self.n_epochs, self.batch_size, self.grad_accum, self.eval_every, self.max_length) < 1:
            raise ValueError("n_epochs, batch_size, grad_accum, eval_every and max_length must be >= 1.")
        if self.bf16_base and self.method in ("full", "qlora"):
            raise ValueError(f"bf16_base=True is for methods whose base weights stay frozen (lora, prompt_tuning, "
                             f"p_tuning), not {self.method!r}.")
        if self.micro_batch_size < 0:
            raise ValueError("micro_batch_size must be >= 0 (0: each batch in one piece).")
        self.target_modules = tuple(self.target_modules)


@dataclass
class TrainResult:
    """What :func:`train` returns. ``status``: "succeeded", "paused" or "cancelled"."""

    status: str
    metrics: pd.DataFrame                      # one row per step; RESULT_COLUMNS + EXTRA_COLUMNS
    final_dir: str | None                      # the trained adapter (or full weights); None unless succeeded
    checkpoints: list = field(default_factory=list)   # [(step, path)] of the kept epoch checkpoints
    trained_tokens: int = 0                    # non-pad tokens the model was trained on (all epochs)
    seconds: float = 0.0
    config: TrainConfig | None = None
    resume_from: str | None = None             # when paused: pass this back as train(..., resume_from=...)
    model: Any = field(default=None, repr=False)   # the trained model, in eval mode


# ---------------------------------------------------------------- hardware
def bf16_supported(device=None) -> tuple[bool, str]:
    """``(ok, reason)``: can this device run bf16 matrix products natively?"""
    import torch

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"GPU {torch.cuda.get_device_name(device)} " + ("supports bf16" if ok else "has no bf16")
    ok = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return ok, "CPU " + ("supports bf16 (AVX512-BF16 or AMX)" if ok else "has no native bf16 (no AVX512-BF16/AMX)")


def _require_native_bf16(device) -> None:
    """Refuse ``bf16_base=True`` where ``device`` has no native bf16, saying why."""
    ok, why = bf16_supported(device)
    if not ok:
        raise ValueError(f"bf16_base=True needs native bf16 matrix products: {why}. Use bf16_base=False.")


def use_bf16(setting: str, device) -> bool:
    """Resolve ``TrainConfig.bf16`` ("auto", "on", "off") for ``device``: "auto" means a GPU with bf16
    (on a CPU it measured slower and hungrier for memory; see the module docstring)."""
    import torch

    on_gpu = torch.device(device).type == "cuda"
    return setting == "on" or (setting == "auto" and on_gpu and bf16_supported(device)[0])


def qlora_available() -> tuple[bool, str]:
    """``(ok, reason)``: QLoRA needs a CUDA GPU and the bitsandbytes package."""
    from helpers.environment import cuda_available

    if not cuda_available():
        return False, "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); this machine has none."
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False, "QLoRA needs the bitsandbytes package: pip install bitsandbytes."
    return True, "CUDA and bitsandbytes are present."


# ---------------------------------------------------------------- data: token ids and the label mask
def _reply_spans(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text and the character spans of the replies to train on.

    The chat template is rendered prefix by prefix: the conversation up to an assistant message (with the
    generation prompt ``<|im_start|>assistant\\n``), then including it. The difference is the reply plus the
    template's end-of-turn marker; trailing whitespace after the marker is not trained on.
    """
    def render(msgs, prompt=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)

    text, spans = render(messages), []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        before, through = render(messages[:i], prompt=True), render(messages[: i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise ValueError("The chat template does not render conversations prefix by prefix, so the reply "
                             "tokens cannot be found. Fix: use a template without history rewriting.")
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def encode_example(example: dict, tokenizer, max_length: int | None = None) -> dict:
    """``{"input_ids", "labels"}`` for one example; labels are ``-100`` except on trained reply tokens.

    A token is trained on when its characters overlap a reply span (found with the tokenizer's offsets).
    """
    if "messages" in example:
        text, spans = _reply_spans(example["messages"], tokenizer)
    elif "prompt" in example and "completion" in example:
        text = example["prompt"] + example["completion"] + tokenizer.eos_token
        spans = [(len(example["prompt"]), len(text))]
    else:
        raise ValueError(f"An example needs 'messages' or 'prompt' and 'completion'; got keys {sorted(example)}.")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [tok if any(start < e and end > s for s, e in spans) else IGNORE
              for tok, (start, end) in zip(ids, encoded["offset_mapping"])]
    if max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def _encode_all(examples, tokenizer, max_length) -> list[dict]:
    """Encode every example; drop those with nothing left to train on (e.g. a reply cut by max_length)."""
    if examples is None:
        return []
    if isinstance(examples, (str, Path)):
        from helpers.formats import read_jsonl

        examples = read_jsonl(examples)
    encoded = [encode_example(e, tokenizer, max_length) for e in examples]
    return [e for e in encoded if any(label != IGNORE for label in e["labels"][1:])]


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of example indices: shuffled, sorted by length within mega-batches, batch order shuffled."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches, size = [], batch_size * MEGA_BATCH
    for start in range(0, len(order), size):
        group = sorted(order[start:start + size], key=lambda i: -lengths[i])
        batches += [group[j:j + batch_size] for j in range(0, len(group), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _pieces(batch: list[int], size: int) -> list[list[int]]:
    """A batch split into micro-batches of at most ``size`` examples (``size`` 0: the whole batch)."""
    return [batch[i:i + size] for i in range(0, len(batch), size)] if size else [batch]


def collate(rows: list[dict], pad_id: int, device=None) -> dict:
    """Pad a batch on the right to its longest row (dynamic padding)."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


# ---------------------------------------------------------------- model
def _peft_config(config: TrainConfig):
    import peft

    if config.method in ("lora", "qlora"):
        return peft.LoraConfig(task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
                               lora_dropout=config.lora_dropout, target_modules=list(config.target_modules))
    if config.method == "prompt_tuning":  # virtual tokens start as the embeddings of a sentence
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens,
                                       prompt_tuning_init=peft.PromptTuningInit.TEXT,
                                       prompt_tuning_init_text=PROMPT_INIT_TEXT,
                                       tokenizer_name_or_path=base.model_source())
    return peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens,
                                    encoder_hidden_size=128)  # P-tuning: a small MLP writes the virtual tokens


def _load_qlora_base():
    """The base model in 4-bit NF4 with bf16 compute, ready for k-bit training (CUDA only)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    ok, reason = qlora_available()
    if not ok:
        raise RuntimeError(reason)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(base.model_source(), quantization_config=quant, device_map={"": 0})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def _prepare_model(config: TrainConfig, model, resume_from):
    """The model to train: a fresh base wrapped for ``config.method`` (or restored from a checkpoint)."""
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    if config.method == "full":
        if resume_from:
            device = model.device if model is not None else None
            model = AutoModelForCausalLM.from_pretrained(resume_from, dtype=torch.float32)
            model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        elif model is None:
            model, _ = base.load_base_model()
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if isinstance(model, PeftModel):
        return model
    if model is None:
        model = _load_qlora_base() if config.method == "qlora" else base.load_base_model()[0]
    if resume_from:
        return PeftModel.from_pretrained(model, resume_from, is_trainable=True)
    return get_peft_model(model, _peft_config(config))


def frozen_to_bf16(model) -> None:
    """Store every frozen fp32 weight of ``model`` in bf16, in place (the trainable ones stay fp32)."""
    import torch

    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)


def enable_gradient_checkpointing(model) -> bool:
    """Keep only each layer's input for the backward pass and recompute the rest: far less memory, ~40% slower.

    Returns the model's ``use_cache`` setting from before, for :func:`disable_gradient_checkpointing`."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    use_cache, inner.config.use_cache = inner.config.use_cache, False
    inner.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return use_cache


def disable_gradient_checkpointing(model, use_cache: bool = True) -> None:
    """Undo :func:`enable_gradient_checkpointing`, so that generation uses its key-value cache again (a base
    model shared with inference, as in notebook 06 or the course server, must not stay without it)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.activation_checkpointing_disable()
    inner.config.use_cache = use_cache


def _is_prompt_learning(model) -> bool:
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def token_loss(model, batch: dict) -> tuple:
    """``(loss_sum, n_correct, n_tokens)`` over the labelled tokens of ``batch``.

    Equivalent to the usual ``model(**batch, labels=...)`` loss (times the token count), but the
    vocabulary projection runs only on the positions that have a label.
    """
    import torch
    import torch.nn.functional as F

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if _is_prompt_learning(model):  # prepend the trained virtual tokens, as peft's own forward does
        n = model.active_peft_config.num_virtual_tokens
        embeds = model.word_embeddings(ids)
        prompts = model.get_prompt(batch_size=ids.shape[0]).to(embeds.dtype)
        mask = torch.cat([torch.ones(ids.shape[0], n, dtype=mask.dtype, device=mask.device), mask], dim=1)
        hidden = decoder(inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask,
                         use_cache=False)[0][:, n:]
    else:
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False)[0]  # no key-value cache to build
    targets = batch["labels"][:, 1:]          # position t predicts token t + 1
    keep = targets != IGNORE
    logits = head(hidden[:, :-1][keep]).float()
    targets = targets[keep]
    loss_sum = F.cross_entropy(logits, targets, reduction="sum")
    return loss_sum, (logits.argmax(-1) == targets).sum().item(), int(keep.sum())


def accumulate_gradients(model, micro_batches: list[list[dict]], pad_id: int, device, bf16: bool = False) -> tuple:
    """Forward and backward over the micro-batches of one optimizer step, adding up their gradients.

    Each micro-batch's loss is divided by the token count of the whole step, so the summed gradient is that
    of one big batch, however the step was split. Returns ``(loss_sum, n_correct, n_labelled, n_tokens)``:
    the summed loss and correct predictions over the ``n_labelled`` labelled tokens, and the non-pad tokens.
    """
    n_labelled = sum(label != IGNORE for rows in micro_batches for r in rows for label in r["labels"][1:])
    loss_total = correct_total = seen = 0
    for rows in micro_batches:
        batch = collate(rows, pad_id, device)
        with _autocast(bf16, device):
            loss_sum, correct, _ = token_loss(model, batch)
        (loss_sum / n_labelled).backward()
        loss_total, correct_total = loss_total + loss_sum.item(), correct_total + correct
        seen += int(batch["attention_mask"].sum())
    return loss_total, correct_total, n_labelled, seen


def _autocast(enabled: bool, device):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def evaluate(model, rows: list[dict], batch_size: int, pad_id: int, bf16: bool = False) -> tuple[float, float]:
    """``(mean loss, mean token accuracy)`` over the labelled tokens of ``rows`` (no gradients)."""
    import torch

    if not rows:
        return float("nan"), float("nan")
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    loss = correct = count = 0
    with torch.no_grad(), _autocast(bf16, device):
        for start in range(0, len(order), batch_size):
            batch = collate([rows[i] for i in order[start:start + batch_size]], pad_id, device)
            l, c, n = token_loss(model, batch)
            loss, correct, count = loss + l.item(), correct + c, count + n
    model.train(was_training)
    return loss / max(count, 1), correct / max(count, 1)


# ---------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_dir(model, path: Path, state: dict | None = None) -> str:
    """Save the adapter (or the full weights) and the trainer state, atomically: a temp folder, renamed."""
    import torch

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return str(path)


def load_adapter(path, device=None, bf16_base: bool = False):
    """``(model, tokenizer)``: a fresh base model with the adapter (or full weights) from ``path``, in eval mode.

    ``bf16_base=True`` stores the base weights in bf16 and keeps the adapter in fp32, as
    ``TrainConfig(bf16_base=True)`` trained it: the very logits of the trained model, in half the memory
    (refused without native bf16, and for full fine-tuning's weights). Labelling the 150 intent test
    requests took 12.2 s and 0.07 GiB of working memory this way, against 13.0 s and 0.40 GiB with fp32
    weights and bf16 autocast (``benchmarks/generation_speed.py``, 2 threads of a Xeon with AMX). Merge onto
    an fp32 base, not this one: bf16 cannot hold a small update on top of a large weight.
    Memory freed before the call is handed back to the system first (:func:`release_memory`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    release_memory()
    path = Path(path)
    if (path / "adapter_config.json").exists():
        if bf16_base:
            _require_native_bf16(device)
        model, tokenizer = base.load_base_model(device)
        if bf16_base:
            model.requires_grad_(False)
            frozen_to_bf16(model)   # the trainer's cast; peft then loads the adapter in fp32 on top
        return PeftModel.from_pretrained(model, path).eval(), tokenizer
    if (path / "config.json").exists():  # full fine-tuning saved every weight
        if bf16_base:
            raise ValueError(f"{path} holds a fully fine-tuned model: all its weights were trained, so none is "
                             "a frozen base to store in bf16. Use bf16_base=False.")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return model, base.load_tokenizer()
    raise FileNotFoundError(f"{path} holds neither an adapter nor a model. Fix: pass a checkpoint or final folder.")


def merge(model):
    """Fold LoRA's low-rank updates into the base weights: a plain transformers model, no peft needed."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    if _is_prompt_learning(model):
        raise ValueError("Prompt tuning has nothing to merge: its virtual tokens are an input, not a weight change.")
    return model.merge_and_unload()


def count_parameters(model) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    if hasattr(model, "get_nb_trainable_parameters"):  # peft: counts 4-bit weights correctly
        return tuple(int(n) for n in model.get_nb_trainable_parameters())
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def skeleton(config: TrainConfig | None = None):
    """The base model wrapped for ``config.method``, built on PyTorch's "meta" device: every module and
    shape, no weights. Counting its parameters (:func:`count_parameters`) costs no memory, for any rank."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = config or TrainConfig()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base.model_source()))
    if config.method == "full":
        return model
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, _peft_config(config))


def write_result_csv(metrics: pd.DataFrame, path, extra_columns: bool = False) -> Path:
    """Write the OpenAI result file: ``step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy``.

    Steps without validation leave the valid cells empty. ``extra_columns`` adds epoch and full_valid_*.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = RESULT_COLUMNS + (EXTRA_COLUMNS if extra_columns else [])
    frame = metrics.reindex(columns=columns)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False, float_format="%.5f")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- the training loop
def _linear_schedule(optimizer, warmup: int, total: int):
    """Warm up linearly for ``warmup`` steps, then decay linearly to 0 at ``total``."""
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return LambdaLR(optimizer, factor)


def train(train_examples, valid_examples=None, config: TrainConfig | None = None, output_dir=None, *,
          on_event: Callable[[dict], None] | None = None, should_stop: Callable[[], str | None] | None = None,
          resume_from=None, model=None, tokenizer=None) -> TrainResult:
    """Fine-tune the base model on chat (or prompt/completion) examples; see the module docstring.

    - ``train_examples``/``valid_examples``: lists of examples or paths to JSONL files.
    - ``output_dir``: receives ``checkpoint-step-N/`` each epoch, ``final/`` at the end and
      ``paused-step-N/`` on pause. Default: ``outputs/trainer``.
    - ``on_event(dict)``: ``metrics`` each step, ``epoch_end`` and ``checkpoint`` each epoch.
    - ``should_stop()``: checked before each optimizer step; ``"pause"`` saves a resumable checkpoint and
      returns status "paused" (``result.resume_from``); ``"cancel"`` returns status "cancelled".
    - ``resume_from``: a checkpoint folder; training continues exactly where it stopped.
    - ``model``: train this model instead of a fresh base model (it is changed in place).
    """
    import torch
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    release_memory()
    started = time.perf_counter()
    output_dir = Path(output_dir or outputs_dir() / "trainer")
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or base.load_tokenizer()
    pad_id = tokenizer.pad_token_id
    state = torch.load(Path(resume_from) / STATE_FILE, weights_only=False) if resume_from else None
    if state and state["method"] != config.method:
        raise ValueError(f"The checkpoint was trained with {state['method']!r}, not {config.method!r}.")
    if state is None:
        set_seed(config.seed)  # before the adapter is created: its initial weights are random
    if config.bf16_base:  # before the model is changed
        _require_native_bf16(next(model.parameters()).device if model is not None else None)
    with warnings.catch_warnings():  # peft calls a transformers method that transformers calls deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        model = _prepare_model(config, model, resume_from)
    if config.bf16_base:
        frozen_to_bf16(model)
    use_cache = enable_gradient_checkpointing(model) if config.gradient_checkpointing else None
    device = next(model.parameters()).device
    bf16 = use_bf16(config.bf16, device)

    train_rows = _encode_all(train_examples, tokenizer, config.max_length)
    valid_rows = _encode_all(valid_examples, tokenizer, config.max_length)
    if not train_rows:
        raise ValueError("No training example has an assistant reply to train on.")
    lengths = [len(r["input_ids"]) for r in train_rows]
    n_batches = math.ceil(len(train_rows) / config.batch_size)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = steps_per_epoch * config.n_epochs

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scheduler = _linear_schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    # Everything a resumed run needs to continue the same curve lives in `progress`.
    progress = {"step": 0, "epoch": 0, "step_in_epoch": 0, "batches": None, "history": [], "checkpoints": [],
                "trained_tokens": 0, "evals": 0, "seconds": 0.0}
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        progress.update(state["progress"])

    def emit(event):
        if on_event is not None:
            on_event(event)

    def snapshot():
        return {"method": config.method, "config": asdict(config), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                "progress": {**progress, "seconds": progress["seconds"] + time.perf_counter() - started}}

    def result(status, final_dir=None, resume=None):
        frame = pd.DataFrame(progress["history"], columns=RESULT_COLUMNS + EXTRA_COLUMNS, dtype=float)
        frame[["step", "epoch"]] = frame[["step", "epoch"]].astype(int)
        kept = [(s, p) for s, p in progress["checkpoints"] if Path(p).exists()]
        model.eval()
        return TrainResult(status, frame, final_dir, kept, progress["trained_tokens"],
                           progress["seconds"] + time.perf_counter() - started, config, resume, model)

    bar = tqdm(total=total_steps, initial=progress["step"], disable=is_ci(), desc=f"{config.method} training")
    model.train()
    try:
        for epoch in range(progress["epoch"], config.n_epochs):
            if progress["batches"] is None or progress["epoch"] != epoch:  # a new epoch: a new data order
                progress.update(epoch=epoch, step_in_epoch=0, batches=length_grouped_batches(
                    lengths, config.batch_size, seed=config.seed * 100_003 + epoch))
            batches = progress["batches"]
            for k in range(progress["step_in_epoch"], steps_per_epoch):
                decision = should_stop() if should_stop else None
                if decision == "cancel":
                    return result("cancelled")
                if decision == "pause":
                    path = _save_dir(model, output_dir / f"paused-step-{progress['step']}", snapshot())
                    return result("paused", resume=path)
                micro = [[train_rows[i] for i in piece]
                         for b in batches[k * config.grad_accum:(k + 1) * config.grad_accum]
                         for piece in _pieces(b, config.micro_batch_size)]
                loss_total, correct_total, n_tokens, seen = accumulate_gradients(model, micro, pad_id, device, bf16)
                progress["trained_tokens"] += seen
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress["step"] += 1
                progress["step_in_epoch"] = k + 1
                step = progress["step"]
                row = dict.fromkeys(RESULT_COLUMNS + EXTRA_COLUMNS)
                row.update(step=step, epoch=epoch + 1, train_loss=loss_total / n_tokens,
                           train_accuracy=correct_total / n_tokens)
                if valid_rows and (step % config.eval_every == 0 or step == total_steps):
                    start = progress["evals"] * config.batch_size  # a different small batch each time
                    small = [valid_rows[(start + j) % len(valid_rows)]
                             for j in range(min(config.batch_size, len(valid_rows)))]
                    row["valid_loss"], row["valid_mean_token_accuracy"] = evaluate(
                        model, small, config.batch_size, pad_id, bf16)
                    progress["evals"] += 1
                progress["history"].append(row)
                emit({"type": "metrics", "step": step, "total_steps": total_steps, "epoch": epoch + 1,
                      "train_loss": row["train_loss"], "train_mean_token_accuracy": row["train_accuracy"],
                      "valid_loss": row["valid_loss"], "valid_mean_token_accuracy": row["valid_mean_token_accuracy"]})
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}")

            # End of the epoch: the whole validation set, then a checkpoint that resumes at the next epoch.
            full = evaluate(model, valid_rows, config.batch_size * 2, pad_id, bf16) if valid_rows else (None, None)
            row = progress["history"][-1]
            row["full_valid_loss"], row["full_valid_mean_token_accuracy"] = full
            emit({"type": "epoch_end", "epoch": epoch + 1, "step": progress["step"],
                  "full_valid_loss": full[0], "full_valid_mean_token_accuracy": full[1]})
            progress.update(epoch=epoch + 1, step_in_epoch=0, batches=None)
            release_memory()
            if config.keep_checkpoints > 0:
                step = progress["step"]
                progress["checkpoints"].append((step, str(output_dir / f"checkpoint-step-{step}")))
                while len(progress["checkpoints"]) > config.keep_checkpoints:
                    shutil.rmtree(progress["checkpoints"].pop(0)[1], ignore_errors=True)
                path = _save_dir(model, Path(progress["checkpoints"][-1][1]), snapshot())
                emit({"type": "checkpoint", "step": step, "epoch": epoch + 1, "path": path})
    finally:
        bar.close()
        if use_cache is not None:
            disable_gradient_checkpointing(model, use_cache)

    final_dir = _save_dir(model, output_dir / "final")
    for stale in output_dir.glob("paused-step-*"):  # pause checkpoints are spent once the run finishes
        shutil.rmtree(stale, ignore_errors=True)
    return result("succeeded", final_dir=final_dir)
