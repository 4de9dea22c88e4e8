"""The JSON objects the course server sends, shaped exactly as the OpenAI API sends them.

Each builder returns a plain dict with every field that the ``openai`` SDK's types require (checked by
the tests with ``_strict_response_validation=True``). Records in the store keep private fields that start
with ``_``; :func:`public` drops them.
"""
from __future__ import annotations

from helpers.server.store import new_id, now

ORG = "course-local"  # appears in fine-tuned model names: ft:{base}:{ORG}:{suffix}:{8 chars}
ORGANIZATION_ID = "org-course-local"


def public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


# --- errors ---------------------------------------------------------------------------------------
class ApiError(Exception):
    """An HTTP error in OpenAI's envelope; the app turns it into a JSON response."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {401: "authentication_error", 404: "invalid_request_error"}.get(status,
                                                                                            "invalid_request_error")


def error(message: str, *, type: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# --- lists ----------------------------------------------------------------------------------------
def page(items: list[dict], *, after: str | None, limit: int, ids: bool) -> dict:
    """A cursor page of ``items`` (already newest first): the ``limit`` items after the id ``after``.

    ``ids=True`` adds ``first_id``/``last_id`` (OpenAI sends them for files and checkpoints).
    """
    start = 0
    if after:
        position = next((i for i, item in enumerate(items) if item["id"] == after), None)
        start = len(items) if position is None else position + 1
    chunk = items[start:start + limit]
    body = {"object": "list", "data": [public(item) for item in chunk], "has_more": start + limit < len(items)}
    if ids:
        body["first_id"] = chunk[0]["id"] if chunk else None
        body["last_id"] = chunk[-1]["id"] if chunk else None
    return body


# --- files ----------------------------------------------------------------------------------------
def file_object(filename: str, size: int, purpose: str) -> dict:
    return {"id": new_id("file-"), "object": "file", "bytes": size, "created_at": now(), "filename": filename,
            "purpose": purpose, "status": "processed", "status_details": None, "expires_at": None}


# --- jobs -----------------------------------------------------------------------------------------
def job_object(*, model: str, training_file: str, validation_file: str | None, hyperparameters: dict,
               suffix: str | None, seed: int, metadata: dict | None) -> dict:
    hp = {key: hyperparameters.get(key, "auto") for key in ("batch_size", "learning_rate_multiplier", "n_epochs")}
    return {
        "id": new_id("ftjob-"), "object": "fine_tuning.job", "created_at": now(), "error": None,
        "fine_tuned_model": None, "finished_at": None, "hyperparameters": hp, "model": model,
        "organization_id": ORGANIZATION_ID, "result_files": [], "seed": seed, "status": "validating_files",
        "trained_tokens": None, "training_file": training_file, "validation_file": validation_file,
        "estimated_finish": None, "integrations": [], "metadata": metadata, "user_provided_suffix": suffix,
        "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hp)}},
    }


def job_error(code: str, message: str, param: str | None = None) -> dict:
    return {"code": code, "message": message, "param": param}


def event(message: str, *, level: str = "info", data: dict | None = None, type: str = "message") -> dict:
    return {"id": new_id("ftevent-"), "object": "fine_tuning.job.event", "created_at": now(), "level": level,
            "message": message, "data": data or {}, "type": type}


def checkpoint(job_id: str, model_name: str, step: int, metrics: dict) -> dict:
    keys = ("step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
            "full_valid_loss", "full_valid_mean_token_accuracy")
    return {"id": new_id("ftckpt-"), "object": "fine_tuning.job.checkpoint", "created_at": now(),
            "fine_tuned_model_checkpoint": model_name, "fine_tuning_job_id": job_id, "step_number": int(step),
            "metrics": {k: (float(metrics[k]) if metrics.get(k) is not None else None) for k in keys}}


def fine_tuned_name(base: str, suffix: str | None) -> str:
    """``ft:{base}:{org}:{suffix}:{8 chars}``, as OpenAI names fine-tuned models (empty suffix: ``::``)."""
    return f"ft:{base}:{ORG}:{suffix or ''}:{new_id('', 8).lower()}"


# --- models ---------------------------------------------------------------------------------------
def model_object(model_id: str, created: int, owned_by: str) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


# --- inference ------------------------------------------------------------------------------------
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": new_id("chatcmpl-"), "object": "chat.completion", "created": now(), "model": model,
            "system_fingerprint": "fp_course_local",
            "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []}}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(completion_id: str, created: int, model: str, delta: dict | None,
               finish_reason: str | None = None, usage_: dict | None = None) -> dict:
    """One streamed chunk; ``delta=None`` makes the usage-only chunk (``choices: []``)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                         "logprobs": None}]
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_course_local", "choices": choices, "usage": usage_}


def text_completion(model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": new_id("cmpl-"), "object": "text_completion", "created": now(), "model": model,
            "system_fingerprint": "fp_course_local",
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage(prompt_tokens, completion_tokens)}
