"""A workshop under load: simulated students against one course server in workshop mode, on loopback.

    python benchmarks/load_test.py                 # 30 students, ci mode, about 5 minutes on 2 cores
    python benchmarks/load_test.py --students 5    # a quick look

The script writes a keys file, starts ``python -m helpers.server --keys ...`` (``COURSE_MODE=ci``) on a free
loopback port with a fresh workspace, and runs one thread per student with its own key and keep-alive
connection (httpx). Each student uploads a training file (10 intent examples), creates a small job (1 epoch,
batch 5: 2 steps), chats with the base model, polls the job and its events every ``--poll`` seconds until it
ends, then chats with its fine-tuned model. On every poll it also tries to read another student's file, job
and fine-tuned model (ids they have not been given): each such read should be a 404.

Measured and printed side by side, and written to ``benchmarks/results/load_test.json`` with the git commit:

* latency of reads (job retrieve, event list, file list) while jobs train: p50 and p95;
* answers by status class; the 5xx count (goal 0);
* cross-tenant reads that succeeded (goal 0);
* wall time from the first upload to the last student's end, against the sum of the jobs' training times
  (the server trains one job at a time, so the sum is the least the wall time can be).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "load_test.json"
HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 5}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def git_commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def training_file(student: int) -> bytes:
    from helpers.course_data import intent_chat, load_intents

    frame = load_intents("train").iloc[(student * 10) % 200:][:10]
    return "".join(json.dumps(intent_chat(t, label)) + "\n" for t, label in zip(frame.text, frame.label)).encode()


class Record:
    """Every answer the students got: (kind, start time, seconds, status)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.lock = threading.Lock()
        self.cross_tries = self.cross_leaks = 0

    def add(self, kind: str, started: float, seconds: float, status: int) -> None:
        with self.lock:
            self.rows.append((kind, started, seconds, status))


def call(client, record: Record, kind: str, method: str, path: str, **kwargs):
    started = time.time()
    t0 = time.perf_counter()
    response = client.request(method, path, **kwargs)
    record.add(kind, started, time.perf_counter() - t0, response.status_code)
    return response


def student(number: int, key: str, url: str, shared: dict, record: Record, poll: float, done: dict) -> None:
    import httpx

    rng = random.Random(number)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        file = call(client, record, "upload", "POST", "/files", data={"purpose": "fine-tune"},
                    files={"file": (f"student{number}.jsonl", training_file(number))}).json()
        shared["files"][number] = file["id"]
        job = call(client, record, "create", "POST", "/fine_tuning/jobs",
                   json={"model": "gpt-4o-mini", "training_file": file["id"], "suffix": f"s{number}",
                         "hyperparameters": HYPERPARAMETERS, "seed": number}).json()
        shared["jobs"][number] = job["id"]
        question = {"messages": [{"role": "user", "content": "Turn off the kitchen lights."}], "max_tokens": 8,
                    "temperature": 0}
        call(client, record, "chat", "POST", "/chat/completions", json={"model": "gpt-4o-mini", **question})
        while True:
            time.sleep(poll * (0.5 + rng.random()))
            job = call(client, record, "read", "GET", f"/fine_tuning/jobs/{job['id']}").json()
            call(client, record, "read", "GET", f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 20})
            call(client, record, "read", "GET", "/files")
            others = [n for n in shared["jobs"] if n != number]
            if others:
                other = rng.choice(others)
                paths = [f"/files/{shared['files'][other]}", f"/fine_tuning/jobs/{shared['jobs'][other]}"]
                if shared["models"].get(other):
                    paths.append(f"/models/{shared['models'][other]}")
                for path in paths:
                    status = call(client, record, "cross", "GET", path).status_code
                    with record.lock:
                        record.cross_tries += 1
                        record.cross_leaks += status == 200
            if job.get("status") in ("succeeded", "failed", "cancelled"):
                break
        if job["status"] == "succeeded":
            shared["models"][number] = job["fine_tuned_model"]
            call(client, record, "chat", "POST", "/chat/completions", json={"model": job["fine_tuned_model"], **question})
        events = call(client, record, "read", "GET", f"/fine_tuning/jobs/{job['id']}/events",
                      params={"limit": 100}).json()["data"]
    done[number] = {"status": job["status"], "job": job["id"], "events": events}


