"""The HTTP routes of the course server (FastAPI): files, fine-tuning jobs, models, and inference.

Every error is OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status
codes; a client's mistake is never a 5xx (request checks: :mod:`.params`), and every error except a rate
limit carries ``x-should-retry: false`` so the SDK does not retry it (a retried ``jobs.create`` could start
a second job). An unexpected error is a 500 in the same envelope that keeps the connection open.

Who may call: with ``api_key`` every ``/v1`` request needs ``Authorization: Bearer KEY``; in workshop mode
(``students``) each key is one tenant (:mod:`.tenants`), with per-student limits (:mod:`.limits`), and the
instructor also has ``GET /v1/workshop/overview`` (:mod:`.workshop`). ``GET /health`` is open (the notebook
helper waits on it).

One route is not OpenAI's: ``POST /v1/load_lora_adapter`` with ``{"lora_name", "lora_path"}`` serves a LoRA
adapter saved on this machine (trained in a notebook rather than by a job) under a model name. It is the
route vLLM offers for the same purpose; the ``openai`` SDK calls it with ``client.post``. In workshop mode
only the instructor may use it (it reads folders on the server's machine).
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpers.server import params, rules, shapes, workshop
from helpers.server.inference import Engine, Generated
from helpers.server.jobs import JobManager, delete_model_files, import_adapter
from helpers.server.limits import Limits, RateLimiter
from helpers.server.params import json_body, limit_arg
from helpers.server.scheduler import Scheduler
from helpers.server.shapes import ApiError
from helpers.server.store import b64
from helpers.server.tenants import Scope, Tenants

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # OpenAI allows far more; course files are small
BASE_CREATED = 1_727_000_000          # a fixed "created" time for the base model names
log = logging.getLogger("helpers.server")

JsonBody = Annotated[dict, Depends(json_body)]


def scope_of(request: Request) -> Scope:
    """What the caller may see, set by the app's auth middleware."""
    return request.state.scope


Caller = Annotated[Scope, Depends(scope_of)]


def error_response(status: int, message: str, *, param=None, code=None, type="invalid_request_error",
                   headers: dict | None = None) -> JSONResponse:
    # Never worth retrying unless said otherwise: client mistakes stay mistakes, and a 5xx here is a bug.
    return JSONResponse(shapes.error(message, type=type, param=param, code=code), status,
                        headers={"x-should-retry": "false", **(headers or {})})


