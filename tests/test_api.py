"""helpers.api: backends, the local server's start and reuse, following a job, result files, the cost guard."""
from __future__ import annotations

import base64
import time
import types

import openai
import pytest

from helpers import api, course_data, tokens
from helpers.formats import write_jsonl

CSV = b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,2.5,0.4,,\n2,1.5,0.6,1.7,0.55\n"


class FakeClient:
    """Records uploads and job creations; never touches the network."""

    def __init__(self, backend: str, content: bytes = CSV):
        self.course_backend, self.calls = backend, []
        self.files = types.SimpleNamespace(create=self._upload,
                                           content=lambda file_id: types.SimpleNamespace(read=lambda: content))
        self.fine_tuning = types.SimpleNamespace(jobs=types.SimpleNamespace(create=self._create))

    def _upload(self, file, purpose):
        self.calls.append(("upload", purpose))
        return types.SimpleNamespace(id=f"file-{len(self.calls)}")

    def _create(self, **kwargs):
        self.calls.append(("create", kwargs))
        return types.SimpleNamespace(id="ftjob-fake", **kwargs)


def test_read_result_file_accepts_base64_and_raw_csv():
    for content in (base64.b64encode(CSV), CSV):  # OpenAI sends base64, Azure the plain CSV
        frame = api.read_result_file(FakeClient("openai", content), "file-x")
        assert list(frame.columns)[:2] == ["step", "train_loss"] and frame["step"].tolist() == [1, 2]


def test_backend_settings_are_checked_without_showing_keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "secret-azure-key")
    with pytest.raises(api.BackendNotConfigured) as err:
        api.client("azure")
    assert "AZURE_OPENAI_ENDPOINT" in str(err.value) and "OPENAI_API_VERSION" in str(err.value)
    assert "secret-azure-key" not in str(err.value)
    with pytest.raises(api.BackendNotConfigured, match="OPENAI_API_KEY"):
        api.client("openai")
    monkeypatch.setenv("COURSE_BACKEND", "somewhere")
    with pytest.raises(api.BackendNotConfigured, match="local, openai, azure"):
        api.client()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    made = api.client("openai")  # builds the client; makes no request
    assert isinstance(made, openai.OpenAI) and made.course_backend == "openai"
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    assert isinstance(api.client("azure"), openai.AzureOpenAI)


def test_cost_guard_refuses_expensive_jobs_on_paid_backends(tmp_path, monkeypatch, capsys):
    tokens.install_offline_encodings()
    frame = course_data.load_intents("train").head(50)
    path = write_jsonl([course_data.intent_chat(t, label) for t, label in zip(frame.text, frame.label)],
                       tmp_path / "train.jsonl")
    monkeypatch.setenv("COURSE_MAX_USD", "0.01")
    paid = FakeClient("openai")
    with pytest.raises(api.CostLimitExceeded, match="COURSE_MAX_USD"):
        api.create_job_with_cost_guard(paid, path, "gpt-4o-mini-2024-07-18", {"n_epochs": 10})
    assert paid.calls == [] and "billed tokens" in capsys.readouterr().out
    job = api.create_job_with_cost_guard(paid, path, "gpt-4o-mini-2024-07-18", {"n_epochs": 10}, confirm=True,
                                         suffix="intent")
    assert job.training_file == "file-1" and job.suffix == "intent" and job.hyperparameters == {"n_epochs": 10}
    with pytest.raises(api.CostLimitExceeded, match="price"):
        api.create_job_with_cost_guard(FakeClient("azure"), path, "my-deployment", {})
    local = FakeClient("local")
    api.create_job_with_cost_guard(local, path, "gpt-4o-mini-2024-07-18", {"n_epochs": 50})
    assert [c[0] for c in local.calls] == ["upload", "create"]


def test_local_client_starts_reuses_and_stops_the_server(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUTS", str(tmp_path))
    monkeypatch.delenv("COURSE_BACKEND", raising=False)
    monkeypatch.delenv("COURSE_SERVER_URL", raising=False)
    try:
        first = api.client()
        assert first.course_backend == "local" and (tmp_path / "server" / "server.json").exists()
        assert str(api.client().base_url) == str(first.base_url)  # the running server is reused
        few = write_jsonl([course_data.intent_chat("Lights on", "lights")] * 3, tmp_path / "few.jsonl")
        job = api.create_job_with_cost_guard(first, few, "gpt-4o-mini-2024-07-18", {"n_epochs": 1})
        done = api.follow_job(first, job.id, progress=False, poll=0.2, timeout=60)
        assert done.status == "failed" and done.error.code == "invalid_n_examples"
        out = capsys.readouterr().out
        assert "Created fine-tuning job" in out and "must have at least 10 examples" in out
        assert api.follow_job(first, job.id, progress=False, echo=False).status == "failed"
        assert capsys.readouterr().out == ""  # echo=False waits without printing the events
    finally:
        process = api._server.get("process")
        api.stop_server()
    assert process is not None and process.poll() is not None
    assert not (tmp_path / "server" / "server.json").exists()


def test_a_server_starting_while_another_stops_waits_for_the_workspace(tmp_path, monkeypatch):
    """Two notebooks: one still stops its server (holding the workspace) while the next one starts a server."""
    import threading

    from helpers.server.__main__ import WORKSPACE_BUSY, lock_exclusively

    assert api.WORKSPACE_BUSY == WORKSPACE_BUSY
    monkeypatch.delenv("COURSE_SERVER_URL", raising=False)
    workspace = tmp_path / "server"
    workspace.mkdir()
    held = open(workspace / ".server.lock", "a+")  # noqa: SIM115 - the other server's lock, released below
    lock_exclusively(held)
    release = threading.Timer(4.0, held.close)
    release.start()
    try:
        url = api.ensure_server(workspace, timeout=90)
        assert api._health(url)["workspace"] == str(workspace.resolve())
        assert "Another course server is already using" in (workspace / "server.log").read_text()
    finally:
        release.cancel()
        held.close()
        api.stop_server()


def test_a_server_that_cannot_start_fails_at_once_with_its_log(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_SERVER_URL", raising=False)
    monkeypatch.setenv("COURSE_MODE", "no-such-mode")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start"):
        api.ensure_server(tmp_path / "server", timeout=90)
    assert time.monotonic() - started < 60  # not retried until the timeout: only a busy workspace is retried
