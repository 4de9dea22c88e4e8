"""The course server, driven through the pinned ``openai`` SDK over loopback, as a learner's notebook would.

The server runs as a real subprocess (``python -m helpers.server``) on a free port with a temporary
workspace. Every client validates every response strictly against the SDK's types
(``_strict_response_validation=True``), and every JSON answer is also checked against OpenAI's published
OpenAPI schema (:mod:`openai_schema`). One small trained job is shared by many tests; data are tiny and
examples short, so the whole file takes a couple of minutes on two CPU cores.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from helpers import api, course_data
from helpers.environment import REPO_ROOT
from helpers.formats import write_jsonl
from helpers.server.rules import BASE_LR, resolve_hyperparameters, train_config
from helpers.server.store import Store
from server_process import SCHEMA_PROBLEMS, Server, wait_for
@pytest.fixture(autouse=True)
def schema_checked():
    yield
    problems, SCHEMA_PROBLEMS[:] = list(SCHEMA_PROBLEMS), []
    assert not problems, problems


# --- pieces without a server --------------------------------------------------------------------------
def test_auto_hyperparameters_follow_openai_rules():
    assert resolve_hyperparameters({}, 30) == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 0.1}
    assert resolve_hyperparameters({}, 20) == {"n_epochs": 5, "batch_size": 1, "learning_rate_multiplier": 0.1}
    assert resolve_hyperparameters({}, 1000)["batch_size"] == 2  # 0.2 % of the examples
    assert resolve_hyperparameters({}, 50_000)["batch_size"] == 8  # capped on a CPU
    assert resolve_hyperparameters({"n_epochs": 2, "batch_size": 64, "learning_rate_multiplier": 2}, 30) == \
        {"n_epochs": 2, "batch_size": 64, "learning_rate_multiplier": 2}
    _, settings = train_config({"batch_size": 64, "learning_rate_multiplier": 0.5}, 30, seed=5, max_length=128)
    config = settings["sft"]
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] == 30
    assert config["per_device_train_batch_size"] <= 4 and config["learning_rate"] == BASE_LR * 0.5
    assert config["save_total_limit"] == 3 and config["gradient_checkpointing"] is False
    assert settings["lora"]["r"] == 8 and json.loads(json.dumps(settings)) == settings   # kept in the job as JSON
    assert train_config({}, 30, seed=5, max_length=128, low_memory=True)[1]["sft"]["gradient_checkpointing"] is True


def test_store_writes_atomically_and_skips_a_torn_event_line(tmp_path):
    store = Store(tmp_path)
    store.put("jobs", "ftjob-a", {"id": "ftjob-a", "created_at": 1})
    assert store.get("jobs", "ftjob-a")["id"] == "ftjob-a" and store.get("jobs", "../x") is None
    assert not [p for p in (tmp_path / "jobs").iterdir() if p.suffix != ".json"]  # no temporary files left
    store.append_event("ftjob-a", {"id": "e1"})
    with open(tmp_path / "events" / "ftjob-a.jsonl", "a") as handle:
        handle.write('{"id": "e2", "mess')  # a crash in the middle of a write
    assert [e["id"] for e in store.events("ftjob-a")] == ["e1"]
    Store(tmp_path).append_event("ftjob-a", {"id": "e3"})  # the next server process carries on
    assert [e["id"] for e in store.events("ftjob-a")] == ["e1", "e3"]


def wait_for_step(client, job_id: str, step: int, timeout: float = 240.0) -> None:
    """Wait until the job has logged the metrics of ``step``."""
    deadline = time.monotonic() + timeout
    while True:
        steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job_id, limit=5).data
                 if e.type == "metrics" and "step" in (e.data or {})]
        if steps and max(steps) >= step:
            return
        assert time.monotonic() < deadline, f"job {job_id} did not reach step {step}"
        time.sleep(0.1)


def all_events(client, job_id: str) -> list:
    """Every event, oldest first (the API lists them newest first)."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def upload(path: Path) -> tuple[str, bytes]:
    """What ``client.files.create(file=...)`` takes: a name and the bytes."""
    return path.name, path.read_bytes()


