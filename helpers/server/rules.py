"""What the course server accepts, and how it decides: model names, hyperparameters, data checks.

Model names: the OpenAI base names in :data:`BASE_MODELS` and ``SmolLM2-135M-Instruct`` all mean the local
base model. ``babbage-002`` and ``davinci-002`` are completions models (prompt/completion data, the
``/v1/completions`` endpoint); the others are chat models, as on OpenAI.

``"auto"`` hyperparameters, resolved when training starts and then shown in the job object:

* ``n_epochs``: :func:`helpers.tokens.default_epochs` (OpenAI's rule: 3 epochs, but 100 to 25,000
  example-passes in all).
* ``batch_size``: OpenAI's rule, about 0.2% of the examples, at least 1 and at most 256; here also at most
  :data:`LOCAL_MAX_AUTO_BATCH` (8), because on a CPU larger batches only make each step slower.
* ``learning_rate_multiplier``: :data:`AUTO_LR_MULTIPLIER` (0.1). The local learning rate is
  :data:`BASE_LR` x multiplier, so the default is 2e-3, with which LoRA (r=8) on SmolLM2-135M learns the
  intent task from 30 examples in 3 epochs (test accuracy 0.03 -> 0.95 on 40 requests). Multipliers
  above about 2 make it diverge.

Data checks run :mod:`helpers.validate`; a problem fails the job (not the request) with OpenAI's codes:
``invalid_n_examples`` under 10 examples, ``invalid_file_format`` for anything else that blocks training.
"""
from __future__ import annotations

import math
from pathlib import Path

from helpers.server import shapes
from helpers.server.shapes import ApiError

BASE_MODELS = ("gpt-3.5-turbo", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "gpt-4.1-mini-2025-04-14",
               "babbage-002", "davinci-002")  # all of them are the local base model
LEGACY_MODELS = ("babbage-002", "davinci-002")  # completions models: prompt/completion training data
BASE_LR = 2e-2
AUTO_LR_MULTIPLIER = 0.1
LOCAL_MAX_AUTO_BATCH = 8
MAX_LENGTH = {"ci": 128, "cpu": 256, "gpu": 512}  # tokens per example; longer examples are cut
# Gradient checkpointing off the GPU: measured in notebook 03's `cpu` run, the server and the kernel
# together went over Binder's 2 GiB without it.
LOW_MEMORY = {"ci": True, "cpu": True, "gpu": False}
MICRO_BATCH = 4  # at most this many examples per forward pass; a larger batch_size accumulates gradients
KEEP_CHECKPOINTS = 3  # OpenAI keeps the checkpoints of the last 3 epochs
# The adapter every job trains (LoraConfig fields): rank 8 on the attention projections.
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
HP_LIMITS = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": (float, 1e-6, 10)}


def base_names() -> tuple[str, ...]:
    from helpers.model import BASE_NAME
    return (BASE_NAME, *BASE_MODELS)


# --- checking a create request ----------------------------------------------------------------------
def _check_number(name: str, value, where: str):
    if value == "auto":
        return "auto"
    kind, low, high = HP_LIMITS[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high \
        and (isinstance(value, int) or (math.isfinite(value) and (kind is not int or value.is_integer())))
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ApiError(400, f"Invalid value for {where}.{name}: expected \"auto\" or "
                       f"{'an integer' if kind is int else 'a number'} from {low:g} to {high:g}, got {shown}.",
                       param=f"{where}.{name}", code="invalid_value")
    return kind(value)


def parse_hyperparameters(body: dict) -> dict:
    """The requested hyperparameters, from ``hyperparameters`` and/or ``method.supervised.hyperparameters``."""
    given: list[tuple[str, dict]] = []
    if body.get("hyperparameters") is not None:
        given.append(("hyperparameters", body["hyperparameters"]))
    method = body.get("method")
    if method is not None:
        if not isinstance(method, dict):
            raise ApiError(400, "method must be an object, e.g. {\"type\": \"supervised\", \"supervised\": "
                           "{\"hyperparameters\": {\"n_epochs\": 3}}}.", param="method", code="invalid_type")
        kind = method.get("type")
        if kind in ("dpo", "reinforcement"):
            raise ApiError(400, f"method.type={kind!r} is not supported by the course server: it trains with "
                           "supervised fine-tuning only. Use method={'type': 'supervised', ...} or leave method out.",
                           param="method.type", code="unsupported_method")
        if kind != "supervised":
            raise ApiError(400, f"Invalid value for method.type: {str(kind)[:60]!r}. Use 'supervised'.",
                           param="method.type", code="invalid_value")
        supervised = method.get("supervised")
        if supervised is not None and not isinstance(supervised, dict):
            raise ApiError(400, "method.supervised must be an object, e.g. {\"hyperparameters\": {\"n_epochs\": 3}}.",
                           param="method.supervised", code="invalid_type")
        hp = (supervised or {}).get("hyperparameters")
        if hp is not None:
            given.append(("method.supervised.hyperparameters", hp))
    merged: dict = {}
    for where, hp in given:
        if not isinstance(hp, dict):
            raise ApiError(400, f"{where} must be an object.", param=where, code="invalid_type")
        for name, value in hp.items():
            if name not in HP_LIMITS:
                raise ApiError(400, f"Unknown hyperparameter {where}.{name}. Use n_epochs, batch_size or "
                               "learning_rate_multiplier.", param=f"{where}.{name}", code="unknown_parameter")
            merged[name] = _check_number(name, value, where)
    return merged


def resolve_hyperparameters(requested: dict, n_examples: int) -> dict:
    """Numbers for every ``"auto"`` (see the module docstring for the rules)."""
    from helpers.tokens import default_epochs

    n_epochs = requested.get("n_epochs", "auto")
    batch = requested.get("batch_size", "auto")
    multiplier = requested.get("learning_rate_multiplier", "auto")
    return {"n_epochs": default_epochs(n_examples) if n_epochs == "auto" else n_epochs,
            "batch_size": (min(LOCAL_MAX_AUTO_BATCH, 256, max(1, math.ceil(0.002 * n_examples)))
                           if batch == "auto" else batch),
            "learning_rate_multiplier": AUTO_LR_MULTIPLIER if multiplier == "auto" else multiplier}


def check_metadata(metadata):
    if metadata is None:
        return None
    if (not isinstance(metadata, dict) or len(metadata) > 16
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                       for k, v in metadata.items())):
        raise ApiError(400, "metadata must be an object of at most 16 string keys (up to 64 characters) "
                       "with string values (up to 512 characters).", param="metadata", code="invalid_value")
    return metadata


