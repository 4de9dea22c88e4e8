"""Workshop mode: the keys file, isolation between students, fair queueing, limits, restarts, secrecy of keys.

Most tests run the app in-process (:mod:`live_app`: training off, an engine that does not generate); one
runs the real ``python -m helpers.server --keys`` with a tiny real job across a restart.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from helpers.environment import REPO_ROOT
from helpers.server.app import create_app
from helpers.server.limits import Limits, RateLimiter
from helpers.server.scheduler import Scheduler
from helpers.server.shapes import ApiError
from helpers.server.tenants import KeyFileError, Student, digest, read_keys
from live_app import Live, QuickEngine, multipart, training_rows
from server_process import SCHEMA_PROBLEMS, Server, wait_for

KEYS = {"ada": "sk-ws-ada-11111111", "bob": "sk-ws-bob-22222222", "carol": "sk-ws-carol-33333333",
        "instructor": "sk-ws-teach-44444444"}
STUDENTS = [Student(name, digest(key), name == "instructor") for name, key in KEYS.items()]


@pytest.fixture(autouse=True)
def schema_checked():
    yield
    problems, SCHEMA_PROBLEMS[:] = list(SCHEMA_PROBLEMS), []
    assert not problems, problems


# --- the keys file ------------------------------------------------------------------------------------
def test_read_keys_allows_a_header_blank_lines_and_comments(tmp_path):
    path = tmp_path / "students.csv"
    path.write_text("key,name\n\n# the morning group\nsk-aaaaaaaa01, Ada Lovelace\n  \nsk-tttttttt02,instructor\n")
    students = read_keys(path)
    assert [(s.name, s.instructor) for s in students] == [("Ada Lovelace", False), ("instructor", True)]
    assert students[0].digest == digest("sk-aaaaaaaa01") and "sk-aaaaaaaa01" not in repr(students)


@pytest.mark.parametrize("text,line,words", [
    ("sk-aaaaaaaa01\n", 1, "expected 2 comma-separated fields"),
    ("key,name\nsk-aaaaaaaa01,Ada,extra\n", 2, "found 3"),
    ("sk-shrt,Ada\n", 1, "8 to 200 printable ASCII"),
    ("sk-aaaa aaaa01,Ada\n", 1, "without spaces"),
    ("sk-aaaaaaaa01,Ada\nsk-bbbbbbbb02,ada\n", 2, "already used on line 1"),
    ("sk-aaaaaaaa01,Ada\n# note\nsk-aaaaaaaa01,Bob\n", 3, "this key is already used on line 1"),
    ("sk-aaaaaaaa01,<script>\n", 1, "must be 1 to 64 letters"),
], ids=["one field", "three fields", "short key", "space in key", "same name", "same key", "odd name"])
def test_a_bad_line_is_named_and_the_key_never_shown(tmp_path, text, line, words):
    path = tmp_path / "students.csv"
    path.write_text(text)
    with pytest.raises(KeyFileError) as err:
        read_keys(path)
    message = str(err.value)
    assert f"{path}, line {line}:" in message and words in message
    for key in ("sk-aaaaaaaa01", "sk-shrt", "sk-aaaa aaaa01", "sk-bbbbbbbb02"):
        assert key not in message


def test_an_empty_keys_file_is_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("key,name\n# nobody yet\n")
    with pytest.raises(KeyFileError, match="lists no students"):
        read_keys(tmp_path / "empty.csv")


def test_the_server_refuses_other_hosts_without_keys_and_bad_key_files(tmp_path):
    def start(*args):
        return subprocess.run([sys.executable, "-m", "helpers.server", "--workspace", str(tmp_path / "ws"), *args],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)

    refused = start("--host", "0.0.0.0")
    assert refused.returncode == 2 and "refusing to serve on 0.0.0.0 without keys" in refused.stderr
    assert "--keys" in refused.stderr
    (tmp_path / "bad.csv").write_text("key,name\nsk-secret-key-1234,Ada\nsk-secret-key-5678\n")
    bad = start("--host", "0.0.0.0", "--keys", str(tmp_path / "bad.csv"))
    assert bad.returncode == 2 and "bad.csv, line 3" in bad.stderr and "sk-secret" not in bad.stderr


# --- fairness -----------------------------------------------------------------------------------------
class Recorder:
    """A stand-in job manager: every job is queued until run; ``ran`` is shared by all of them."""

    def __init__(self, tenant: str, ran: list):
        self.tenant, self.ran, self.cancelled = tenant, ran, set()

    def is_queued(self, job_id):
        return job_id not in self.ran and job_id not in self.cancelled

    def run(self, job_id):
        self.ran.append(job_id)


def run_all(scheduler: Scheduler) -> None:
    while scheduler.run_next(timeout=0.05):
        pass


def test_the_queue_is_round_robin_between_students():
    ran: list = []
    scheduler = Scheduler(train=False)
    ada, bob, carol = (Recorder(name, ran) for name in ("ada", "bob", "carol"))
    for manager, job in [(ada, "a1"), (ada, "a2"), (ada, "a3"), (bob, "b1"), (carol, "c1"), (bob, "b2")]:
        scheduler.enqueue(manager, job)
    preview = [job for _, job in scheduler.order()]
    scheduler.run_next(timeout=0.05)  # a1 starts; then ada queues one more and carol a second one
    scheduler.enqueue(ada, "a4")
    scheduler.enqueue(carol, "c2")
    run_all(scheduler)
    assert ran == ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "a4"]
    assert preview == ["a1", "b1", "c1", "a2", "b2", "a3"]  # the order as it stood before a4 and c2


def test_a_cancelled_job_does_not_use_its_students_turn():
    ran: list = []
    scheduler = Scheduler(train=False)
    ada, bob = Recorder("ada", ran), Recorder("bob", ran)
    for manager, job in [(ada, "a1"), (ada, "a2"), (bob, "b1"), (bob, "b2")]:
        scheduler.enqueue(manager, job)
    bob.cancelled.add("b1")
    run_all(scheduler)
    assert ran == ["a1", "b2", "a2"]


def test_one_student_alone_is_first_come_first_served():
    ran: list = []
    scheduler = Scheduler(train=False)
    solo = Recorder("", ran)
    for job in ("j1", "j2", "j3"):
        scheduler.enqueue(solo, job)
    run_all(scheduler)
    assert ran == ["j1", "j2", "j3"]


# --- one in-process workshop --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workshop(tmp_path_factory):
    app = create_app(tmp_path_factory.mktemp("workshop"), mode="ci", students=STUDENTS, engine=QuickEngine(),
                     train=False, limits=Limits(max_active_jobs=3, max_upload_bytes=4096, max_storage_bytes=5000,
                                                requests_per_minute=10_000))
    server = Live(app)
    server.app = app
    yield server
    server.stop()


def upload(conn, rows: int = 10, name: str = "train.jsonl"):
    body, headers = multipart({"purpose": "fine-tune"}, (name, training_rows(rows)))
    return conn.call("POST", "/v1/files", raw_body=body, headers=headers)


def wait_queued(conn, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while conn.call("GET", f"/v1/fine_tuning/jobs/{job_id}")[1]["status"] != "queued":
        assert time.monotonic() < deadline, f"{job_id} was not queued"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def adas(workshop):
    """Ada's file, job (with its events), and a fine-tuned model and checkpoint as a finished job leaves them."""
    ada = workshop.connect(KEYS["ada"])
    file = upload(ada)[1]
    job = ada.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": file["id"]})[1]
    wait_queued(ada, job["id"])
    tenant = next(t for t in workshop.app.state.tenants.all if t.name == "ada")
    folder = tenant.store.adapters_dir(job["id"]) / "final"
    folder.mkdir(parents=True)
    model = f"ft:gpt-4o-mini-2024-07-18:course-local:ada:{job['id'][-8:].lower()}"
    point = {"id": "ftckpt-ada000000000000000001", "object": "fine_tuning.job.checkpoint", "created_at": 1,
             "fine_tuned_model_checkpoint": f"{model}:ckpt-step-1", "fine_tuning_job_id": job["id"],
             "step_number": 1, "metrics": {"step": 1.0}, "_path": tenant.store.rel(folder)}
    record = tenant.store.get("jobs", job["id"])
    tenant.store.put("jobs", job["id"], {**record, "_checkpoints": [point]})
    for name, extra in ((model, {}), (f"{model}:ckpt-step-1", {"_checkpoint": True})):
        tenant.store.put("models", name, {"id": name, "object": "model", "created": 1, "owned_by": "org-course-local",
                                          "_path": tenant.store.rel(folder), "_job": job["id"], "_format": "chat",
                                          **extra})
    yield {"file": file["id"], "job": job["id"], "model": model}
    ada.call("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")