def intents(split: str, n: int, start: int = 0) -> list[dict]:
    frame = course_data.load_intents(split).iloc[start:start + n]
    return [course_data.intent_chat(t, label) for t, label in zip(frame.text, frame.label)]


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    legacy = [{"prompt": f"Request: {e['messages'][1]['content']}\n\n###\n\n",
               "completion": f" {e['messages'][2]['content']} END"} for e in intents("train", 12, 40)]
    files = {"train": intents("train", 12), "valid": intents("valid", 10), "train2": intents("train", 12, 12),
             "five": intents("train", 5, 24), "legacy": legacy}
    paths = {name: write_jsonl(rows, folder / f"{name}.jsonl") for name, rows in files.items()}
    (folder / "notes.txt").write_text("not jsonl\n")
    (folder / "broken.jsonl").write_text("{not json\n" * 12)
    paths.update(txt=folder / "notes.txt", broken=folder / "broken.jsonl")
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server") / "workspace", "--max-upload-mb", "0.05").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def uploaded(client, data) -> dict[str, str]:
    return {name: client.files.create(file=upload(data[name]), purpose="fine-tune").id
            for name in ("train", "valid", "legacy", "train2")}


@pytest.fixture(scope="module")
def trained(client, uploaded):
    """One finished job, shared: 12 examples, 2 epochs of 3 steps, a validation file."""
    job = client.fine_tuning.jobs.create(
        training_file=uploaded["train"], validation_file=uploaded["valid"], model="gpt-4o-mini-2024-07-18",
        suffix="intent", seed=7, metadata={"lesson": "03"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}})
    assert job.status == "validating_files" and job.hyperparameters.learning_rate_multiplier == "auto"
    return wait_for(client, job.id)


# --- files --------------------------------------------------------------------------------------------
def test_files_upload_list_retrieve_content_delete(client, data):
    first = client.files.create(file=upload(data["train"]), purpose="fine-tune")
    second = client.files.create(file=("../../odd:name*.jsonl", data["five"].read_bytes()), purpose="fine-tune")
    assert first.object == "file" and first.purpose == "fine-tune" and first.status == "processed"
    assert first.bytes == data["train"].stat().st_size and first.filename == "train.jsonl"
    assert second.filename == "odd_name_.jsonl"  # folders and odd characters are removed
    listed = client.files.list()
    ids = [f.id for f in listed.data]
    assert ids.index(second.id) < ids.index(first.id)  # newest first
    assert listed.first_id == ids[0] and listed.last_id == ids[-1] and listed.has_more is False
    page = client.files.list(limit=1)
    assert page.has_more is True and len(page.data) == 1
    assert client.files.list(limit=1, after=page.data[0].id).data[0].id == ids[1]
    assert [f.id for f in client.files.list(order="asc").data] == ids[::-1]
    assert client.files.retrieve(first.id) == first
    assert client.files.content(first.id).read() == data["train"].read_bytes()
    deleted = client.files.delete(second.id)
    assert deleted.deleted is True and deleted.id == second.id and deleted.object == "file"
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(second.id)
    assert err.value.code == "file_not_found" and err.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.NotFoundError):
        client.files.content(second.id)