def main() -> int:
    from helpers import api

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between a student's polls (on average)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    commit = git_commit()
    workspace = Path(tempfile.mkdtemp(prefix="load-test-"))
    keys = {f"student{i:02d}": f"sk-load-{i:02d}-{os.urandom(6).hex()}" for i in range(args.students)}
    (workspace / "students.csv").write_text("key,name\n" + "".join(f"{k},{n}\n" for n, k in keys.items()))
    port = api.free_port()
    url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "COURSE_MODE": "ci", "PYTHONPATH": str(ROOT)}
    log = open(workspace / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    server = subprocess.Popen([sys.executable, "-m", "helpers.server", "--port", str(port), "--workspace",
                               str(workspace / "ws"), "--keys", str(workspace / "students.csv")],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while api._health(url, timeout=1) is None:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {workspace / 'server.log'}")
            time.sleep(0.2)
        training_file(0)  # load the intents once before the clock starts
        record, shared, done = Record(), {"files": {}, "jobs": {}, "models": {}}, {}
        threads = [threading.Thread(target=student, args=(i, key, url, shared, record, args.poll, done))
                   for i, key in enumerate(keys.values())]
        print(f"{args.students} students against {url} (workspace {workspace}) ...", flush=True)
        started = time.time()
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        wall = time.time() - started
    finally:
        server.terminate()
        server.wait(60)
        log.close()

    # --- figures ---------------------------------------------------------------------------------------
    train_seconds, spans = [], []
    for result in done.values():
        events = {e["message"].split(":")[0]: e for e in result["events"]}
        end = next((e for e in result["events"] if e["message"] == "The job has successfully completed"), None)
        if end is not None:
            train_seconds.append(end["data"]["train_seconds"])
        if "Fine-tuning job started" in events:
            finished = max(e["created_at"] for e in result["events"])
            spans.append((events["Fine-tuning job started"]["created_at"], finished + 1))
    window = (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)
    reads = [r for r in record.rows if r[0] == "read"]
    during = [r[2] for r in reads if window[0] <= r[1] <= window[1]]
    statuses: dict[str, int] = {}
    for row in record.rows:
        statuses[f"{row[3] // 100}xx"] = statuses.get(f"{row[3] // 100}xx", 0) + 1
    chats = [r[2] for r in record.rows if r[0] == "chat" and r[3] == 200]
    outcome = {s: sum(r["status"] == s for r in done.values()) for s in ("succeeded", "failed", "cancelled")}
    results = {
        "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "mode": "ci", "students": args.students, "poll_seconds": args.poll,
        "hyperparameters": HYPERPARAMETERS, "jobs": outcome, "requests": len(record.rows), "status_classes": statuses,
        "server_errors_5xx": sum(r[3] >= 500 for r in record.rows),
        "rate_limited_429": sum(r[3] == 429 for r in record.rows),
        "reads_while_training": len(during),
        "read_p50_ms": round(1000 * percentile(during, 50), 1) if during else None,
        "read_p95_ms": round(1000 * percentile(during, 95), 1) if during else None,
        "read_max_ms": round(1000 * max(during), 1) if during else None,
        "chat_p50_s": round(percentile(chats, 50), 2) if chats else None,
        "chat_p95_s": round(percentile(chats, 95), 2) if chats else None,
        "cross_tenant_reads": record.cross_tries, "cross_tenant_reads_succeeded": record.cross_leaks,
        "wall_seconds": round(wall, 1), "sum_of_job_train_seconds": round(sum(train_seconds), 1),
        "wall_over_job_sum": round(wall / sum(train_seconds), 2) if train_seconds else None,
        "mean_job_train_seconds": round(statistics.mean(train_seconds), 2) if train_seconds else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    rows = [("students / jobs succeeded", f"{args.students} / {outcome['succeeded']}"),
            ("requests (by status class)", f"{len(record.rows)} {statuses}"),
            ("5xx answers (goal 0)", results["server_errors_5xx"]),
            ("429 answers", results["rate_limited_429"]),
            ("reads while jobs train: p50 / p95 / max", f"{results['read_p50_ms']} / {results['read_p95_ms']} / "
                                                        f"{results['read_max_ms']} ms over {len(during)} reads"),
            ("chat completions: p50 / p95", f"{results['chat_p50_s']} / {results['chat_p95_s']} s"),
            ("cross-tenant reads that succeeded (goal 0)", f"{record.cross_leaks} of {record.cross_tries}"),
            ("wall time vs sum of job training times", f"{results['wall_seconds']} s vs "
                                                      f"{results['sum_of_job_train_seconds']} s "
                                                      f"(x{results['wall_over_job_sum']})")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"written to {out} (commit {commit})")
    return 0 if results["server_errors_5xx"] == 0 and record.cross_leaks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
