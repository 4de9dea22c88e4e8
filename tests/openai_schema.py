"""The response objects of OpenAI's published OpenAPI schema that the course server sends, as JSON Schema.

Written from ``openapi.yaml`` in github.com/openai/openai-openapi (commit f85dbe22, August 2026): the
components ``OpenAIFile``, ``ListFilesResponse``, ``DeleteFileResponse``, ``FineTuningJob``,
``ListPaginatedFineTuningJobsResponse``, ``FineTuningJobEvent``, ``ListFineTuningJobEventsResponse``,
``FineTuningJobCheckpoint``, ``ListFineTuningJobCheckpointsResponse``, ``Model``, ``ListModelsResponse``,
``DeleteModelResponse``, ``ErrorResponse``/``Error``, ``CreateChatCompletionResponse``,
``CreateChatCompletionStreamResponse``, ``CreateCompletionResponse`` and ``CompletionUsage``: the same
required fields, types, enums and nullability (descriptions and fields the server never sends are left out).

Two documented differences, both of them what OpenAI's own service sends although its schema lacks them:
a job's ``status`` may be ``paused``, and a streamed legacy completion has ``finish_reason: null`` until its
last chunk.

``check(method, path, status, body)`` validates one response; ``check_stream`` one SSE body.
"""
from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator

INT, STR, BOOL, NUM, OBJ = ({"type": t} for t in ("integer", "string", "boolean", "number", "object"))
NULL = {"type": "null"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, NULL]}


def const(*values) -> dict:
    return {"type": "string", "enum": list(values)}


def obj(required: dict, optional: dict | None = None) -> dict:
    """An object with ``required`` fields (name -> schema) and ``optional`` ones; other fields are allowed."""
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


AUTO_OR = lambda schema: {"oneOf": [const("auto"), schema]}  # noqa: E731

FILE = obj({"id": STR, "object": const("file"), "bytes": INT, "created_at": INT, "filename": STR,
            "purpose": const("assistants", "assistants_output", "batch", "batch_output", "fine-tune",
                             "fine-tune-results", "vision", "user_data"),
            "status": const("uploaded", "processed", "error")},
           {"expires_at": INT, "status_details": STR})
HYPERPARAMETERS = obj({}, {"batch_size": nullable(AUTO_OR({"type": "integer", "minimum": 1, "maximum": 256})),
                           "learning_rate_multiplier": AUTO_OR({"type": "number", "exclusiveMinimum": 0}),
                           "n_epochs": AUTO_OR({"type": "integer", "minimum": 1, "maximum": 50})})
JOB = obj({"id": STR, "object": const("fine_tuning.job"), "created_at": INT,
           "error": nullable(obj({"code": STR, "message": STR, "param": nullable(STR)})),
           "fine_tuned_model": nullable(STR), "finished_at": nullable(INT), "hyperparameters": HYPERPARAMETERS,
           "model": STR, "organization_id": STR, "result_files": array(STR), "seed": INT,
           "status": const("validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"),
           "trained_tokens": nullable(INT), "training_file": STR, "validation_file": nullable(STR)},
          {"estimated_finish": nullable(INT), "integrations": nullable({**array(OBJ), "maxItems": 5}),
           "metadata": nullable({"type": "object", "additionalProperties": STR}),
           "method": obj({"type": const("supervised", "dpo", "reinforcement")},
                         {"supervised": obj({}, {"hyperparameters": HYPERPARAMETERS}), "dpo": OBJ,
                          "reinforcement": OBJ})})
EVENT = obj({"id": STR, "object": const("fine_tuning.job.event"), "created_at": INT,
             "level": const("info", "warn", "error"), "message": STR},
            {"data": OBJ, "type": const("message", "metrics")})
CHECKPOINT = obj({"id": STR, "object": const("fine_tuning.job.checkpoint"), "created_at": INT,
                  "fine_tuned_model_checkpoint": STR, "fine_tuning_job_id": STR, "step_number": INT,
                  "metrics": obj({}, {k: NUM for k in ("step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                                                       "valid_mean_token_accuracy", "full_valid_loss",
                                                       "full_valid_mean_token_accuracy")})})
MODEL = obj({"id": STR, "object": const("model"), "created": INT, "owned_by": STR},
            {"shutdown_date": nullable(STR)})