def requests_on(ids: dict) -> list[tuple]:
    """Every route that takes an id: (method, path, body)."""
    file, job, model = ids["file"], ids["job"], ids["model"]
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return [("GET", f"/v1/files/{file}", None), ("GET", f"/v1/files/{file}/content", None),
            ("DELETE", f"/v1/files/{file}", None), ("GET", f"/v1/fine_tuning/jobs/{job}", None),
            ("POST", f"/v1/fine_tuning/jobs/{job}/cancel", None), ("POST", f"/v1/fine_tuning/jobs/{job}/pause", None),
            ("POST", f"/v1/fine_tuning/jobs/{job}/resume", None), ("GET", f"/v1/fine_tuning/jobs/{job}/events", None),
            ("GET", f"/v1/fine_tuning/jobs/{job}/checkpoints", None), ("GET", f"/v1/models/{model}", None),
            ("GET", f"/v1/models/{model}:ckpt-step-1", None), ("DELETE", f"/v1/models/{model}", None),
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/v1/chat/completions", {**chat, "model": f"{model}:ckpt-step-1"}),
            ("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": file}),
            ("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": ids["other_file"],
                                              "validation_file": file})]


def test_every_route_answers_another_students_ids_as_missing(workshop, adas):
    bob = workshop.connect(KEYS["bob"])
    bobs_file = upload(bob)[1]["id"]
    missing = {"file": "file-" + "x" * 24, "job": "ftjob-" + "x" * 24,
               "model": "ft:gpt-4o-mini-2024-07-18:course-local:ada:zzzzzzzz"}
    for (method, path, body), (_, path_missing, body_missing) in zip(requests_on({**adas, "other_file": bobs_file}),
                                                                     requests_on({**missing, "other_file": bobs_file})):
        status, answer, _ = bob.call(method, path, body)
        status_missing, answer_missing, _ = bob.call(method, path_missing, body_missing)
        assert status == status_missing and status in (400, 404), (method, path, answer)
        hidden = json.dumps(answer)
        for key in ("file", "job", "model"):
            hidden = hidden.replace(adas[key], missing[key])
        assert hidden == json.dumps(answer_missing), (method, path)
    assert bob.call("GET", "/v1/files")[1]["data"][0]["id"] == bobs_file and \
        len(bob.call("GET", "/v1/files")[1]["data"]) == 1
    assert adas["job"] not in json.dumps(bob.call("GET", "/v1/fine_tuning/jobs")[1])
    models = [m["id"] for m in bob.call("GET", "/v1/models")[1]["data"]]
    assert adas["model"] not in models and "gpt-4o-mini" in models  # base models are everyone's
    ada = workshop.connect(KEYS["ada"])
    assert all(ada.call(m, p, b)[0] == 200 for m, p, b in requests_on({**adas, "other_file": adas["file"]})
               if m == "GET")  # and ada herself still has them all