def test_upload_errors(client, data):
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=upload(data["txt"]), purpose="fine-tune")
    assert err.value.message.endswith("Invalid file format for Fine-Tuning API. Must be .jsonl")
    assert err.value.body["param"] == "file" and err.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=upload(data["train"]), purpose="assistants")
    assert err.value.body["param"] == "purpose"
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("big.jsonl", b'{"messages": []}\n' * 4000), purpose="fine-tune")
    assert err.value.code == "file_too_large"  # this test server allows 0.05 MB
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("empty.jsonl", b"\n"), purpose="fine-tune")
    assert err.value.code == "invalid_file_format"
    response = httpx.post(f"{client.base_url}files", data={"purpose": "fine-tune"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"


# --- jobs: request errors and failing jobs -----------------------------------------------------------
def test_create_job_errors(client, uploaded):
    jobs = client.fine_tuning.jobs
    cases = [({"method": {"type": "dpo", "dpo": {}}}, "method.type"),
             ({"method": {"type": "reinforcement"}}, "method.type"),
             ({"model": "gpt-99"}, "model"),
             ({"training_file": "file-doesnotexist"}, "training_file"),
             ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
             ({"hyperparameters": {"batch_size": 2.5}}, "hyperparameters.batch_size"),
             ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"learning_rate": 1}}}},
              "method.supervised.hyperparameters.learning_rate"),
             ({"suffix": "bad:suffix"}, "suffix")]
    for change, param in cases:
        args = {"training_file": uploaded["train"], "model": "gpt-4o-mini-2024-07-18", **change}
        with pytest.raises(openai.BadRequestError) as err:
            jobs.create(**args)
        assert err.value.body["param"] == param, change
        assert err.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.BadRequestError) as err:
        jobs.create(training_file=uploaded["train"], model="gpt-4o-mini", method={"type": "dpo"})
    assert "dpo" in err.value.message and "supervised" in err.value.message
    for call in (jobs.retrieve, jobs.cancel, jobs.pause, jobs.resume, jobs.list_events, jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError):
            call("ftjob-nosuchjob")
    response = httpx.get(f"{client.base_url}no/such/route")
    assert response.status_code == 404 and response.json()["error"]["message"].startswith("Invalid URL")
    response = httpx.post(f"{client.base_url}fine_tuning/jobs", content=b"{oops")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_failing_jobs_end_failed_not_as_http_errors(client, data, uploaded):
    few = client.files.create(file=upload(data["five"]), purpose="fine-tune")
    broken = client.files.create(file=upload(data["broken"]), purpose="fine-tune")
    jobs = [client.fine_tuning.jobs.create(training_file=few.id, model="gpt-3.5-turbo"),
            client.fine_tuning.jobs.create(training_file=broken.id, model="gpt-4o-mini"),
            client.fine_tuning.jobs.create(training_file=uploaded["train"], model="babbage-002")]
    expected = ["invalid_n_examples", "invalid_file_format", "invalid_file_format"]
    for job, code in zip(jobs, expected):
        assert job.status == "validating_files"
        done = wait_for(client, job.id)
        assert done.status == "failed" and done.error.code == code and done.error.param == "training_file"
        assert done.finished_at and done.fine_tuned_model is None
    assert "5 example(s), but must have at least 10" in wait_for(client, jobs[0].id).error.message
    assert all_events(client, jobs[0].id)[-1].level == "error"


# --- the shared trained job ---------------------------------------------------------------------------
def test_trained_job(client, trained, uploaded):
    assert trained.status == "succeeded", trained.error
    assert re.fullmatch(r"ft:gpt-4o-mini-2024-07-18:course-local:intent:[a-z0-9]{8}", trained.fine_tuned_model)
    hp = trained.hyperparameters
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (2, 4, 0.1)  # "auto" resolved
    assert trained.method.type == "supervised" and trained.method.supervised.hyperparameters.n_epochs == 2
    assert trained.seed == 7 and trained.metadata == {"lesson": "03"} and trained.trained_tokens > 0
    assert trained.training_file == uploaded["train"] and trained.validation_file == uploaded["valid"]
    assert trained.finished_at >= trained.created_at and trained.error is None and len(trained.result_files) == 1
    assert client.fine_tuning.jobs.retrieve(trained.id) == trained


def test_events_follow_openai_sequence(client, trained):
    events = all_events(client, trained.id)
    messages = [e.message for e in events]
    expected = ["Created fine-tuning job", "Validating training file", "Files validated, moving job to queued",
                "Fine-tuning job started", "Step 1/6: training loss=", "Checkpoint created at step 3",
                "Step 6/6: training loss=", "Checkpoint created at step 6", "New fine-tuned model created",
                "The job has successfully completed"]
    position = 0
    for text in expected:
        position = next(i for i in range(position, len(messages)) if messages[i].startswith(text)) + 1
    metrics = [e for e in events if e.type == "metrics"]
    assert {"step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"} \
        <= set(metrics[0].data)
    full = [e.data for e in metrics if "full_valid_loss" in e.data]
    assert len(full) == 2 and all(d["full_valid_loss"] > 0 for d in full)  # one per epoch
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events)
    page = client.fine_tuning.jobs.list_events(trained.id, limit=3)
    assert page.has_more is True and [e.id for e in page.data] == [e.id for e in events[::-1][:3]]
    after = client.fine_tuning.jobs.list_events(trained.id, limit=3, after=page.data[-1].id)
    assert [e.id for e in after.data] == [e.id for e in events[::-1][3:6]]


