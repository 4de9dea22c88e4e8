"""The HTTP routes of the course server (FastAPI): files, fine-tuning jobs, models, and inference.

Every error is OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status
codes; a client's mistake is never a 5xx, and every error carries ``x-should-retry: false`` so the SDK
does not retry it (a retried ``jobs.create`` could start a second job). When the server has an API key, every ``/v1`` request needs ``Authorization: Bearer KEY``.
``GET /health`` is open (the notebook helper waits on it).

One route is not OpenAI's: ``POST /v1/load_lora_adapter`` with ``{"lora_name", "lora_path"}`` serves a LoRA
adapter saved on this machine (trained in a notebook rather than by a job) under a model name. It is the
route vLLM offers for the same purpose; the ``openai`` SDK calls it with ``client.post``.
"""
from __future__ import annotations

import hmac
import json
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpers.server import rules, shapes
from helpers.server.inference import Engine, Generated
from helpers.server.jobs import JobManager, delete_model_files, import_adapter
from helpers.server.shapes import ApiError
from helpers.server.store import Store, b64

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # OpenAI allows far more; course files are small
BASE_CREATED = 1_727_000_000          # a fixed "created" time for the base model names
MAX_TOKENS_LIMIT = 4096
UNSUPPORTED_CHAT = ("tools", "functions", "tool_choice", "function_call", "audio", "modalities", "prediction",
                    "web_search_options")


# --- helpers ------------------------------------------------------------------------------------------
async def json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                       "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


JsonBody = Annotated[dict, Depends(json_body)]