# --- validation of the data ---------------------------------------------------------------------------
LEGACY_STYLE = {"separator_in_prompt", "missing_separator", "no_leading_space", "missing_stop"}  # advice only
NOT_BLOCKING = LEGACY_STYLE | {"train_valid_overlap"}


def _data_format(path: Path) -> str:
    """``legacy`` when the first record holds prompt/completion and no messages, else ``chat``."""
    from helpers.formats import read_jsonl
    try:
        first = read_jsonl(path)[:1]
    except Exception:  # noqa: BLE001 - the validator reports the details
        return "chat"
    return "legacy" if first and isinstance(first[0], dict) and "prompt" in first[0] \
        and "messages" not in first[0] else "chat"


def check_files(train: Path, valid: Path | None, model: str) -> tuple[str, list[str], dict | None]:
    """``(format, warnings, error)``: the data format, warning lines, and a job error (or None)."""
    from helpers.validate import validate_chat_file, validate_legacy_file

    fmt = _data_format(train)
    if model in LEGACY_MODELS and fmt != "legacy":
        return fmt, [], shapes.job_error("invalid_file_format", f"{model} is a completions model: its training "
                                         "file must hold {\"prompt\": ..., \"completion\": ...} records, not chat "
                                         "\"messages\". Use a chat model such as gpt-4o-mini-2024-07-18 for chat "
                                         "data.", "training_file")
    if model not in LEGACY_MODELS and model in BASE_MODELS and fmt == "legacy":
        return fmt, [], shapes.job_error("invalid_file_format", f"{model} is a chat model: its training file "
                                         "must hold {\"messages\": [...]} records. Use babbage-002 or davinci-002 "
                                         "for prompt/completion data.", "training_file")
    check = validate_legacy_file if fmt == "legacy" else validate_chat_file
    report = check(train, valid_path=valid)
    blocking = [f for f in report.findings if f.severity == "error" and f.code not in NOT_BLOCKING]
    warnings = [f"{Path(f.file).name}{'' if f.line is None else f':{f.line}'}: {f.message}"
                for f in report.findings if f not in blocking]
    if not blocking:
        return fmt, warnings, None
    if all(f.code == "too_few_examples" for f in blocking):  # broken lines are reported first
        return fmt, warnings, shapes.job_error(
            "invalid_n_examples", f"Training file has {report.n_examples} example(s), but must have at least "
            "10 examples", "training_file")
    blocking = [f for f in blocking if f.code != "too_few_examples"]
    param = "validation_file" if valid is not None and blocking[0].file == str(valid) else "training_file"
    lines = "; ".join(f"line {f.line}: {f.message}" if f.line else f.message for f in blocking[:3])
    more = f" (and {len(blocking) - 3} more problems)" if len(blocking) > 3 else ""
    name = "validation" if param == "validation_file" else "training"
    return fmt, warnings, shapes.job_error(
        "invalid_file_format", f"The {name} file is not valid fine-tuning data: {lines}{more}. Run "
        "helpers.validate on the file to see every problem and its fix.", param)


def train_config(requested: dict, n_train: int, seed: int, max_length: int, low_memory: bool = False):
    """``(hyperparameters, settings)`` for a job: "auto" resolved, and what :func:`helpers.sft.train` needs as
    plain JSON (kept in the job, so a paused job resumes with the very same settings): ``sft``, the
    ``SFTConfig`` fields (the local learning rate, checkpoints for the last 3 epochs); ``lora``, the
    ``LoraConfig`` fields (:data:`LORA`); ``eval_every``, about 20 small validation checks per job.

    A ``batch_size`` above :data:`MICRO_BATCH` runs as micro-batches with gradient accumulation (the same
    optimizer steps in far less activation memory): 8 becomes 2 micro-batches of 4. ``low_memory`` adds
    gradient checkpointing (the server passes :data:`LOW_MEMORY` for its mode).
    """
    hp = resolve_hyperparameters(requested, n_train)
    hp["batch_size"] = min(hp["batch_size"], n_train)
    steps = math.ceil(n_train / hp["batch_size"]) * hp["n_epochs"]
    micro = max(d for d in range(1, min(hp["batch_size"], MICRO_BATCH) + 1) if hp["batch_size"] % d == 0)
    sft = {"num_train_epochs": hp["n_epochs"], "per_device_train_batch_size": micro,
           "gradient_accumulation_steps": hp["batch_size"] // micro,
           "learning_rate": BASE_LR * hp["learning_rate_multiplier"], "max_length": max_length,
           "seed": seed % 2**31, "save_total_limit": KEEP_CHECKPOINTS, "gradient_checkpointing": low_memory}
    return hp, {"sft": sft, "lora": dict(LORA), "eval_every": max(1, steps // 20)}