def test_checkpoints_listed_and_usable(client, trained):
    page = client.fine_tuning.jobs.checkpoints.list(trained.id)
    assert [c.step_number for c in page.data] == [6, 3] and page.has_more is False
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    newest = page.data[0]
    assert newest.fine_tuned_model_checkpoint == f"{trained.fine_tuned_model}:ckpt-step-6"
    assert newest.fine_tuning_job_id == trained.id and newest.metrics.full_valid_loss > 0
    first = client.fine_tuning.jobs.checkpoints.list(trained.id, limit=1)
    assert first.has_more is True and len(first.data) == 1
    name = page.data[1].fine_tuned_model_checkpoint
    assert client.models.retrieve(name).id == name
    reply = client.chat.completions.create(model=name, messages=course_data.intent_chat("Dim the hall lights"),
                                           temperature=0, max_tokens=4)
    assert reply.choices[0].message.content


def test_result_file(client, trained):
    file = client.files.retrieve(trained.result_files[0])
    assert file.purpose == "fine-tune-results" and file.filename == "step_metrics.csv"
    raw = client.files.content(file.id).read()
    assert base64.b64decode(raw).startswith(b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy")
    frame = api.read_result_file(client, file.id)
    assert list(frame.columns) == ["step", "train_loss", "train_accuracy", "valid_loss",
                                   "valid_mean_token_accuracy"]
    assert frame["step"].tolist() == [1, 2, 3, 4, 5, 6] and frame["valid_loss"].notna().all()


def test_models_list_and_retrieve(client, trained):
    ids = [m.id for m in client.models.list().data]
    for name in ("SmolLM2-135M-Instruct", "gpt-3.5-turbo", "gpt-4o-mini-2024-07-18", "babbage-002",
                 "davinci-002", trained.fine_tuned_model):
        assert name in ids
    assert not any(":ckpt-step-" in i for i in ids)
    model = client.models.retrieve(trained.fine_tuned_model)
    assert model.object == "model" and model.owned_by == "org-course-local"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("ft:gpt-4o-mini-2024-07-18:course-local:none:aaaaaaaa")
    assert err.value.code == "model_not_found"


def test_jobs_list_pagination(client, trained):
    everything = list(client.fine_tuning.jobs.list(limit=2))  # the SDK follows has_more/after itself
    created = [j.created_at for j in everything]
    assert created == sorted(created, reverse=True) and trained.id in [j.id for j in everything]
    page = client.fine_tuning.jobs.list(limit=2)
    assert page.has_more is True and [j.id for j in page.data] == [j.id for j in everything[:2]]
    nxt = client.fine_tuning.jobs.list(limit=2, after=page.data[-1].id)
    assert [j.id for j in nxt.data] == [j.id for j in everything[2:4]]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"lesson": "03"})] == [trained.id]


# --- inference ----------------------------------------------------------------------------------------
def test_chat_completions_plain_and_streamed(client, trained):
    messages = course_data.intent_chat("Lock the front door, please.")
    plain = client.chat.completions.create(model=trained.fine_tuned_model, messages=messages, temperature=0,
                                           max_tokens=8)
    text = plain.choices[0].message.content
    assert plain.object == "chat.completion" and plain.model == trained.fine_tuned_model and text
    assert plain.usage.prompt_tokens > 20 and plain.usage.total_tokens == plain.usage.prompt_tokens + \
        plain.usage.completion_tokens
    chunks = list(client.chat.completions.create(model=trained.fine_tuned_model, messages=messages, temperature=0,
                                                 max_tokens=8, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-2].choices[0].finish_reason == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    with httpx.stream("POST", f"{client.base_url}chat/completions",
                      json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 2, "stream": True}) as r:
        body = r.read().decode()
    assert r.headers["content-type"].startswith("text/event-stream") and body.rstrip().endswith("data: [DONE]")