USAGE = obj({"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT},
            {"prompt_tokens_details": OBJ, "completion_tokens_details": OBJ})
LOGPROBS = nullable(OBJ)
CHAT = obj({"id": STR, "object": const("chat.completion"), "created": INT, "model": STR,
            "choices": array(obj({"index": INT, "logprobs": LOGPROBS,
                                  "finish_reason": const("stop", "length", "tool_calls", "content_filter",
                                                         "function_call"),
                                  "message": obj({"role": const("assistant"), "content": nullable(STR),
                                                  "refusal": nullable(STR)}, {"annotations": array(OBJ)})}))},
           {"usage": USAGE, "system_fingerprint": STR})
CHAT_CHUNK = obj({"id": STR, "object": const("chat.completion.chunk"), "created": INT, "model": STR,
                  "choices": array(obj({"index": INT, "delta": OBJ,
                                        "finish_reason": nullable(const("stop", "length", "tool_calls",
                                                                        "content_filter", "function_call"))},
                                       {"logprobs": LOGPROBS}))},
                 {"usage": nullable(USAGE), "system_fingerprint": STR})


def completion(streamed: bool) -> dict:
    finish = const("stop", "length", "content_filter")
    return obj({"id": STR, "object": const("text_completion"), "created": INT, "model": STR,
                "choices": array(obj({"index": INT, "text": STR, "logprobs": LOGPROBS,
                                      "finish_reason": nullable(finish) if streamed else finish}))},
               {"usage": USAGE, "system_fingerprint": STR})


LIST = const("list")
SCHEMAS = {
    "file": FILE,
    "file_list": obj({"object": STR, "data": array(FILE), "first_id": STR, "last_id": STR, "has_more": BOOL}),
    "file_deleted": obj({"id": STR, "object": const("file"), "deleted": BOOL}),
    "job": JOB,
    "job_list": obj({"object": LIST, "data": array(JOB), "has_more": BOOL}),
    "event_list": obj({"object": LIST, "data": array(EVENT), "has_more": BOOL}),
    "checkpoint_list": obj({"object": LIST, "data": array(CHECKPOINT), "has_more": BOOL},
                           {"first_id": nullable(STR), "last_id": nullable(STR)}),
    "model": MODEL,
    "model_list": obj({"object": LIST, "data": array(MODEL)}),
    "model_deleted": obj({"id": STR, "object": STR, "deleted": BOOL}),
    "error": obj({"error": obj({"type": STR, "message": STR, "param": nullable(STR), "code": nullable(STR)})}),
    "chat": CHAT,
    "chat_chunk": CHAT_CHUNK,
    "completion": completion(streamed=False),
    "completion_chunk": completion(streamed=True),
}
VALIDATORS = {name: Draft202012Validator(schema) for name, schema in SCHEMAS.items()}

ROUTES = [  # (method, path pattern, schema name) for 2xx answers; None: not JSON, or not an OpenAI object
    ("POST", r"/v1/files", "file"),
    ("GET", r"/v1/files", "file_list"),
    ("GET", r"/v1/files/[^/]+", "file"),
    ("DELETE", r"/v1/files/[^/]+", "file_deleted"),
    ("GET", r"/v1/files/[^/]+/content", None),
    ("POST", r"/v1/fine_tuning/jobs", "job"),
    ("GET", r"/v1/fine_tuning/jobs", "job_list"),
    ("GET", r"/v1/fine_tuning/jobs/[^/]+", "job"),
    ("POST", r"/v1/fine_tuning/jobs/[^/]+/(cancel|pause|resume)", "job"),
    ("GET", r"/v1/fine_tuning/jobs/[^/]+/events", "event_list"),
    ("GET", r"/v1/fine_tuning/jobs/[^/]+/checkpoints", "checkpoint_list"),
    ("GET", r"/v1/models", "model_list"),
    ("GET", r"/v1/models/.+", "model"),
    ("DELETE", r"/v1/models/.+", "model_deleted"),
    ("POST", r"/v1/load_lora_adapter", "model"),
    ("POST", r"/v1/chat/completions", "chat"),
    ("POST", r"/v1/completions", "completion"),
    ("GET", r"/v1/workshop/overview", None),
    ("GET", r"/health", None),
]


def schema_name(method: str, path: str, status: int) -> str | None:
    if status >= 400:
        return "error"
    for verb, pattern, name in ROUTES:
        if verb == method and re.fullmatch(pattern, path):
            return name
    raise AssertionError(f"no schema for {method} {path}")


def problems(name: str, body) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in VALIDATORS[name].iter_errors(body)]


def check(method: str, path: str, status: int, body) -> None:
    """Assert that a JSON answer matches OpenAI's schema for that route (or the error envelope)."""
    name = schema_name(method, path, status)
    if name is not None:
        found = problems(name, body)
        assert not found, f"{method} {path} -> {status} does not match OpenAI's {name} schema: {found[:5]}"


def check_stream(path: str, text: str) -> None:
    """Assert that every ``data:`` line of a streamed answer is a schema-valid chunk (or an error)."""
    name = "chat_chunk" if path.endswith("/chat/completions") else "completion_chunk"
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            item = json.loads(line[6:])
            found = problems("error" if "error" in item else name, item)
            assert not found, f"a chunk of {path} does not match OpenAI's {name} schema: {found[:5]}"