class KeepConnection:
    """ASGI layer: an unexpected exception becomes a 500 in OpenAI's envelope, and the keep-alive connection
    stays usable. (Starlette's own last-resort handler re-raises after answering, and uvicorn then drops
    the connection, so the client's next request would fail too.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - answered below, and logged
            log.exception("error while answering %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(500, f"The course server had an error while processing your request: "
                                 f"{type(exc).__name__}: {exc}", type="server_error")(scope, receive, send)


# --- the app ------------------------------------------------------------------------------------------
def create_app(workspace, api_key: str | None = None, mode: str = "cpu", max_length: int | None = None,
               on_shutdown=None, max_upload_bytes: int = MAX_UPLOAD_BYTES, students=None,
               limits: Limits | None = None, engine=None, train: bool = True) -> FastAPI:
    """The FastAPI app serving ``workspace``; ``api_key`` makes every /v1 request need that bearer key.

    ``students`` (from :func:`helpers.server.tenants.read_keys`) switches on workshop mode, with ``limits``
    for each student (default :class:`Limits`). ``engine`` replaces the inference engine (tests pass a
    stand-in that does not generate); ``train=False`` validates and queues jobs but never trains them.
    At shutdown the running job is paused (resumable later), then ``on_shutdown()`` runs.
    """
    engine = engine or Engine()
    scheduler = Scheduler(train=train)
    limits = limits or Limits()

    def make_manager(store, name, limited):
        return JobManager(store, mode=mode, max_length=max_length, base_for_training=engine.base_for_training,
                          scheduler=scheduler, tenant=name, max_active_jobs=limits.max_active_jobs if limited else None)

    tenants = Tenants(workspace, students, make_manager)
    limiter = RateLimiter(limits.requests_per_minute) if tenants.workshop else None

    @asynccontextmanager
    async def lifespan(app):
        yield
        scheduler.shutdown()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="Course fine-tuning server (OpenAI-compatible)", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.tenants, app.state.scheduler, app.state.engine = tenants, scheduler, engine

    # --- errors and auth --------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type,
                              headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):  # the routes read their own input, so this is a safety net
        return error_response(400, f"Invalid request: {exc.errors()[0].get('msg', 'bad input') if exc.errors() else exc}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        if exc.status_code in (404, 405):
            return error_response(404, f"Invalid URL ({request.method} {request.url.path})")
        return error_response(exc.status_code, str(exc.detail))

    def caller(request: Request):
        """The tenant this request acts for, or an error response (401, 429)."""
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if tenants.workshop:
            if not key:
                return error_response(401, "You didn't provide an API key. This course server runs a workshop: "
                                      "pass the key your instructor gave you as api_key= to the client.")
            tenant = tenants.identify(key)
            if tenant is None:
                return error_response(401, "Incorrect API key provided. Use the key your instructor gave you "
                                      "(ask them if you lost it).", code="invalid_api_key")
            if not tenant.instructor:
                try:
                    limiter.hit(tenant.name)
                except ApiError as exc:
                    return error_response(exc.status, exc.message, code=exc.code, type=exc.type, headers=exc.headers)
            return tenant
        if api_key:
            if not key:
                return error_response(401, "You didn't provide an API key. The course server was started with "
                                      "an API key (--api-key or COURSE_SERVER_KEY): pass it as api_key= to the "
                                      "client.")
            if not hmac.compare_digest(key.encode(), api_key.encode()):
                return error_response(401, "Incorrect API key provided. Pass the key that the course server was "
                                      "started with (--api-key or COURSE_SERVER_KEY).", code="invalid_api_key")
        return tenants.single

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if request.url.path.startswith("/v1"):
            who = caller(request)
            if isinstance(who, Response):
                return who
            request.state.scope = tenants.scope(who)
        return await call_next(request)

    app.add_middleware(KeepConnection)

    @app.get("/health")
    def health():
        return {"status": "ok", "server": "course-local", "workspace": str(Path(workspace).resolve()),
                "workshop": tenants.workshop}

    # --- files ------------------------------------------------------------------------------------
    def get_file(scope: Scope, file_id: str):
        tenant, record = scope.find("files", file_id)
        if record is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id", code="file_not_found")
        return tenant, record

    @app.post("/v1/files")
    async def upload(request: Request, scope: Caller):
        student = tenants.workshop and not scope.own.instructor
        most = min(max_upload_bytes, limits.max_upload_bytes) if student else max_upload_bytes
        too_large = ApiError(400, f"File is too large: the course server accepts files up to {most / 2**20:g} MB.",
                             param="file", code="file_too_large")
        length = request.headers.get("content-length") or "0"
        if length.isascii() and length.isdigit() and int(length) > most + 65_536:
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
            raise ApiError(400, f"Invalid value for 'purpose': {str(purpose)[:60]!r}. The course server stores "
                           "training and validation files only: use purpose='fine-tune'.", param="purpose",
                           code="invalid_value")
        if upload_file is None or isinstance(upload_file, str):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        filename = params.clean_filename(upload_file.filename or "")
        if not filename.lower().endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Fine-Tuning API. Must be .jsonl", param="file",
                           code="invalid_file_format")
        data = await upload_file.read()
        if len(data) > most:
            raise too_large
        if not data.strip():
            raise ApiError(400, "The file is empty. Write one JSON object per line.", param="file",
                           code="invalid_file_format")
        store = scope.own.store
        if student:
            used = sum(f.get("bytes", 0) for f in store.all("files") if f.get("purpose") == "fine-tune")
            if used + len(data) > limits.max_storage_bytes:
                raise ApiError(400, f"Your files would take {(used + len(data)) / 2**20:.1f} MB, above the "
                               f"{limits.max_storage_bytes / 2**20:g} MB each student may keep on this server. "
                               "Delete files you no longer need (client.files.delete(file_id)) and upload again.",
                               param="file", code="storage_limit_exceeded")
        record = shapes.file_object(filename, len(data), purpose)
        store.save_data(record["id"], data)
        store.put("files", record["id"], record)
        return shapes.public(record)

    @app.get("/v1/files")
    def list_files(request: Request, scope: Caller):
        q = request.query_params
        records = [r for r in scope.all("files") if not q.get("purpose") or r["purpose"] == q["purpose"]]
        if params.order_arg(request) == "asc":
            records.reverse()
        return shapes.page(records, after=q.get("after"), limit=limit_arg(request, 10_000), ids=True)

    @app.get("/v1/files/{file_id}")
    def retrieve_file(file_id: str, scope: Caller):
        return shapes.public(get_file(scope, file_id)[1])

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, scope: Caller):
        tenant, _ = get_file(scope, file_id)
        tenant.store.delete("files", file_id)
        tenant.store.data_path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str, scope: Caller):
        tenant, record = get_file(scope, file_id)
        data = tenant.store.data_path(file_id).read_bytes()
        if record["purpose"] == "fine-tune-results":  # OpenAI serves result files base64-encoded
            return Response(b64(data), media_type="application/octet-stream")
        return Response(data, media_type="application/octet-stream")

    # --- fine-tuning jobs -------------------------------------------------------------------------
    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: JsonBody, scope: Caller):
        return shapes.public(scope.own.manager.create(body))

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, scope: Caller):
        wanted = {k[9:-1]: v for k, v in request.query_params.items() if k.startswith("metadata[") and k[-1] == "]"}
        records = [j for j in scope.all("jobs")
                   if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        return shapes.page(records, after=request.query_params.get("after"), limit=limit_arg(request, 20),
                           ids=False)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve_job(job_id: str, scope: Caller):
        return shapes.public(scope.manager_of(job_id).get(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, scope: Caller):
        return shapes.public(scope.manager_of(job_id).cancel(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/pause")
    def pause_job(job_id: str, scope: Caller):
        return shapes.public(scope.manager_of(job_id).pause(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/resume")
    def resume_job(job_id: str, scope: Caller):
        return shapes.public(scope.manager_of(job_id).resume(job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def list_events(job_id: str, request: Request, scope: Caller):
        manager = scope.manager_of(job_id)
        manager.get(job_id)
        events = list(reversed(manager.store.events(job_id)))
        return shapes.page(events, after=request.query_params.get("after"), limit=limit_arg(request, 20), ids=False)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def list_checkpoints(job_id: str, request: Request, scope: Caller):
        return shapes.page(scope.manager_of(job_id).checkpoints(job_id), after=request.query_params.get("after"),
                           limit=limit_arg(request, 10), ids=True)

    # --- models -----------------------------------------------------------------------------------
    def find_model(scope: Scope, name: str, need_files: bool = True) -> dict:
        """The model record for ``name`` (``_path`` absolute; None for the base names; ``_tenant`` its owner)."""
        if name in rules.base_names():
            legacy = name in rules.LEGACY_MODELS
            fmt = "legacy" if legacy else ("chat" if name in rules.BASE_MODELS else "any")
            return {**shapes.model_object(name, BASE_CREATED, "system"), "_path": None, "_format": fmt}
        tenant, record = scope.find("models", name)
        if record is None:
            raise ApiError(404, f"The model `{name}` does not exist or you do not have access to it.", param="model",
                           code="model_not_found")
        path = tenant.store.abs(record["_path"])
        if need_files and not Path(path).exists():
            raise ApiError(404, f"The files of the model `{name}` are missing from the server's workspace.",
                           param="model", code="model_not_found")
        return {**record, "_path": path, "_tenant": tenant}

    @app.get("/v1/models")
    def list_models(scope: Caller):
        tuned = [r for r in scope.all("models") if not r.get("_checkpoint")]
        bases = [shapes.model_object(n, BASE_CREATED, "system") for n in rules.base_names()]
        return {"object": "list", "data": [shapes.public(r) for r in tuned] + bases}

    @app.get("/v1/models/{model:path}")
    def retrieve_model(model: str, scope: Caller):
        return shapes.public(find_model(scope, model, need_files=False))

    @app.delete("/v1/models/{model:path}")
    def delete_model(model: str, scope: Caller):
        record = find_model(scope, model, need_files=False)
        if record["_path"] is None or record.get("_checkpoint"):
            raise ApiError(400, f"{model} cannot be deleted: only fine-tuned models can (not base models or "
                           "checkpoints).", param="model", code="model_not_deletable")
        record["_tenant"].store.delete("models", model)
        engine.forget(record["_path"])
        delete_model_files(record)
        return {"id": model, "object": "model", "deleted": True}

    @app.post("/v1/load_lora_adapter")
    def load_lora_adapter(body: JsonBody, scope: Caller):
        """Serve a LoRA adapter saved on this machine: ``{"lora_name": ..., "lora_path": ...}`` (vLLM's route)."""
        if tenants.workshop and not scope.own.instructor:
            raise ApiError(403, "In workshop mode only the instructor may load adapters from the server's disk. "
                           "Train a model with a fine-tuning job instead, or ask your instructor.",
                           code="insufficient_permissions")
        store = scope.own.store
        record, replaced = import_adapter(store, body.get("lora_name"), body.get("lora_path"))
        if replaced is not None:  # same name, new weights: drop the loaded copy of the old ones
            engine.forget(store.abs(replaced["_path"]))
        return shapes.public(record)

    # --- the workshop -----------------------------------------------------------------------------
    @app.get("/v1/workshop/overview")
    def overview(request: Request, scope: Caller):
        if not tenants.workshop:
            raise ApiError(404, f"Invalid URL (GET {request.url.path}): the overview exists in workshop mode only "
                           "(python -m helpers.server --keys students.csv).")
        if not scope.own.instructor:
            raise ApiError(403, "Only the instructor's key can read the workshop overview.",
                           code="insufficient_permissions")
        return workshop.overview(tenants, scheduler, limiter, limits)

    # --- inference --------------------------------------------------------------------------------
    def usable(scope: Scope, body: dict, endpoint: str) -> dict:
        name = body.get("model")
        if not name or not isinstance(name, str):
            raise ApiError(400, "Missing required parameter: 'model'.", param="model",
                           code="missing_required_parameter")
        record = find_model(scope, name)
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

    def stream_chunks(record, name, text, settings, include_usage, kind):
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
            for item in engine.stream(record["_path"], text, strip=(kind == "chat"), **settings):
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

    def chat_text(messages: list[dict]) -> str:
        from jinja2 import TemplateError
        try:
            return engine.prompt_text(messages)
        except TemplateError as exc:
            raise ApiError(400, f"These messages do not fit the model's chat template: {exc}", param="messages",
                           code="invalid_value") from None

    @app.post("/v1/chat/completions")
    def chat_completions(body: JsonBody, scope: Caller):
        record = usable(scope, body, "chat")
        messages = params.chat_messages(body)
        params.reject_unsupported(body, (*params.UNSUPPORTED_CHAT, "logprobs"))
        fmt = params.obj(body, "response_format")
        if fmt.get("type") not in (None, "text"):
            raise ApiError(400, "response_format other than text is not supported by the course server.",
                           param="response_format", code="unsupported_parameter")
        settings = params.sampling(body, default_max=256)
        stream, include = params.stream_settings(body)
        text = chat_text(messages)
        settings = params.check_context(engine.count_tokens(text), settings, engine.context_length, "chat")
        if stream:
            return StreamingResponse(sse(stream_chunks(record, body["model"], text, settings, include, "chat")),
                                     media_type="text/event-stream")
        out = engine.generate(record["_path"], text, **settings)
        return shapes.chat_completion(body["model"], out.text, out.finish_reason, out.prompt_tokens,
                                      out.completion_tokens)

    @app.post("/v1/completions")
    def completions(body: JsonBody, scope: Caller):
        record = usable(scope, body, "completions")
        prompt = params.completion_prompt(body)
        params.reject_unsupported(body, ("suffix", "logprobs"))
        if params.number(body, "best_of", 1, 20, 1, int) != 1:
            raise ApiError(400, "best_of must be 1 on the course server.", param="best_of", code="invalid_value")
        settings = params.sampling(body, default_max=16)  # the legacy endpoint's default, as on OpenAI
        stream, include = params.stream_settings(body)
        echo = params.flag(body, "echo")
        settings = params.check_context(engine.count_tokens(prompt), settings, engine.context_length, "text")
        if stream:
            return StreamingResponse(sse(stream_chunks(record, body["model"], prompt, settings, include, "text")),
                                     media_type="text/event-stream")
        out = engine.generate(record["_path"], prompt, strip=False, **settings)
        text = (prompt + out.text) if echo else out.text
        return shapes.text_completion(body["model"], text, out.finish_reason, out.prompt_tokens,
                                      out.completion_tokens)

    return app