def test_chat_sampling_options(client):
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Count from 1 to 20, with commas."}]}
    long = client.chat.completions.create(**ask, temperature=0, max_completion_tokens=6)
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 6
    cut = client.chat.completions.create(**ask, temperature=0, max_tokens=30, stop=["5"])
    assert "5" not in cut.choices[0].message.content and cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(**ask, temperature=0, max_tokens=30, stop="5", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut.choices[0].message.content
    same = [client.chat.completions.create(**ask, temperature=1.0, seed=3, max_tokens=8).choices[0].message.content
            for _ in range(2)]
    assert same[0] == same[1]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**ask, n=2)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**ask, temperature=3)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ft:nope", messages=ask["messages"])
    with pytest.raises(openai.NotFoundError):  # a completions model on the chat endpoint, as on OpenAI
        client.chat.completions.create(model="babbage-002", messages=ask["messages"])


def test_prompt_beyond_the_context_is_refused_at_once(client):
    prompt = "When do I have to start the heater? " * 1400  # about 50,000 characters, over 8,192 tokens
    for call in (lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user",
                                                                                        "content": prompt}]),
                 lambda: client.completions.create(model="davinci-002", prompt=prompt)):
        started = time.monotonic()
        with pytest.raises(openai.BadRequestError) as err:
            call()
        assert err.value.code == "context_length_exceeded" and "maximum context length is 8192" in err.value.message
        assert time.monotonic() - started < 10  # refused before any generation (which took about a minute)


def test_legacy_job_and_completions(client, uploaded):
    job = client.fine_tuning.jobs.create(training_file=uploaded["legacy"], model="babbage-002", suffix="legacy",
                                         hyperparameters={"n_epochs": 1, "batch_size": 4})
    job = wait_for(client, job.id)
    assert job.status == "succeeded", job.error
    prompt = "Request: Turn off the kitchen lights.\n\n###\n\n"
    out = client.completions.create(model=job.fine_tuned_model, prompt=prompt, max_tokens=6, temperature=0,
                                    stop=[" END"])
    assert out.object == "text_completion" and out.choices[0].finish_reason in ("stop", "length")
    assert out.usage.completion_tokens <= 6 and "END" not in out.choices[0].text
    base = client.completions.create(model="davinci-002", prompt="The front door lock is", max_tokens=3)
    assert base.usage.completion_tokens <= 3 and base.choices[0].finish_reason in ("stop", "length")
    loose = openai.OpenAI(base_url=str(client.base_url), api_key="unused", max_retries=0)
    streamed = list(loose.completions.create(model="davinci-002", prompt="Hello", max_tokens=3, temperature=0,
                                             stream=True))  # OpenAI streams finish_reason null, the SDK type
    # has no null there, so this one call validates loosely
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.NotFoundError):  # a chat model on the legacy endpoint, as on OpenAI
        client.completions.create(model="gpt-4o-mini", prompt="Hello")