def test_the_instructor_sees_everything_and_the_overview(workshop, adas):
    teacher, bob = workshop.connect(KEYS["instructor"]), workshop.connect(KEYS["bob"])
    assert teacher.call("GET", f"/v1/files/{adas['file']}")[0] == 200
    assert teacher.call("GET", f"/v1/fine_tuning/jobs/{adas['job']}/events")[0] == 200
    assert adas["model"] in [m["id"] for m in teacher.call("GET", "/v1/models")[1]["data"]]
    assert adas["job"] in [j["id"] for j in teacher.call("GET", "/v1/fine_tuning/jobs?limit=100")[1]["data"]]
    status, view, _ = teacher.call("GET", "/v1/workshop/overview")
    assert status == 200 and view["object"] == "workshop.overview"
    assert {s["name"] for s in view["students"]} == set(KEYS)
    ada = next(s for s in view["students"] if s["name"] == "ada")
    assert ada["files"] >= 1 and ada["models"] == 1 and ada["jobs"].get("queued", 0) >= 1
    assert adas["job"] in [q["job"] for q in view["queue"]]
    assert not any(key in json.dumps(view) for key in KEYS.values())
    status, error, _ = bob.call("GET", "/v1/workshop/overview")
    assert status == 403 and error["error"]["code"] == "insufficient_permissions"
    status, error, _ = bob.call("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp"})
    assert status == 403