def limit_arg(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ApiError(400, f"Invalid value for 'limit': {raw!r}. Use an integer from 1 to 10000.", param="limit",
                       code="invalid_value")
    return int(raw)


def clean_filename(name: str) -> str:
    """The file's base name without folders or control characters, at most 255 characters."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = re.sub(r"[^\w.\- ()\[\]]", "_", name).strip(" .") or "upload"
    return name[-255:]


def _number(body: dict, key: str, low: float, high: float, default, kind=float):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)) \
            or not low <= value <= high:
        raise ApiError(400, f"Invalid value for '{key}': {value!r}. Use a number from {low:g} to {high:g}.",
                       param=key, code="invalid_value")
    return kind(value)


def sampling(body: dict, default_max: int) -> dict:
    """max_tokens / max_completion_tokens, temperature, top_p, stop, seed; n must be 1."""
    if _number(body, "n", 1, 128, 1, int) != 1:
        raise ApiError(400, "n must be 1 on the course server: it generates one choice per request. Send "
                       "several requests instead.", param="n", code="invalid_value")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number({key: limit}, key, 1, MAX_TOKENS_LIMIT, default_max, int)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                             or not all(isinstance(s, str) and s for s in stop)):
        raise ApiError(400, "stop must be a string or a list of up to 4 non-empty strings.", param="stop",
                       code="invalid_value")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ApiError(400, "seed must be an integer.", param="seed", code="invalid_value")
    return {"max_tokens": max_tokens, "temperature": _number(body, "temperature", 0, 2, 1.0),
            "top_p": _number(body, "top_p", 0, 1, 1.0) or 1e-6, "stop": stop or None, "seed": seed}


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


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
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": _text(m.get("content"))})
    return out


# --- the app ------------------------------------------------------------------------------------------
def create_app(workspace, api_key: str | None = None, mode: str = "cpu", max_length: int | None = None,
               on_shutdown=None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The FastAPI app serving ``workspace``; ``api_key`` makes every /v1 request need that bearer key.

    At shutdown the running job is paused (resumable later), then ``on_shutdown()`` runs.
    """
    store = Store(workspace)
    engine = Engine()
    manager = JobManager(store, mode=mode, max_length=max_length, base_for_training=engine.base_for_training)

    @asynccontextmanager
    async def lifespan(app):
        yield
        manager.shutdown()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="Course fine-tuning server (OpenAI-compatible)", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.store, app.state.manager, app.state.engine = store, manager, engine

    # --- errors and auth --------------------------------------------------------------------------
    def error_response(status: int, message: str, *, param=None, code=None, type="invalid_request_error"):
        # Never worth retrying: client mistakes stay mistakes, and a 5xx here is a bug, not an overload.
        return JSONResponse(shapes.error(message, type=type, param=param, code=code), status,
                            headers={"x-should-retry": "false"})

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        if exc.status_code in (404, 405):
            return error_response(404, f"Invalid URL ({request.method} {request.url.path})")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(request, exc):
        return error_response(500, f"The course server had an error while processing your request: "
                              f"{type(exc).__name__}: {exc}", type="server_error")

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer ") or not header[7:].strip():
                return error_response(401, "You didn't provide an API key. The course server was started with "
                                      "an API key (--api-key or COURSE_SERVER_KEY): pass it as api_key= to the "
                                      "client.", type="invalid_request_error")
            if not hmac.compare_digest(header[7:].strip().encode(), api_key.encode()):
                return error_response(401, "Incorrect API key provided. Pass the key that the course server was "
                                      "started with (--api-key or COURSE_SERVER_KEY).", code="invalid_api_key")
        return await call_next(request)

    @app.get("/health")
    def health():
        return {"status": "ok", "server": "course-local", "workspace": str(store.root)}

    # --- files ------------------------------------------------------------------------------------
    def get_file(file_id: str) -> dict:
        record = store.get("files", file_id)
        if record is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id", code="file_not_found")
        return record

    @app.post("/v1/files")
    async def upload(request: Request):
        too_large = ApiError(400, f"File is too large: the course server accepts files up to "
                             f"{max_upload_bytes / 2**20:g} MB.", param="file", code="file_too_large")
        if int(request.headers.get("content-length") or 0) > max_upload_bytes + 65_536:
            raise too_large
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception:  # noqa: BLE001 - not multipart, or broken
            raise ApiError(400, "Upload a file as multipart/form-data with the fields 'file' and 'purpose'.",
                           param="file") from None
        purpose, upload_file = form.get("purpose"), form.get("file")
        if not purpose:
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose",
                           code="missing_required_parameter")
        if purpose != "fine-tune":
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}. The course server stores training and "
                           "validation files only: use purpose='fine-tune'.", param="purpose", code="invalid_value")
        if upload_file is None or isinstance(upload_file, str):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        filename = clean_filename(upload_file.filename or "")
        if not filename.lower().endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Fine-Tuning API. Must be .jsonl", param="file",
                           code="invalid_file_format")
        data = await upload_file.read()
        if len(data) > max_upload_bytes:
            raise too_large
        if not data.strip():
            raise ApiError(400, "The file is empty. Write one JSON object per line.", param="file",
                           code="invalid_file_format")
        record = shapes.file_object(filename, len(data), purpose)
        store.save_data(record["id"], data)
        store.put("files", record["id"], record)
        return shapes.public(record)

    @app.get("/v1/files")
    def list_files(request: Request):
        q = request.query_params
        records = [r for r in store.all("files") if not q.get("purpose") or r["purpose"] == q["purpose"]]
        if q.get("order") == "asc":
            records.reverse()
        return shapes.page(records, after=q.get("after"), limit=limit_arg(request, 10_000), ids=True)

    @app.get("/v1/files/{file_id}")
    def retrieve_file(file_id: str):
        return shapes.public(get_file(file_id))

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str):
        get_file(file_id)
        store.delete("files", file_id)
        store.data_path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str):
        record = get_file(file_id)
        data = store.data_path(file_id).read_bytes()
        if record["purpose"] == "fine-tune-results":  # OpenAI serves result files base64-encoded
            return Response(b64(data), media_type="application/octet-stream")
        return Response(data, media_type="application/octet-stream")

    # --- fine-tuning jobs -------------------------------------------------------------------------
    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: JsonBody):
        return shapes.public(manager.create(body))

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request):
        wanted = {k[9:-1]: v for k, v in request.query_params.items() if k.startswith("metadata[") and k[-1] == "]"}
        records = [j for j in store.all("jobs")
                   if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        return shapes.page(records, after=request.query_params.get("after"), limit=limit_arg(request, 20),
                           ids=False)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve_job(job_id: str):
        return shapes.public(manager.get(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str):
        return shapes.public(manager.cancel(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/pause")
    def pause_job(job_id: str):
        return shapes.public(manager.pause(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/resume")
    def resume_job(job_id: str):
        return shapes.public(manager.resume(job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def list_events(job_id: str, request: Request):
        manager.get(job_id)
        events = list(reversed(store.events(job_id)))
        return shapes.page(events, after=request.query_params.get("after"), limit=limit_arg(request, 20), ids=False)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def list_checkpoints(job_id: str, request: Request):
        return shapes.page(manager.checkpoints(job_id), after=request.query_params.get("after"),
                           limit=limit_arg(request, 10), ids=True)

    # --- models -----------------------------------------------------------------------------------
    def find_model(name: str, need_files: bool = True) -> dict:
        """The model record for ``name`` (``_path`` absolute; None for the base names)."""
        if name in rules.base_names():
            legacy = name in rules.LEGACY_MODELS
            fmt = "legacy" if legacy else ("chat" if name in rules.BASE_MODELS else "any")
            return {**shapes.model_object(name, BASE_CREATED, "system"), "_path": None, "_format": fmt}
        record = store.get("models", name)
        if record is None:
            raise ApiError(404, f"The model `{name}` does not exist or you do not have access to it.", param="model",
                           code="model_not_found")
        path = store.abs(record["_path"])
        if need_files and not Path(path).exists():
            raise ApiError(404, f"The files of the model `{name}` are missing from the server's workspace ({path}).",
                           param="model", code="model_not_found")
        return {**record, "_path": path}

    @app.get("/v1/models")
    def list_models():
        tuned = [r for r in store.all("models") if not r.get("_checkpoint")]
        bases = [shapes.model_object(n, BASE_CREATED, "system") for n in rules.base_names()]
        return {"object": "list", "data": [shapes.public(r) for r in tuned] + bases}

    @app.get("/v1/models/{model:path}")
    def retrieve_model(model: str):
        return shapes.public(find_model(model, need_files=False))

    @app.delete("/v1/models/{model:path}")
    def delete_model(model: str):
        record = find_model(model, need_files=False)
        if record["_path"] is None or record.get("_checkpoint"):
            raise ApiError(400, f"{model} cannot be deleted: only fine-tuned models can (not base models or "
                           "checkpoints).", param="model", code="model_not_deletable")
        store.delete("models", model)
        engine.forget(record["_path"])
        delete_model_files(record)
        return {"id": model, "object": "model", "deleted": True}

    @app.post("/v1/load_lora_adapter")
    def load_lora_adapter(body: JsonBody):
        """Serve a LoRA adapter saved on this machine: ``{"lora_name": ..., "lora_path": ...}`` (vLLM's route)."""
        record, replaced = import_adapter(store, body.get("lora_name"), body.get("lora_path"))
        if replaced is not None:  # same name, new weights: drop the loaded copy of the old ones
            engine.forget(store.abs(replaced["_path"]))
        return shapes.public(record)

    # --- inference --------------------------------------------------------------------------------
    def usable(body: dict, endpoint: str) -> dict:
        name = body.get("model")
        if not name or not isinstance(name, str):
            raise ApiError(400, "Missing required parameter: 'model'.", param="model",
                           code="missing_required_parameter")
        record = find_model(name)
        fmt = record.get("_format") or "chat"
        if endpoint == "completions" and fmt == "chat":
            raise ApiError(404, "This is a chat model and not supported in the v1/completions endpoint. Did you "
                           "mean to use v1/chat/completions?", param="model")
        if endpoint == "chat" and fmt == "legacy":
            raise ApiError(404, "This is not a chat model and thus not supported in the v1/chat/completions "
                           "endpoint. Did you mean to use v1/completions?", param="model")
        return record

    def sse(events):
        for item in events:
            yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    def stream_chunks(record, name, text, params, include_usage, kind):
        """Chat chunks (``kind='chat'``) or completion chunks for a streamed reply."""
        cid = shapes.new_id("chatcmpl-" if kind == "chat" else "cmpl-")
        created = int(time.time())

        def chunk(piece=None, finish=None, first=False):
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if first else ({} if piece is None else {"content": piece})
                return shapes.chat_chunk(cid, created, name, delta, finish)
            return {"id": cid, "object": "text_completion", "created": created, "model": name,
                    "choices": [{"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}]}

        try:
            if kind == "chat":
                yield chunk(first=True)
            for item in engine.stream(record["_path"], text, strip=(kind == "chat"), **params):
                if isinstance(item, Generated):
                    yield chunk(None, item.finish_reason)
                    if include_usage:
                        usage = shapes.usage(item.prompt_tokens, item.completion_tokens)
                        if kind == "chat":
                            yield shapes.chat_chunk(cid, created, name, None, usage_=usage)
                        else:
                            yield {"id": cid, "object": "text_completion", "created": created, "model": name,
                                   "choices": [], "usage": usage}
                else:
                    yield chunk(item)
        except Exception as exc:  # noqa: BLE001 - reported inside the stream, as OpenAI does
            yield shapes.error(f"The course server failed while generating: {exc}", type="server_error")

    def reject_unsupported(body: dict, names) -> None:
        for key in names:
            if body.get(key):
                raise ApiError(400, f"'{key}' is not supported by the course server.", param=key,
                               code="unsupported_parameter")

    @app.post("/v1/chat/completions")
    def chat_completions(body: JsonBody):
        record = usable(body, "chat")
        messages = chat_messages(body)
        reject_unsupported(body, (*UNSUPPORTED_CHAT, "logprobs"))
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
            raise ApiError(400, "response_format other than text is not supported by the course server.",
                           param="response_format", code="unsupported_parameter")
        params = sampling(body, default_max=256)
        text = engine.prompt_text(messages)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse(stream_chunks(record, body["model"], text, params, include, "chat")),
                                     media_type="text/event-stream")
        out = engine.generate(record["_path"], text, **params)
        return shapes.chat_completion(body["model"], out.text, out.finish_reason, out.prompt_tokens,
                                      out.completion_tokens)

    @app.post("/v1/completions")
    def completions(body: JsonBody):
        record = usable(body, "completions")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be one string on the course server.", param="prompt",
                           code="invalid_value")
        reject_unsupported(body, ("suffix", "logprobs"))
        if _number(body, "best_of", 1, 20, 1, int) != 1:
            raise ApiError(400, "best_of must be 1 on the course server.", param="best_of", code="invalid_value")
        params = sampling(body, default_max=16)  # the legacy endpoint's default, as on OpenAI
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse(stream_chunks(record, body["model"], prompt, params, include, "text")),
                                     media_type="text/event-stream")
        out = engine.generate(record["_path"], prompt, strip=False, **params)
        text = (prompt + out.text) if body.get("echo") else out.text
        return shapes.text_completion(body["model"], text, out.finish_reason, out.prompt_tokens,
                                      out.completion_tokens)

    return app