# --- cancel, pause, resume ----------------------------------------------------------------------------
def test_pause_resume_then_cancel(server, client, uploaded):
    loose = server.client(strict=False)  # the SDK's status type lacks "paused", which OpenAI (and we) send
    job = client.fine_tuning.jobs.create(training_file=uploaded["train2"], model="gpt-4o-mini", seed=1,
                                         hyperparameters={"n_epochs": 4, "batch_size": 4})  # 12 steps
    queued = client.fine_tuning.jobs.create(training_file=uploaded["train2"], model="gpt-4o-mini")
    wait_for_step(client, job.id, 2)
    client.fine_tuning.jobs.pause(job.id)
    assert wait_for(loose, job.id, ("paused",)).status == "paused"
    assert loose.fine_tuning.jobs.retrieve(job.id).hyperparameters.batch_size == 4
    paused_at = max(e.data["step"] for e in all_events(loose, job.id) if e.type == "metrics")
    with pytest.raises(openai.ConflictError) as err:
        client.fine_tuning.jobs.resume(queued.id)
    assert err.value.response.headers["x-should-retry"] == "false"
    assert client.fine_tuning.jobs.cancel(queued.id).status in ("running", "cancelled")
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(client, job.id)
    assert done.status == "succeeded"
    events = all_events(client, job.id)
    resumed = next(i for i, e in enumerate(events) if e.message == "Fine-tuning job resumed")
    steps_after = [e.data["step"] for e in events[resumed:] if e.type == "metrics" and "train_loss" in e.data]
    assert steps_after[0] == paused_at + 1 and steps_after[-1] == 12  # it continued, not restarted
    kept = client.fine_tuning.jobs.checkpoints.list(job.id).data  # the last 3 epochs only
    assert [c.step_number for c in kept] == [12, 9, 6]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(kept[0].fine_tuned_model_checkpoint.replace("ckpt-step-12", "ckpt-step-3"))
    assert wait_for(client, queued.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)  # already finished


def test_cancel_running_job(client, uploaded):
    job = client.fine_tuning.jobs.create(training_file=uploaded["train2"], model="gpt-4o-mini",
                                         hyperparameters={"n_epochs": 3, "batch_size": 1})
    wait_for_step(client, job.id, 1)
    client.fine_tuning.jobs.cancel(job.id)
    done = wait_for(client, job.id)
    assert done.status == "cancelled" and done.fine_tuned_model is None and done.finished_at
    assert all_events(client, job.id)[-1].message == "Fine-tuning job cancelled"


def test_api_key_required(tmp_path):
    srv = Server(tmp_path / "workspace", "--api-key", "sk-course-secret").start()
    try:
        for key in ("wrong-key",):
            with pytest.raises(openai.AuthenticationError) as err:
                srv.client(key).models.list()
            assert err.value.status_code == 401 and "sk-course-secret" not in err.value.message
        assert httpx.get(srv.url + "/models").status_code == 401  # no key at all
        assert httpx.get(srv.url.removesuffix("/v1") + "/health").status_code == 200
        assert "gpt-4o-mini" in [m.id for m in srv.client("sk-course-secret").models.list().data]
    finally:
        srv.stop()