def test_the_overview_queue_is_fair(workshop):
    carol, bob = workshop.connect(KEYS["carol"]), workshop.connect(KEYS["bob"])
    files = {name: upload(conn)[1]["id"] for name, conn in (("carol", carol), ("bob", bob))}
    jobs = [carol.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": files["carol"]})[1]
            for _ in range(3)]
    jobs.append(bob.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": files["bob"]})[1])
    for job, conn in zip(jobs, (carol, carol, carol, bob)):
        wait_queued(conn, job["id"])
    view = workshop.connect(KEYS["instructor"]).call("GET", "/v1/workshop/overview")[1]
    order = [q["student"] for q in view["queue"] if q["student"] in ("carol", "bob")]
    assert order == ["carol", "bob", "carol", "carol"], order  # bob's first job is not behind all of carol's
    for job in jobs:
        (bob if job is jobs[-1] else carol).call("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")


def test_per_student_job_and_upload_limits(workshop):
    carol = workshop.connect(KEYS["carol"])
    file = upload(carol)[1]["id"]
    made = [carol.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": file})
            for _ in range(4)]
    assert [m[0] for m in made] == [200, 200, 200, 429]
    assert made[3][1]["error"]["code"] == "too_many_active_jobs" and "cancel" in made[3][1]["error"]["message"]
    carol.call("POST", f"/v1/fine_tuning/jobs/{made[0][1]['id']}/cancel")
    assert carol.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": file})[0] == 200
    teacher = workshop.connect(KEYS["instructor"])
    teacher_file = upload(teacher, rows=60)[1]["id"]  # 60 rows are over a student's 4 KB
    for _ in range(4):
        assert teacher.call("POST", "/v1/fine_tuning/jobs",
                            {"model": "gpt-4o-mini", "training_file": teacher_file})[0] == 200  # no limits
    status, error, _ = upload(carol, rows=60)
    assert status == 400 and error["error"]["code"] == "file_too_large"
    assert len(training_rows(36)) < 4096 and 2 * len(training_rows(10)) + len(training_rows(36)) > 5000
    status, error, _ = upload(carol, rows=36)  # under 4 KB, but over 5,000 bytes of storage with carol's others
    assert status == 400 and error["error"]["code"] == "storage_limit_exceeded"
    for job in teacher.call("GET", "/v1/fine_tuning/jobs?limit=100")[1]["data"]:
        if job["status"] in ("validating_files", "queued"):
            teacher.call("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")


def test_requests_per_minute(tmp_path):
    app = create_app(tmp_path, mode="ci", students=STUDENTS, engine=QuickEngine(), train=False,
                     limits=Limits(requests_per_minute=5))
    server = Live(app)
    try:
        ada, bob, teacher = (server.connect(KEYS[n]) for n in ("ada", "bob", "instructor"))
        assert [ada.call("GET", "/v1/models")[0] for _ in range(5)] == [200] * 5
        status, error, response = ada.call("GET", "/v1/models")
        assert status == 429 and error["error"]["type"] == "requests"
        assert error["error"]["code"] == "rate_limit_exceeded" and "Limit 5" in error["error"]["message"]
        assert 1 <= int(response.getheader("retry-after")) <= 60 and response.getheader("x-should-retry") == "true"
        assert bob.call("GET", "/v1/models")[0] == 200  # another student is not slowed down
        assert all(teacher.call("GET", "/v1/models")[0] == 200 for _ in range(8))  # the instructor has no limit
    finally:
        server.stop()


def test_rate_limiter_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.hit("ada")
    now[0] = 30.0
    limiter.hit("ada")
    with pytest.raises(ApiError) as err:
        limiter.hit("ada")
    assert err.value.status == 429 and err.value.headers["retry-after"] == "30"
    now[0] = 60.5  # the first request left the window
    limiter.hit("ada")
    assert limiter.recent("ada") == 2


# --- the real server: restart and secrecy ---------------------------------------------------------------
def test_workspaces_survive_a_restart_and_keys_never_reach_logs_or_disk(tmp_path):
    keys = tmp_path / "students.csv"
    keys.write_text("key,name\n" + "".join(f"{key},{name}\n" for name, key in KEYS.items()))
    server = Server(tmp_path / "workspace", "--keys", str(keys), "--log-level", "info").start()
    try:
        ada, bob = server.client(KEYS["ada"]), server.client(KEYS["bob"])
        rows = training_rows(10)
        train = ada.files.create(file=("train.jsonl", rows), purpose="fine-tune")
        job = ada.fine_tuning.jobs.create(training_file=train.id, model="gpt-4o-mini", suffix="ada",
                                          hyperparameters={"n_epochs": 1, "batch_size": 10})
        bobs = bob.files.create(file=("mine.jsonl", rows), purpose="fine-tune")
        done = wait_for(ada, job.id)
        assert done.status == "succeeded", done.error
        with pytest.raises(openai.AuthenticationError) as err:
            server.client("sk-ws-wrong-55555555").models.list()
        assert "sk-ws-wrong" not in err.value.message
        server.stop()
        server.start()
        assert {f.id for f in ada.files.list().data} == {train.id, *done.result_files}
        assert ada.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == done.fine_tuned_model
        assert done.fine_tuned_model in [m.id for m in ada.models.list().data]
        assert [f.id for f in bob.files.list().data] == [bobs.id]
        for call in (lambda: bob.models.retrieve(done.fine_tuned_model), lambda: bob.fine_tuning.jobs.retrieve(job.id),
                     lambda: bob.files.retrieve(train.id)):
            with pytest.raises(openai.NotFoundError):
                call()
        view = httpx.get(f"{server.url}/workshop/overview",
                         headers={"Authorization": f"Bearer {KEYS['instructor']}"}).json()
        assert next(s for s in view["students"] if s["name"] == "ada")["models"] == 1
    finally:
        server.stop()
    log = server.log_text()
    assert "GET /v1/files" in log  # the access log was on
    every_file = [p for p in (tmp_path / "workspace").rglob("*") if p.is_file()]
    for key in (*KEYS.values(), "sk-ws-wrong-55555555"):
        assert key not in log
        assert not [p for p in every_file if key.encode() in p.read_bytes()], key
    assert not any(key in str(p) for p in every_file for key in KEYS.values())


def test_single_user_mode_is_unchanged(tmp_path):
    app = create_app(tmp_path, mode="ci", engine=QuickEngine(), train=False)
    server = Live(app)
    try:
        conn = server.connect()  # no key at all, as the notebooks' local server
        status, file, _ = upload(conn)
        assert status == 200 and (Path(tmp_path) / "files" / f"{file['id']}.json").exists()  # the old layout
        assert not (Path(tmp_path) / "tenants").exists()
        assert conn.call("GET", "/v1/workshop/overview")[0] == 404
    finally:
        server.stop()
