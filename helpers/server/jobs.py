"""Fine-tuning jobs: requests, records, training one job, events and checkpoints, recovery after a restart.

Life of a job (as on OpenAI): ``validating_files`` -> ``queued`` -> ``running`` -> ``succeeded`` /
``failed`` / ``cancelled``. A small validation thread checks the files (so a job is checked even while
another one trains); ONE worker thread trains the queued jobs with :func:`helpers.sft.train`. Both threads
belong to the :class:`~helpers.server.scheduler.Scheduler`, which all the managers of a server share (one
manager per tenant in workshop mode) and which picks the next job fairly between tenants.
Cancel and pause are flags that the trainer reads after each optimizer step; a paused job (status
``paused``, as OpenAI reports it; the SDK's type does not list it yet) is put back in the queue by
``resume`` and continues from its pause checkpoint. What is accepted and the "auto" rules: :mod:`.rules`.

After a crash or ``kill -9``: ``validating_files`` and ``queued`` jobs are queued again, a ``paused`` job
stays resumable, and a job that was ``running`` is marked ``failed`` with the code ``server_restarted``
(its checkpoints stay listed and usable). A clean shutdown (Ctrl-C, SIGTERM) pauses the running job instead.
"""
from __future__ import annotations

import math
import re
import secrets
import shutil
import time
from pathlib import Path

from helpers.environment import release_memory
from helpers.server import shapes
from helpers.server.rules import (
    LOW_MEMORY,
    MAX_LENGTH,
    base_names,
    check_files,
    check_metadata,
    parse_hyperparameters,
    train_config,
)
from helpers.server.scheduler import Scheduler
from helpers.server.shapes import ApiError
from helpers.server.store import Store, now

ACTIVE = ("validating_files", "queued", "running")
RESTARTED = ("The course server stopped while this job was running (for example it was killed). Its "
             "checkpoints are kept; create the job again to train from the start.")