# --- restarts -----------------------------------------------------------------------------------------
def test_restart_keeps_files_jobs_and_models(server, client, trained, uploaded):
    before_files = [f.id for f in client.files.list().data]
    before_jobs = [j.id for j in client.fine_tuning.jobs.list(limit=100).data]
    running = client.fine_tuning.jobs.create(training_file=uploaded["train2"], model="gpt-4o-mini",
                                             hyperparameters={"n_epochs": 1, "batch_size": 4})
    wait_for_step(client, running.id, 1)
    server.stop()  # a clean stop (SIGTERM, as helpers.api does at exit) pauses the running job
    assert not (server.workspace / "server.json").exists()
    server.start()
    second = subprocess.run([sys.executable, "-m", "helpers.server", "--port", str(api.free_port()), "--workspace",
                             str(server.workspace)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == api.WORKSPACE_BUSY and "Another course server is already using" in second.stderr
    assert wait_for(server.client(strict=False), running.id, ("paused",), timeout=5).status == "paused"
    client.fine_tuning.jobs.resume(running.id)
    assert [f.id for f in client.files.list().data] == before_files
    assert [j.id for j in client.fine_tuning.jobs.list(limit=100).data] == [running.id, *before_jobs]
    assert client.fine_tuning.jobs.retrieve(trained.id) == trained
    assert trained.fine_tuned_model in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(model=trained.fine_tuned_model, temperature=0, max_tokens=4,
                                           messages=course_data.intent_chat("Is the oven still on?"))
    assert reply.choices[0].message.content
    assert wait_for(client, running.id).status == "succeeded"


def test_kill_9_mid_job(server, client, trained, uploaded):
    job = client.fine_tuning.jobs.create(training_file=uploaded["train2"], model="gpt-4o-mini",
                                         hyperparameters={"n_epochs": 4, "batch_size": 4})  # 3 steps per epoch
    behind = client.fine_tuning.jobs.create(training_file=uploaded["train"], model="gpt-4o-mini",
                                            hyperparameters={"n_epochs": 1, "batch_size": 12})
    wait_for_step(client, job.id, 4)  # past the first epoch's checkpoint
    assert client.fine_tuning.jobs.retrieve(behind.id).status == "queued"
    server.kill()
    records = json.loads((server.workspace / "jobs" / f"{job.id}.json").read_text())
    assert records["status"] == "running"
    server.start()
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed" and failed.error.code == "server_restarted"
    assert "killed" in failed.error.message and failed.error.param is None
    points = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert points and points[0].step_number == 3
    reply = client.chat.completions.create(model=points[0].fine_tuned_model_checkpoint, temperature=0,
                                           max_tokens=4, messages=course_data.intent_chat("Play some jazz."))
    assert reply.choices[0].message.content
    assert trained.fine_tuned_model in [m.id for m in client.models.list().data]
    assert client.fine_tuning.jobs.retrieve(trained.id).status == "succeeded"
    assert wait_for(client, behind.id).status == "succeeded"  # the queued job was queued again


def test_api_answers_match_direct_generation(server, client, trained):
    from helpers import model as base
    from helpers.model import load_adapter

    questions = [course_data.intent_chat(t) for t in ("Dim the porch light.", "Is the heat pump running?")]
    through_api = [client.chat.completions.create(model=trained.fine_tuned_model, messages=q, temperature=0,
                                                  max_tokens=6).choices[0].message.content for q in questions]
    model, tokenizer = load_adapter(server.workspace / "adapters" / trained.id / "final")
    assert through_api == base.generate(model, tokenizer, questions, max_new_tokens=6, batch_size=1)



def test_load_lora_adapter_serves_an_adapter_trained_elsewhere(server, client, trained, tmp_path):
    import shutil

    mine = tmp_path / "mine"  # as a notebook would save it, with a file the server must not copy
    shutil.copytree(server.workspace / "adapters" / trained.id / "final", mine)
    (mine / "README.md").write_text("notes")

    def load(name, path):
        return client.post("/load_lora_adapter", body={"lora_name": name, "lora_path": str(path)},
                           cast_to=openai.types.Model)

    served = load("intents-lora", mine)
    assert served.id == "intents-lora" and served.object == "model" and served.owned_by.startswith("org-")
    assert "intents-lora" in [m.id for m in client.models.list().data]
    copied = next((server.workspace / "adapters" / "imported").glob("*/final"))
    assert sorted(p.name for p in copied.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    question = course_data.intent_chat("Dim the porch light.")

    def answer(model):
        return client.chat.completions.create(model=model, messages=question, temperature=0,
                                              max_tokens=6).choices[0].message.content

    assert answer("intents-lora") == answer(trained.fine_tuned_model)
    assert load("intents-lora", mine).id == "intents-lora"  # loading again replaces the adapter
    prompt = tmp_path / "prompt"
    prompt.mkdir()
    (prompt / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    (prompt / "adapter_model.safetensors").write_bytes(b"")
    for name, path, code in [("gpt-4o-mini", mine, "model_exists"), (trained.fine_tuned_model, mine, "model_exists"),
                             ("other", tmp_path / "missing", "invalid_value"), ("other", prompt, "invalid_value"),
                             ("bad name!", mine, "invalid_value")]:
        with pytest.raises(openai.BadRequestError) as err:
            load(name, path)
        assert err.value.code == code, (name, path)
    assert client.models.delete("intents-lora").deleted is True
    assert not copied.exists()

def test_delete_model(client, trained):
    deleted = client.models.delete(trained.fine_tuned_model)
    assert deleted.deleted is True and deleted.id == trained.fine_tuned_model
    assert trained.fine_tuned_model not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(trained.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=trained.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    checkpoint = client.fine_tuning.jobs.checkpoints.list(trained.id).data[-1].fine_tuned_model_checkpoint
    assert client.models.retrieve(checkpoint).id == checkpoint  # checkpoints are separate models
    with pytest.raises(openai.BadRequestError):
        client.models.delete("gpt-4o-mini")
