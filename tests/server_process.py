"""``python -m helpers.server`` as a subprocess for the tests, and the schema check on its answers.

Every client made by :meth:`Server.client` checks each JSON answer against OpenAI's published schema
(:mod:`openai_schema`) in an httpx hook; the problems are collected in :data:`SCHEMA_PROBLEMS`, which a
test module empties and asserts on after each test (an exception inside the hook would reach the test as
a connection error instead).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

import openai_schema
from helpers import api
from helpers.environment import REPO_ROOT

TERMINAL = ("succeeded", "failed", "cancelled")
SCHEMA_PROBLEMS: list[str] = []  # filled by the clients' response hook


def check_schema(response: httpx.Response) -> None:
    """An httpx response hook: a JSON answer that does not match OpenAI's schema is noted (an exception here
    would reach the test as a connection error)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    response.read()
    try:
        openai_schema.check(response.request.method, response.request.url.path, response.status_code,
                            response.json())
    except AssertionError as exc:
        SCHEMA_PROBLEMS.append(str(exc))


class Server:
    """``python -m helpers.server`` on a free loopback port; ``stop``/``kill``/``start`` keep the workspace."""

    def __init__(self, workspace: Path, *extra: str):
        self.workspace, self.extra, self.port, self.process = workspace, extra, api.free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        env = {**os.environ, "COURSE_MODE": "ci", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
        with open(self.workspace.parent / f"{self.workspace.name}.log", "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "helpers.server", "--port", str(self.port),
                                             "--workspace", str(self.workspace), *self.extra],
                                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while api._health(self.url, timeout=1) is None:
            assert self.process.poll() is None, f"server exited: {self.log_text()[-3000:]}"
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.1)
        return self

    def log_text(self) -> str:
        return (self.workspace.parent / f"{self.workspace.name}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def client(self, key: str = "unused", strict: bool = True) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, _strict_response_validation=strict, max_retries=0,
                             http_client=httpx.Client(event_hooks={"response": [check_schema]}))


def wait_for(client, job_id: str, statuses=TERMINAL, timeout: float = 240.0, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status} after {timeout} s"
        time.sleep(poll)