# --- the manager --------------------------------------------------------------------------------------
class JobManager:
    """Creates one tenant's jobs, trains them when the scheduler says so, and answers cancel / pause / resume.

    ``scheduler``: the queue shared with the other tenants' managers (a new one when None). ``tenant``: the
    name the scheduler is fair between. ``max_active_jobs``: how many of this tenant's jobs may be validating,
    queued or running at once (None: no limit); one more is refused with a 429.
    """

    def __init__(self, store: Store, mode: str = "cpu", max_length: int | None = None, base_for_training=None,
                 scheduler: Scheduler | None = None, tenant: str = "", max_active_jobs: int | None = None):
        self.store = store
        self.base_for_training = base_for_training  # () -> a base model to wrap with LoRA; None: load one
        self.mode = mode
        self.max_length = max_length or MAX_LENGTH.get(mode, 256)
        self.flags: dict[str, str] = {}  # job id -> "cancel" | "pause", read by the trainer
        self.scheduler = scheduler or Scheduler()
        self.tenant, self.max_active_jobs = tenant, max_active_jobs
        self.recover()

    # --- records and events -----------------------------------------------------------------------
    def get(self, job_id: str) -> dict:
        job = self.store.get("jobs", job_id)
        if job is None:
            raise ApiError(404, f"Could not find fine-tuning job {job_id}.", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return job

    def update(self, job_id: str, **changes) -> dict:
        with self.store.lock:
            job = self.store.get("jobs", job_id)
            job.update(changes)
            return self.store.put("jobs", job_id, job)

    def log(self, job_id: str, message: str, **kw) -> None:
        self.store.append_event(job_id, shapes.event(message, **kw))

    # --- API actions ------------------------------------------------------------------------------
    def active_jobs(self) -> int:
        return sum(job["status"] in ACTIVE for job in self.store.all("jobs"))

    def create(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        if self.max_active_jobs is not None and self.active_jobs() >= self.max_active_jobs:
            raise ApiError(429, f"You already have {self.max_active_jobs} fine-tuning jobs validating, queued or "
                           "running, the most this server allows per person. Wait until one finishes, or cancel "
                           "one (client.fine_tuning.jobs.cancel(job_id)), then create this job again.",
                           code="too_many_active_jobs")
        model = body.get("model")
        if not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model",
                           code="missing_required_parameter")
        if not isinstance(model, str) or model not in base_names():
            hint = " Fine-tuning a fine-tuned model again is not supported on the course server." \
                if isinstance(model, str) and model.startswith("ft:") else ""
            raise ApiError(400, f"Model {model!r} is not available for fine-tuning or does not exist.{hint} Use one "
                           f"of: {', '.join(base_names())}.", param="model", code="model_not_available")
        files = {}
        for key in ("training_file", "validation_file"):
            file_id = body.get(key)
            if file_id is None:
                if key == "training_file":
                    raise ApiError(400, "Missing required parameter: 'training_file'.", param=key,
                                   code="missing_required_parameter")
                continue
            record = self.store.get("files", file_id) if isinstance(file_id, str) else None
            if record is None:
                raise ApiError(400, f"invalid {key}: {file_id!r} (no such file; upload it with "
                               "client.files.create first).", param=key, code="invalid_file_id")
            if record["purpose"] != "fine-tune":
                raise ApiError(400, f"File {file_id} has purpose {record['purpose']!r}; fine-tuning needs a file "
                               "uploaded with purpose='fine-tune'.", param=key, code="invalid_file_purpose")
            files[key] = file_id
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", suffix)):
            raise ApiError(400, "suffix must be 1 to 64 characters: letters, digits, '.', '_' or '-'.",
                           param="suffix", code="invalid_value")
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**31 - 1:
            raise ApiError(400, "seed must be an integer from 0 to 2147483647.", param="seed", code="invalid_value")
        hp = parse_hyperparameters(body)
        job = shapes.job_object(model=model, training_file=files["training_file"],
                                validation_file=files.get("validation_file"), hyperparameters=hp, suffix=suffix,
                                seed=seed, metadata=check_metadata(body.get("metadata")))
        job["_requested"] = hp
        self.store.put("jobs", job["id"], job)
        self.log(job["id"], f"Created fine-tuning job: {job['id']}")
        if body.get("integrations"):
            self.log(job["id"], "Integrations (e.g. Weights & Biases) are ignored by the course server.",
                     level="warn")
        self.scheduler.validate(self, job["id"])
        return job

    # Each action checks the status and changes it under the store's lock, so it cannot interleave with
    # the worker threads' own changes (e.g. a queued job starting to run while it is being cancelled).
    def cancel(self, job_id: str) -> dict:
        with self.store.lock:
            job = self.get(job_id)
            if job["status"] not in (*ACTIVE, "paused"):
                raise ApiError(409, f"Job {job_id} is already {job['status']} and cannot be cancelled.",
                               param="fine_tuning_job_id", code="job_not_cancellable")
            if job["status"] == "running":
                self.flags[job_id] = "cancel"  # the trainer stops before its next step
                return job
            self.log(job_id, "Fine-tuning job cancelled")
            return self.update(job_id, status="cancelled", finished_at=now(), estimated_finish=None)

    def pause(self, job_id: str) -> dict:
        with self.store.lock:
            job = self.get(job_id)
            if job["status"] == "running":
                self.flags[job_id] = "pause"  # the trainer saves a checkpoint and stops before its next step
                return job
            if job["status"] == "queued":
                self.log(job_id, "Fine-tuning job paused")
                return self.update(job_id, status="paused")
        raise ApiError(409, f"Job {job_id} is {job['status']}; only a queued or running job can be paused.",
                       param="fine_tuning_job_id", code="job_not_pausable")

    def resume(self, job_id: str) -> dict:
        with self.store.lock:
            job = self.get(job_id)
            if job["status"] != "paused":
                raise ApiError(409, f"Job {job_id} is {job['status']}; only a paused job can be resumed.",
                               param="fine_tuning_job_id", code="job_not_paused")
            if self.max_active_jobs is not None and self.active_jobs() >= self.max_active_jobs:
                raise ApiError(429, f"You already have {self.max_active_jobs} fine-tuning jobs validating, queued "
                               "or running, the most this server allows per person. Resume this job when one of "
                               "them has finished.", code="too_many_active_jobs")
            self.log(job_id, "Fine-tuning job resumed")
            job = self.update(job_id, status="queued")
        self.scheduler.enqueue(self, job_id)
        return job

    # --- restart and shutdown -----------------------------------------------------------------------
    def recover(self) -> None:
        """Put back what a previous server process left unfinished (see the module docstring)."""
        for job in reversed(self.store.all("jobs")):  # oldest first, so the queue keeps its order
            if job["status"] == "validating_files":
                self.scheduler.validate(self, job["id"])
            elif job["status"] == "queued":
                self.scheduler.enqueue(self, job["id"])
            elif job["status"] == "running":
                self.log(job["id"], f"Fine-tuning job failed: {RESTARTED}", level="error")
                self.update(job["id"], status="failed", finished_at=now(), estimated_finish=None,
                            error=shapes.job_error("server_restarted", RESTARTED))

    def stop(self, job_id: str) -> None:
        """Ask the running job to pause at its next step (a clean shutdown; it resumes after the next start)."""
        self.flags[job_id] = "pause"

    # --- called by the scheduler's threads -----------------------------------------------------------
    def validate(self, job_id: str) -> None:
        try:
            self._validate(job_id)
        except Exception as exc:  # noqa: BLE001 - a broken job must not stop the thread
            self._fail(job_id, "validation_error", f"The files could not be checked: {exc}")

    def is_queued(self, job_id: str) -> bool:
        job = self.store.get("jobs", job_id)
        return job is not None and job["status"] == "queued"

    def run(self, job_id: str) -> None:
        """Train a queued job to its end (nothing when it is no longer queued)."""
        with self.store.lock:
            job = self.store.get("jobs", job_id)
            if job is None or job["status"] != "queued":
                return  # cancelled or paused while it waited
            job = self.update(job_id, status="running")
        try:
            self._train(job)
        except Exception as exc:  # noqa: BLE001 - the job fails, the thread carries on
            self._fail(job_id, "training_error", f"Training stopped with an error: {exc}")
        finally:
            self.flags.pop(job_id, None)
            release_memory()

    def _validate(self, job_id: str) -> None:
        job = self.store.get("jobs", job_id)
        if job is None or job["status"] != "validating_files":
            return
        names = " and ".join(f for f in (job["training_file"], job["validation_file"]) if f)
        self.log(job_id, f"Validating training file: {names}")
        paths = {}
        for key in ("training_file", "validation_file"):
            if job[key]:
                if self.store.get("files", job[key]) is None:
                    return self._fail(job_id, "invalid_file_id", f"The file {job[key]} was deleted before the job "
                                      "could use it.", key)
                paths[key] = self.store.data_path(job[key])
        fmt, warnings, error = check_files(paths["training_file"], paths.get("validation_file"), job["model"])
        for line in warnings[:5]:
            self.log(job_id, f"Warning: {line}", level="warn")
        if len(warnings) > 5:
            self.log(job_id, f"... and {len(warnings) - 5} more warnings", level="warn")
        if error:
            return self._fail(job_id, error["code"], error["message"], error["param"])
        with self.store.lock:
            if self.store.get("jobs", job_id)["status"] != "validating_files":
                return  # cancelled meanwhile
            self.update(job_id, status="queued", _format=fmt)
        self.log(job_id, "Files validated, moving job to queued state")
        self.scheduler.enqueue(self, job_id)

    def _fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        self.log(job_id, f"Fine-tuning job failed: {message}", level="error")
        self.update(job_id, status="failed", finished_at=now(), estimated_finish=None,
                    error=shapes.job_error(code, message, param))

    # --- training ----------------------------------------------------------------------------------------
    def _train(self, job: dict) -> None:
        from peft import LoraConfig

        from helpers import sft
        from helpers.formats import read_jsonl
        from helpers.model import load_base_model, load_tokenizer

        job_id = job["id"]
        train_rows = read_jsonl(self.store.data_path(job["training_file"]))
        valid_rows = read_jsonl(self.store.data_path(job["validation_file"])) if job["validation_file"] else None
        if job.get("_config"):  # resuming a paused job: the very same settings
            settings, hp = job["_config"], job["hyperparameters"]
        else:
            hp, settings = train_config(job.get("_requested", {}), len(train_rows), job["seed"], self.max_length,
                                        low_memory=LOW_MEMORY.get(self.mode, True))
        name = job.get("_model_name") or shapes.fine_tuned_name(job["model"], job.get("user_provided_suffix"))
        job = self.update(job_id, hyperparameters=hp, _config=settings, _model_name=name,
                          method={"type": "supervised", "supervised": {"hyperparameters": dict(hp)}})
        self.log(job_id, "Fine-tuning job started")
        state = {"started": time.monotonic(), "first_step": None, "last": {}}
        model = self.base_for_training() if self.base_for_training else load_base_model()[0]
        args = sft.course_config(self.store.adapters_dir(job_id), disable_tqdm=True, **settings["sft"])
        result = sft.train(model, load_tokenizer(), train_rows, valid_rows, args,
                           LoraConfig(task_type="CAUSAL_LM", **settings["lora"]), eval_every=settings["eval_every"],
                           on_event=lambda event: self._on_event(job_id, name, event, state),
                           should_stop=lambda: self.flags.get(job_id),
                           resume_from=self.store.abs(job.get("_resume_from")))
        if result.status == "paused":
            step = int(result.metrics["step"].max()) if len(result.metrics) else 0
            self.log(job_id, f"Fine-tuning job paused at step {step}")
            self.update(job_id, status="paused", _resume_from=self.store.rel(result.resume_from),
                        estimated_finish=None)
            return
        if result.status == "cancelled":
            self.log(job_id, "Fine-tuning job cancelled")
            self.update(job_id, status="cancelled", finished_at=now(), estimated_finish=None)
            return
        self._prune_checkpoints(job_id)
        result_file = self._result_file(job_id, result.metrics)
        self.store.put("models", name, {**shapes.model_object(name, now(), shapes.ORGANIZATION_ID),
                                        "_path": self.store.rel(result.final_dir), "_job": job_id, "_format": job.get("_format")})
        self.log(job_id, f"New fine-tuned model created: {name}")
        self.update(job_id, status="succeeded", fine_tuned_model=name, finished_at=now(), estimated_finish=None,
                    trained_tokens=int(result.trained_tokens), result_files=[result_file])
        self.log(job_id, "The job has successfully completed",
                 data={"train_seconds": round(time.monotonic() - state["started"], 3)})

    def _on_event(self, job_id: str, name: str, event: dict, state: dict) -> None:
        """Turn the trainer's events into OpenAI-style job events, checkpoints and progress."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in event.items()}
        kind = clean.pop("type")
        if kind == "metrics":
            state["last"] = clean
            step, total = clean["step"], clean["total_steps"]
            state["first_step"] = state["first_step"] or (step, time.monotonic())
            first, t0 = state["first_step"]
            rate = (time.monotonic() - t0) / max(1, step - first) if step > first else None
            self.update(job_id, estimated_finish=int(time.time() + rate * (total - step)) if rate else None)
            text = f"Step {step}/{total}: training loss={clean['train_loss']:.4f}"
            if clean.get("valid_loss") is not None:
                text += f", validation loss={clean['valid_loss']:.4f}"
            self.log(job_id, text, type="metrics", data=clean)
        elif kind == "epoch_end":
            state["last"] = {**state["last"], **clean}
            if clean.get("full_valid_loss") is not None:
                data = {**state["last"]}
                self.log(job_id, f"Step {clean['step']}/{data.get('total_steps', '?')}: epoch {clean['epoch']} done, "
                         f"full validation loss={clean['full_valid_loss']:.4f}, full validation mean token "
                         f"accuracy={clean['full_valid_mean_token_accuracy']:.3f}", type="metrics", data=data)
        elif kind == "checkpoint":
            step = int(clean["step"])
            model_name = f"{name}:ckpt-step-{step}"
            point = shapes.checkpoint(job_id, model_name, step, {**state["last"], "step": step})
            point["_path"] = self.store.rel(clean["path"])
            with self.store.lock:
                job = self.get(job_id)
                self.update(job_id, _checkpoints=[*job.get("_checkpoints", []), point])
            self.store.put("models", model_name, {**shapes.model_object(model_name, now(), shapes.ORGANIZATION_ID),
                                                  "_path": self.store.rel(clean["path"]), "_job": job_id,
                                                  "_format": job.get("_format"), "_checkpoint": True})
            self._prune_checkpoints(job_id)
            self.log(job_id, f"Checkpoint created at step {step} with Snapshot ID: {model_name}")

    def _prune_checkpoints(self, job_id: str) -> None:
        """Forget checkpoints whose folders the trainer removed (it keeps the last 3 epochs)."""
        with self.store.lock:
            job = self.get(job_id)
            kept = [p for p in job.get("_checkpoints", []) if Path(self.store.abs(p["_path"])).exists()]
            for gone in job.get("_checkpoints", []):
                if gone not in kept:
                    self.store.delete("models", gone["fine_tuned_model_checkpoint"])
            self.update(job_id, _checkpoints=kept)

    def checkpoints(self, job_id: str) -> list[dict]:
        """The job's checkpoints, newest first."""
        return list(reversed(self.get(job_id).get("_checkpoints", [])))

    def _result_file(self, job_id: str, metrics) -> str:
        from helpers.metrics import write_result_csv

        path = self.store.adapters_dir(job_id) / "step_metrics.csv"
        write_result_csv(metrics, path)
        data = path.read_bytes()
        record = shapes.file_object("step_metrics.csv", len(data), "fine-tune-results")
        self.store.save_data(record["id"], data)
        self.store.put("files", record["id"], record)
        return record["id"]


def delete_model_files(record: dict) -> None:
    """Remove a fine-tuned model's adapter folder (checkpoints are separate models and stay)."""
    path = record.get("_path")
    if path and Path(path).name == "final":
        shutil.rmtree(path, ignore_errors=True)


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def import_adapter(store: Store, name, path) -> tuple[dict, dict | None]:
    """Serve a LoRA adapter trained outside the server (``POST /v1/load_lora_adapter``, as in vLLM).

    Copies the adapter's two files from ``path`` (a folder on the server's machine, e.g. what
    :func:`helpers.sft.train` saved) into ``WORKSPACE/adapters/imported/`` and registers them as the model
    ``name``. Calling it again with the same name replaces an imported adapter; the names of base models and of
    models trained by jobs are refused. Returns ``(new record, replaced record or None)``.
    """
    import json

    from helpers.server.store import _token

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._:/-]{1,128}", name):
        raise ApiError(400, "lora_name must be 1 to 128 characters: letters, digits, '.', '_', ':', '/' or '-'.",
                       param="lora_name", code="invalid_value")
    old = store.get("models", name)
    if name in base_names() or (old is not None and not old.get("_imported")):
        raise ApiError(400, f"A model named {name!r} already exists and was not imported: choose another lora_name.",
                       param="lora_name", code="model_exists")
    try:
        folder = Path(path).expanduser() if isinstance(path, str) and path else None
        found = folder is not None and all((folder / f).is_file() for f in ADAPTER_FILES)
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, an unknown ~user
        found = False
    if not found:
        raise ApiError(400, f"lora_path must be a folder on the server's machine holding {' and '.join(ADAPTER_FILES)} "
                       f"(a saved LoRA adapter); got {str(path)[:200]!r}.", param="lora_path", code="invalid_value")
    try:
        peft_type = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, OSError, AttributeError):
        peft_type = None
    if peft_type != "LORA":
        raise ApiError(400, f"The adapter in {path!r} is {peft_type!r}, not LORA: the server serves LoRA adapters "
                       "only (prompt tuning changes the input, not the weights).", param="lora_path",
                       code="invalid_value")
    target = store.root / "adapters" / "imported" / _token(name) / "final"
    tmp = target.with_name(f"final.tmp{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copyfile(folder / f, tmp / f)
    with store.lock:
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        record = {**shapes.model_object(name, now(), shapes.ORGANIZATION_ID), "_path": store.rel(target),
                  "_format": "chat", "_imported": True}
        store.put("models", name, record)
    return record, old
