"""The JSON objects the course server sends, shaped exactly as the OpenAI API sends them.

Each builder returns a plain dict with every field that OpenAI's published OpenAPI schema requires, of the
type it gives, and no ``null`` where the schema has none: a field without a value is left out (checked by the
tests against the schema and with the SDK's ``_strict_response_validation=True``). Records in the store keep
private fields that start with ``_``; :func:`public` drops them.
"""
from __future__ import annotations

from helpers.server.store import new_id, now

ORG = "course-local"  # appears in fine-tuned model names: ft:{base}:{ORG}:{suffix}:{8 chars}
ORGANIZATION_ID = "org-course-local"


_NEVER_NULL = {"file": ("expires_at", "status_details")}  # records written by older servers held nulls here


def public(record: dict) -> dict:
    """The API object: private ``_`` fields dropped, and no ``null`` where OpenAI's schema allows none."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    for key in _NEVER_NULL.get(out.get("object"), ()):
        if out.get(key) is None:
            out.pop(key, None)
    if out.get("object") == "fine_tuning.job.checkpoint":
        out["metrics"] = {k: v for k, v in out["metrics"].items() if v is not None}
    return out


# --- errors ---------------------------------------------------------------------------------------
class ApiError(Exception):
    """An HTTP error in OpenAI's envelope; the app turns it into a JSON response."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}
        self.type = type or {401: "authentication_error", 404: "invalid_request_error"}.get(status,
                                                                                            "invalid_request_error")


def error(message: str, *, type: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# --- lists ----------------------------------------------------------------------------------------
def page(items: list[dict], *, after: str | None, limit: int, ids: bool) -> dict:
    """A cursor page of ``items`` (already newest first): the ``limit`` items after the id ``after``.

    ``ids=True`` adds ``first_id``/``last_id`` (OpenAI sends them for files and checkpoints). The schema
    types them as strings (required for files), so an empty page has ``""`` rather than ``null``.
    """
    start = 0
    if after:
        position = next((i for i, item in enumerate(items) if item["id"] == after), None)
        start = len(items) if position is None else position + 1
    chunk = items[start:start + limit]
    body = {"object": "list", "data": [public(item) for item in chunk], "has_more": start + limit < len(items)}
    if ids:
        body["first_id"] = chunk[0]["id"] if chunk else ""
        body["last_id"] = chunk[-1]["id"] if chunk else ""
    return body


# --- files ----------------------------------------------------------------------------------------
def file_object(filename: str, size: int, purpose: str) -> dict:
    """A file that never expires: ``expires_at`` and ``status_details`` are left out (the schema has no null)."""
    return {"id": new_id("file-"), "object": "file", "bytes": size, "created_at": now(), "filename": filename,
            "purpose": purpose, "status": "processed"}


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
            "metrics": {k: float(metrics[k]) for k in keys if metrics.get(k) is not None}}  # no validation: no valid_*


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
