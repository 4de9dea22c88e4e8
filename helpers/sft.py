"""The course's one training path: TRL's ``SFTTrainer``, plus three small pieces TRL does not have.

    from peft import LoraConfig
    from helpers import sft
    args = sft.course_config("outputs/run", num_train_epochs=3, learning_rate=2e-3)
    result = sft.train(model, tokenizer, train_examples, valid_examples, args, LoraConfig(r=8, lora_alpha=16))
    result.metrics      # one row per optimizer step: the columns of OpenAI's result file

TRL and transformers do the training: dynamic padding, batches grouped by length, gradient accumulation,
the learning-rate schedule, checkpoints that resume with the optimizer, scheduler and random-number state,
and DDP or DeepSpeed under ``accelerate launch`` (``python -m helpers.sft_launch`` runs this same path in
fresh processes). The course adds, each measured in ``benchmarks/trainer_speed.py``:

1. :func:`chat_dataset`: OpenAI chat examples (or legacy prompt/completion records) to token ids and labels,
   with the loss on the assistant's replies and their end-of-turn token only, skipping a reply marked
   ``"weight": 0``. A bad example gets the validator's message (which example, what is wrong, how to fix
   it) before anything is tokenized.
2. :class:`CourseTrainer`: ``SFTTrainer`` whose loss runs the vocabulary projection (576 -> 49,152 numbers per
   token) only where a token is trained on. On a CPU, TRL projects every position, in float32.
3. :class:`ResultFile`: a callback that writes OpenAI's result-file columns, reports OpenAI-style events, and
   honours pause (a resumable checkpoint) and cancel.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from trl import SFTConfig, SFTTrainer
from transformers import TrainerCallback

from helpers.environment import is_ci, release_memory

IGNORE = -100   # the label of a token that the loss skips
COLUMNS = ["step", "epoch", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy",
           "full_valid_loss", "full_valid_mean_token_accuracy"]
ROWS_FILE = "result_rows.json"   # the result-file rows so far, saved in every checkpoint


# ---------------------------------------------------------------- 1. examples -> token ids and labels
def encode_example(example: dict, tokenizer) -> dict:
    """``{"input_ids", "labels"}``: labels are ``-100`` except on the tokens of replies to train on.

    The chat template is rendered up to each assistant reply (with the generation prompt) and through it; the
    difference is the reply and its end-of-turn marker. A token is trained on when its characters overlap
    such a span. A legacy record trains on ``completion + eos`` after its ``prompt``."""
    if "messages" in example:
        messages = example["messages"]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        spans = []
        for i, message in enumerate(messages):
            if message.get("role") == "assistant" and message.get("weight", 1) != 0:
                before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
                through = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
                spans.append((len(before), len(through.rstrip())))
    else:
        text = example["prompt"] + example["completion"] + tokenizer.eos_token
        spans = [(len(example["prompt"]), len(text))]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [tok if any(a < e and b > s for s, e in spans) else IGNORE
              for tok, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"])]
    return {"input_ids": encoded["input_ids"], "labels": labels}


def chat_dataset(examples, tokenizer, max_length: int | None = None, name: str = "training examples"):
    """A ``datasets.Dataset`` of ``input_ids`` and ``labels`` from chat examples, legacy records, or a JSONL
    path. Examples that keep no trained token after ``max_length`` are dropped, as TRL drops them."""
    from datasets import Dataset

    from helpers.formats import read_jsonl
    from helpers.validate import check_examples

    if isinstance(examples, (str, Path)):
        name, examples = str(examples), read_jsonl(examples)
    problems = check_examples(examples, name)
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in {name}; fix them before training:\n"
                         + "\n".join(str(p) for p in problems[:10]))
    rows = [encode_example(e, tokenizer) for e in examples]
    if max_length:
        rows = [{k: v[:max_length] for k, v in r.items()} for r in rows]
    rows = [r for r in rows if any(label != IGNORE for label in r["labels"][1:])]
    if not rows:
        raise ValueError(f"None of the {name} has an assistant reply to train on within {max_length} tokens.")
    return Dataset.from_list(rows)


# ---------------------------------------------------------------- 2. the loss on labelled positions only
class CourseTrainer(SFTTrainer):
    """``SFTTrainer`` with the vocabulary projection only at labelled positions (same loss, less work).

    The model runs as usual (through DDP when there is one), with its output layer swapped for an identity
    for the call, so it returns the last hidden states; only the rows that have a label go through the
    real output layer. ``sums`` adds up loss, right tokens, labelled and real tokens for :class:`ResultFile`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sums = torch.zeros(4, dtype=torch.float64)
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ResultFile):
                callback.bind(self)

    def token_loss(self, model, inputs) -> tuple:
        """``(summed loss, right predictions, labelled tokens)`` over the batch's labelled positions."""
        inner = self.accelerator.unwrap_model(model)
        inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        head = inner.get_output_embeddings()
        inner.set_output_embeddings(torch.nn.Identity())
        try:
            hidden = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           use_cache=False).logits
        finally:
            inner.set_output_embeddings(head)
        hidden = hidden[:, -inputs["input_ids"].shape[1]:]   # prompt tuning prepends its virtual tokens
        targets = inputs["labels"][:, 1:]
        keep = targets != IGNORE
        logits = head(hidden[:, :-1][keep]).float()
        targets = targets[keep]
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        return loss_sum, (logits.argmax(-1) == targets).sum(), keep.sum()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, correct, n = self.token_loss(model, inputs)
        loss = loss_sum / (n.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes   # DDP averages gradients: undo it, as TRL does
        if model.training:
            self.sums += torch.tensor([loss_sum.item(), correct.item(), n.item(),
                                       inputs["attention_mask"].sum().item()], dtype=torch.float64)
        return (loss, {"logits": None}) if return_outputs else loss

    @torch.no_grad()
    def token_metrics(self, dataset) -> tuple[float, float]:
        """``(mean loss, mean token accuracy)`` over every labelled token of ``dataset``, without gradients."""
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros(3, dtype=torch.float64)
        for batch in self.get_eval_dataloader(dataset):
            batch = self._prepare_inputs(batch)
            total += torch.tensor([x.item() for x in self.token_loss(self.model, batch)], dtype=torch.float64)
        self.model.train(was_training)
        return (total[0] / total[2]).item(), (total[1] / total[2]).item()


# ---------------------------------------------------------------- 3. result file, events, pause and cancel
class ResultFile(TrainerCallback):
    """One OpenAI result-file row per optimizer step: training loss and token accuracy, the loss on a small
    validation batch every ``eval_every`` steps, and on the whole validation set at each epoch's end.

    ``on_event(dict)`` gets ``metrics``, ``epoch_end`` and ``checkpoint`` events. ``should_stop()`` is asked
    after every step: ``"pause"`` saves a checkpoint and stops (resume from it); ``"cancel"`` just stops."""

    def __init__(self, eval_every: int = 10, on_event=None, should_stop=None):
        self.trainer, self.valid, self.eval_every = None, None, eval_every
        self.on_event, self.should_stop = on_event or (lambda event: None), should_stop or (lambda: None)
        self.rows, self.status, self.trained_tokens, self.checkpoints, self.pauses = [], "succeeded", 0, [], []

    def bind(self, trainer: CourseTrainer) -> None:
        """Read the loss sums of ``trainer`` (a :class:`CourseTrainer` passed this callback binds it itself)."""
        self.trainer, self.valid = trainer, trainer.eval_dataset

    def frame(self) -> pd.DataFrame:
        """The rows so far, as the result file's columns (plus epoch and the full-validation columns)."""
        return pd.DataFrame(self.rows, columns=COLUMNS).astype({"step": int, "epoch": int})

    def resume(self, checkpoint) -> None:
        """Carry on the rows, token count and checkpoint lists saved in ``checkpoint``."""
        saved = json.loads((Path(checkpoint) / ROWS_FILE).read_text())
        self.rows, self.trained_tokens = saved["rows"], saved["trained_tokens"]
        self.checkpoints, self.pauses = [tuple(c) for c in saved["checkpoints"]], saved["pauses"]

    def on_step_end(self, args, state, control, **kwargs):
        sums, accelerator = self.trainer.sums, self.trainer.accelerator
        if accelerator.num_processes > 1:   # every process's share of the global batch
            sums = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
        loss, correct, n, tokens = sums.tolist()
        self.trainer.sums.zero_()
        self.trained_tokens += int(tokens)
        row = dict.fromkeys(COLUMNS)
        row.update(step=state.global_step, epoch=int(state.epoch - 1e-9) + 1, train_loss=loss / n,
                   train_accuracy=correct / n)
        if self.valid is not None and (state.global_step % self.eval_every == 0 or state.global_step == state.max_steps):
            size = min(args.per_device_train_batch_size, len(self.valid))
            start = (state.global_step // self.eval_every) * size   # a different small batch each time
            small = self.valid.select([(start + j) % len(self.valid) for j in range(size)])
            row["valid_loss"], row["valid_mean_token_accuracy"] = self.trainer.token_metrics(small)
        self.rows.append(row)
        self.on_event({"type": "metrics", "total_steps": state.max_steps, "train_mean_token_accuracy":
                       row["train_accuracy"], **{k: row[k] for k in COLUMNS[:6] if k != "train_accuracy"}})
        decision = self.should_stop()
        if decision in ("pause", "cancel"):
            self.status = "paused" if decision == "pause" else "cancelled"
            control.should_training_stop, control.should_save = True, decision == "pause"
            self.pauses += [state.global_step] if decision == "pause" else []
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.status != "succeeded" or not self.rows:
            control.should_save = False   # a pause saved already; a cancelled run keeps nothing
            return control
        full = self.trainer.token_metrics(self.valid) if self.valid is not None else (None, None)
        self.rows[-1]["full_valid_loss"], self.rows[-1]["full_valid_mean_token_accuracy"] = full
        self.on_event({"type": "epoch_end", "epoch": self.rows[-1]["epoch"], "step": state.global_step,
                       "full_valid_loss": full[0], "full_valid_mean_token_accuracy": full[1]})
        release_memory()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer = self.valid = None   # keep the rows, not the trainer's model and optimizer state
        return control

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.checkpoints = [(s, p) for s, p in self.checkpoints if Path(p).exists() and s != state.global_step]
        self.checkpoints.append((state.global_step, str(path)))
        (path / ROWS_FILE).write_text(json.dumps({"rows": self.rows, "trained_tokens": self.trained_tokens,
                                                  "checkpoints": self.checkpoints, "pauses": self.pauses}))
        if self.status == "succeeded":
            self.on_event({"type": "checkpoint", "step": state.global_step, "epoch": self.rows[-1]["epoch"],
                           "path": str(path)})
        return control


# ---------------------------------------------------------------- the course's settings, and one call
def course_config(output_dir, **overrides) -> SFTConfig:
    """``SFTConfig`` with the course's settings; ``overrides`` are any ``SFTConfig`` field.

    Different from TRL's defaults, each for a measured reason (``benchmarks/trainer_speed.py``): no gradient
    checkpointing (turn it on when memory is short: less memory, about a third more time); bf16 autocast only
    on a GPU that has it (on a CPU, load the model in bf16 instead); batches grouped by length; a checkpoint
    per epoch (the last 3 kept); no logging to services; progress bars except in ci mode."""
    on_gpu = torch.cuda.is_available()
    settings = dict(output_dir=str(output_dir), num_train_epochs=3, per_device_train_batch_size=8,
                    per_device_eval_batch_size=16, learning_rate=2e-4, lr_scheduler_type="linear", weight_decay=0.0,
                    gradient_checkpointing=False, bf16=on_gpu and torch.cuda.is_bf16_supported(), use_cpu=not on_gpu,
                    train_sampling_strategy="group_by_length", save_strategy="epoch", save_total_limit=3,
                    eval_strategy="no", prediction_loss_only=True, logging_strategy="no", report_to="none",
                    disable_tqdm=is_ci(), max_length=256, seed=0, dataloader_num_workers=0)
    return SFTConfig(**{**settings, **overrides})


@dataclass
class TrainResult:
    """What :func:`train` returns. ``status``: "succeeded", "paused" or "cancelled"."""

    status: str
    metrics: pd.DataFrame                     # one row per optimizer step (COLUMNS)
    final_dir: str | None                     # the saved adapter (or full weights); None unless succeeded
    checkpoints: list = field(default_factory=list)   # [(step, path)] of the kept checkpoints
    trained_tokens: int = 0                   # real (non-pad) tokens trained on, all epochs
    seconds: float = 0.0
    resume_from: str | None = None            # when paused: pass it back as train(..., resume_from=...)
    model: Any = field(default=None, repr=False)


def train(model, tokenizer, train_examples, valid_examples, args: SFTConfig, peft_config=None, *,
          eval_every: int = 10, on_event: Callable | None = None, should_stop: Callable | None = None,
          resume_from=None) -> TrainResult:
    """Fine-tune ``model`` (wrapped with ``peft_config``; ``None`` trains every weight) on chat examples.

    The adapter (or model) is saved in ``args.output_dir/final``; checkpoints, each resumable with
    ``resume_from=``, in ``checkpoint-STEP``. The trained model comes back in eval mode as ``result.model``."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.trainer_callback import PrinterCallback

    release_memory()
    started, bars = time.perf_counter(), not are_progress_bars_disabled()
    disable_progress_bars()   # the training bar is enough
    try:
        data = chat_dataset(train_examples, tokenizer, args.max_length)
        valid = chat_dataset(valid_examples, tokenizer, args.max_length, "validation examples") \
            if valid_examples else None
        trainer = CourseTrainer(model=model, args=args, train_dataset=data, eval_dataset=valid,
                                processing_class=tokenizer, peft_config=peft_config)
    finally:
        if bars:
            enable_progress_bars()
    trainer.remove_callback(PrinterCallback)   # its summary line repeats what the result frame holds
    results = ResultFile(eval_every, on_event, should_stop)
    results.bind(trainer)
    trainer.add_callback(results)
    if resume_from:
        results.resume(resume_from)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = resume = None
    if results.status == "succeeded":
        final = str(Path(args.output_dir) / "final")
        trainer.save_model(final)
        for step, path in results.checkpoints:   # pause checkpoints are spent once the run has finished
            if step in results.pauses and step not in (s for s, _ in results.checkpoints[-1:]):
                shutil.rmtree(path, ignore_errors=True)
    elif results.status == "paused":
        resume = results.checkpoints[-1][1]
    frame = results.frame()
    trained = trainer.model.eval()
    if args.gradient_checkpointing:   # generation with the shared base needs its key-value cache back
        trained.gradient_checkpointing_disable()
    kept = [(s, p) for s, p in results.checkpoints if Path(p).exists()]
    return TrainResult(results.status, frame, final, kept, results.trained_tokens,
                       time.perf_counter() - started, resume, trained)
