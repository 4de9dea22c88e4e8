"""Reading a request: the JSON body, query parameters, sampling settings and chat messages.

Every check here turns a client's mistake into an :class:`ApiError` (a 400 in OpenAI's envelope) that says
what is wrong and how to fix it, whatever the JSON holds: wrong types, NaN or ``1e999``, integers with
thousands of digits, bodies nested thousands of levels deep, non-ASCII digits in a query string.
"""
from __future__ import annotations

import json
import math
import re

from starlette.requests import Request

from helpers.server.shapes import ApiError

MAX_BODY_BYTES = 8 * 2**20     # a JSON body; prompts beyond the model's context are refused anyway
MAX_TOKENS_LIMIT = 4096        # the most tokens one reply may ask for
SEED_RANGE = (-2**63, 2**63 - 1)
UNSUPPORTED_CHAT = ("tools", "functions", "tool_choice", "function_call", "audio", "modalities", "prediction",
                    "web_search_options")


def _not_json(value: str):
    raise ValueError(f"{value} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


async def json_body(request: Request) -> dict:
    """The body as a JSON object (400 for anything else: broken JSON, NaN, 1e999, an array, too deep)."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is {len(raw):,} bytes; the course server accepts at most "
                       f"{MAX_BODY_BYTES:,}.", code="request_too_large")
    try:
        body = json.loads(raw or b"null", parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        detail = f" ({exc})" if isinstance(exc, ValueError) and "number" in str(exc) else ""
        raise ApiError(400, "We could not parse the JSON body of your request" + detail + ". (HINT: This likely "
                       "means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                       "with finite numbers and at most a few hundred levels of nesting.)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


# --- query parameters ------------------------------------------------------------------------------
def limit_arg(request: Request, default: int) -> int:
    """``?limit=``: an integer from 1 to 10000 written in ASCII digits."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= 10_000:
        raise ApiError(400, f"Invalid value for 'limit': {raw[:40]!r}. Use an integer from 1 to 10000.",
                       param="limit", code="invalid_value")
    return int(raw)


def order_arg(request: Request) -> str:
    raw = request.query_params.get("order", "desc")
    if raw not in ("asc", "desc"):
        raise ApiError(400, f"Invalid value for 'order': {raw[:40]!r}. Use 'asc' or 'desc'.", param="order",
                       code="invalid_value")
    return raw


# --- typed values ----------------------------------------------------------------------------------
def number(body: dict, key: str, low: float, high: float, default, kind=float):
    """``body[key]`` as a finite number (``kind=int``: a whole number) within ``[low, high]``."""
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high \
        and (isinstance(value, int) or (math.isfinite(value) and (kind is not int or value.is_integer())))
    if not ok:
        what = "an integer" if kind is int else "a number"
        raise ApiError(400, f"Invalid value for '{key}': {_short(value)}. Use {what} from {low:g} to {high:g}.",
                       param=key, code="invalid_value")
    return kind(value)


def flag(body: dict, key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{key}': expected a boolean (true or false), got {_short(value)}.",
                       param=key, code="invalid_type")
    return bool(value)


def obj(body: dict, key: str, where: str | None = None) -> dict:
    """``body[key]`` as an object ({} when absent or null)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        name = where or key
        raise ApiError(400, f"Invalid type for '{name}': expected an object, got {_short(value)}.", param=name,
                       code="invalid_type")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- inference requests ----------------------------------------------------------------------------
def sampling(body: dict, default_max: int) -> dict:
    """max_tokens / max_completion_tokens, temperature, top_p, stop, seed; n must be 1.

    ``explicit_max`` says whether the client chose the length (it counts against the context then).
    """
    if number(body, "n", 1, 128, 1, int) != 1:
        raise ApiError(400, "n must be 1 on the course server: it generates one choice per request. Send "
                       "several requests instead.", param="n", code="invalid_value")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = number(body, key, 1, MAX_TOKENS_LIMIT, None, int)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                             or not all(isinstance(s, str) and s for s in stop)):
        raise ApiError(400, "stop must be a string or a list of up to 4 non-empty strings.", param="stop",
                       code="invalid_value")
    seed = number(body, "seed", *SEED_RANGE, None, int)
    return {"max_tokens": max_tokens or default_max, "explicit_max": max_tokens is not None,
            "temperature": number(body, "temperature", 0, 2, 1.0),
            "top_p": number(body, "top_p", 0, 1, 1.0) or 1e-6, "stop": stop or None, "seed": seed}


def stream_settings(body: dict) -> tuple[bool, bool]:
    """``(stream, include_usage)`` from ``stream`` and ``stream_options``."""
    stream = flag(body, "stream")
    options = obj(body, "stream_options")
    return stream, flag(options, "include_usage") if stream else False


def _text(content, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise ApiError(400, f"Invalid content part {where}.content[{j}]: use {{\"type\": \"text\", "
                               "\"text\": \"...\"}.", param=f"{where}.content", code="invalid_value")
            if part.get("type") == "text":
                parts.append(part.get("text", ""))
        return "".join(parts)
    raise ApiError(400, f"Invalid type for '{where}.content': expected a string or a list of text parts, got "
                   f"{_short(content)}.", param=f"{where}.content", code="invalid_type")


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Missing required parameter: 'messages' (a non-empty list).", param="messages",
                       code="missing_required_parameter")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise ApiError(400, f"Invalid value for messages[{i}]: each message needs a role (system, developer, "
                           "user, assistant) and content.", param=f"messages[{i}]", code="invalid_value")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _text(m.get("content"), f"messages[{i}]")})
    return out


def completion_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be one string on the course server.", param="prompt", code="invalid_value")
    return prompt


def reject_unsupported(body: dict, names) -> None:
    for key in names:
        if body.get(key):
            raise ApiError(400, f"'{key}' is not supported by the course server.", param=key,
                           code="unsupported_parameter")


def check_context(n_prompt: int, params: dict, context: int, kind: str) -> dict:
    """Refuse a prompt that leaves no room in the model's context, in OpenAI's words (``context_length_exceeded``).

    A ``max_tokens`` the client chose (on ``/v1/completions`` also its default, 16) must fit beside the prompt;
    without one a chat reply gets the room that is left. Returns the generation settings, ``max_tokens`` cut
    to that room.
    """
    counted = params["explicit_max"] or kind == "text"  # the legacy endpoint counts its default 16 too
    wanted = n_prompt + (params["max_tokens"] if counted else 1)
    if wanted > context:
        if kind == "text":
            message = (f"This model's maximum context length is {context} tokens, however you requested {wanted} "
                       f"tokens ({n_prompt} in your prompt; {wanted - n_prompt} for the completion). Please reduce "
                       "your prompt; or completion length.")
        elif params["explicit_max"]:
            message = (f"This model's maximum context length is {context} tokens. However, you requested {wanted} "
                       f"tokens ({n_prompt} in the messages, {wanted - n_prompt} in the completion). Please reduce "
                       "the length of the messages or completion.")
        else:
            message = (f"This model's maximum context length is {context} tokens. However, your messages resulted "
                       f"in {n_prompt} tokens. Please reduce the length of the messages.")
        raise ApiError(400, message, param="prompt" if kind == "text" else "messages",
                       code="context_length_exceeded")
    out = {k: v for k, v in params.items() if k != "explicit_max"}
    return {**out, "max_tokens": min(params["max_tokens"], context - n_prompt)}


def clean_filename(name: str) -> str:
    """The file's base name without folders or control characters, at most 255 characters."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = re.sub(r"[^\w.\- ()\[\]]", "_", name).strip(" .") or "upload"
    return name[-255:]
