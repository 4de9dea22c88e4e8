"""The notebooks' way to the fine-tuning API: the local course server, OpenAI, or Azure OpenAI.

>>> from helpers import api
>>> client = api.client()                   # an openai.OpenAI client; starts the local server if needed
>>> job = api.create_job_with_cost_guard(client, "train.jsonl", "gpt-4o-mini-2024-07-18", {"n_epochs": 2})
>>> job = api.follow_job(client, job.id)    # progress bar + event messages until the job ends
>>> api.read_result_file(client, job.result_files[0])   # the step metrics as a DataFrame

``COURSE_BACKEND`` picks the backend:

* ``local`` (default): the course server (``python -m helpers.server``) on this machine. It is started in
  the background on a free port, with its workspace in ``outputs/server``, and stopped when Python exits.
  ``COURSE_SERVER_URL`` points at a server that is already running instead.
* ``openai``: the real OpenAI API; needs ``OPENAI_API_KEY``. Jobs cost money: see the cost guard.
* ``azure``: Azure OpenAI; needs ``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_API_KEY`` and
  ``OPENAI_API_VERSION``.

Keys are read from the environment and never printed.

On Azure a fine-tuned model answers only once it is deployed: :func:`deploy_on_azure` creates the deployment
through Azure's control plane when ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``,
``AZURE_OPENAI_RESOURCE`` and ``AZURE_MANAGEMENT_TOKEN`` are set, and skips in one line when they are not.
"""
from __future__ import annotations

import atexit
import base64
import binascii
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BACKENDS = ("local", "openai", "azure")
DEFAULT_MAX_USD = 5.0
TERMINAL = ("succeeded", "failed", "cancelled")
LOCAL_KEY = "course-local"  # any non-empty key works when the server requires none
WORKSPACE_BUSY = 75         # helpers.server's exit code when another server holds the workspace
_server: dict = {}          # the server this process started: {"process", "url", "workspace"}


class BackendNotConfigured(RuntimeError):
    """A backend was chosen but its settings are missing."""


class CostLimitExceeded(RuntimeError):
    """The estimated cost of a job is above ``COURSE_MAX_USD``."""


def backend_name(backend: str | None = None) -> str:
    name = (backend or os.environ.get("COURSE_BACKEND") or "local").strip().lower()
    if name not in BACKENDS:
        raise BackendNotConfigured(f"COURSE_BACKEND={name!r} is not a backend; use one of {', '.join(BACKENDS)}.")
    return name


def _require(names: list[str], backend: str) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise BackendNotConfigured(f"The {backend} backend needs {', '.join(missing)} in the environment "
                                   f"(missing: {', '.join(missing)}). Set them, or unset COURSE_BACKEND to use "
                                   "the local course server.")


def client(backend: str | None = None, **kwargs):
    """An ``openai`` client for the chosen backend (see the module docstring). ``kwargs`` go to the client."""
    import openai

    name = backend_name(backend)
    if name == "openai":
        _require(["OPENAI_API_KEY"], "openai")
        made = openai.OpenAI(**kwargs)
    elif name == "azure":
        _require(["AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION"], "azure")
        made = openai.AzureOpenAI(azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
                                  api_key=os.environ["AZURE_OPENAI_API_KEY"],
                                  api_version=os.environ["OPENAI_API_VERSION"], **kwargs)
    else:
        made = openai.OpenAI(base_url=ensure_server(), api_key=os.environ.get("COURSE_SERVER_KEY") or LOCAL_KEY,
                             **kwargs)
    made.course_backend = name
    return made


# --- the local server ---------------------------------------------------------------------------------
def _health(url: str, timeout: float = 2.0) -> dict | None:
    """The server's ``/health`` answer (``url`` ends in ``/v1``), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running_in(workspace: Path) -> str | None:
    """The URL of a healthy server that serves this workspace, from its ``server.json``; None when none does."""
    try:
        url = json.loads((workspace / "server.json").read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if (_health(url) or {}).get("workspace") == str(workspace) else None


def ensure_server(workspace=None, timeout: float = 120.0) -> str:
    """The ``.../v1`` URL of a running course server; starts one in the background when none runs."""
    from helpers.environment import REPO_ROOT, outputs_dir

    if os.environ.get("COURSE_SERVER_URL"):
        url = os.environ["COURSE_SERVER_URL"].rstrip("/")
        if _health(url) is None:
            raise BackendNotConfigured(f"No course server answers at COURSE_SERVER_URL={url}. Start it with "
                                       "`python -m helpers.server`, or unset COURSE_SERVER_URL.")
        return url
    if _server and _server["process"].poll() is None:
        return _server["url"]
    workspace = Path(workspace or outputs_dir() / "server").resolve()
    running = _running_in(workspace)  # a server started by another notebook or a terminal
    if running:
        return running
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    deadline = time.monotonic() + timeout
    while True:
        port = free_port()
        with open(workspace / "server.log", "ab") as log:  # the server keeps its own handle
            process = subprocess.Popen([sys.executable, "-m", "helpers.server", "--port", str(port), "--workspace",
                                        str(workspace)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        while _health(url, timeout=1.0) is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if process.poll() is None and _health(url, timeout=1.0) is not None:
            break
        process.kill()
        busy = process.wait() == WORKSPACE_BUSY
        # Another notebook holds the workspace: it is starting a server (share it) or stopping one (try again).
        running = _running_in(workspace) if busy else None
        if running:
            return running
        if not busy or time.monotonic() > deadline:
            tail = (workspace / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"The course server did not start. Its log ({workspace / 'server.log'}) ends:\n{tail}")
        time.sleep(1.0)
    _server.update(process=process, url=url, workspace=workspace)
    atexit.register(stop_server)
    return url


def stop_server(timeout: float = 30.0) -> None:
    """Stop the server this process started (a running job is paused, so it can be resumed later)."""
    process = _server.pop("process", None)
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _server.clear()


# --- jobs ---------------------------------------------------------------------------------------------
def _new_events(client, job_id: str, seen: set) -> list:
    """Events not seen yet, oldest first."""
    fresh, after = [], None
    while True:
        page = client.fine_tuning.jobs.list_events(job_id, limit=100, **({"after": after} if after else {}))
        for event in page.data:
            if event.id in seen:
                return list(reversed(fresh))
            fresh.append(event)
        if not page.has_more or not page.data:
            return list(reversed(fresh))
        after = page.data[-1].id


def follow_job(client, job_id: str, progress: bool = True, poll: float = 1.0, timeout: float | None = None,
               echo: bool = True):
    """Follow a job until it succeeds, fails, is cancelled (or paused): a progress bar of its steps and
    its event messages (``echo=False``: wait without printing them). Returns the final job object."""
    from tqdm.auto import tqdm

    seen: set = set()
    bar = tqdm(total=None, desc=job_id, disable=not progress, unit="step")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            for event in _new_events(client, job_id, seen):
                seen.add(event.id)
                data = event.data if isinstance(event.data, dict) else {}
                if event.type == "metrics" and "total_steps" in data and "train_loss" in data:
                    bar.total = data["total_steps"]
                    bar.n = data["step"]
                    bar.set_postfix(loss=f"{data['train_loss']:.3f}" if data["train_loss"] is not None else "-")
                    bar.refresh()
                    if "full_valid_loss" not in data:
                        continue  # step lines go to the bar; epoch summaries are printed
                if echo:
                    (tqdm.write if progress else print)(event.message)
            if job.status in TERMINAL or job.status == "paused":
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout} s.")
            time.sleep(poll)
    finally:
        bar.close()


def read_result_file(client, file_id: str):
    """A job's result file as a DataFrame. OpenAI serves it base64-encoded, Azure as plain CSV: both work."""
    import pandas as pd

    content = client.files.content(file_id).read()
    data = content
    try:
        decoded = base64.b64decode(content, validate=True)
        if decoded.lstrip().startswith(b"step"):
            data = decoded
    except (binascii.Error, ValueError):
        pass
    return pd.read_csv(io.BytesIO(data))


def _backend_of(client) -> str:
    name = getattr(client, "course_backend", None)
    if name:
        return name
    import openai
    if isinstance(client, openai.AzureOpenAI):
        return "azure"
    return "openai" if "api.openai.com" in str(client.base_url) else "local"


def create_job_with_cost_guard(client, training_file_path, model: str, hyperparameters: dict | None = None,
                               confirm: bool = False, validation_file_path=None, **kwargs):
    """Upload the file(s) and create a fine-tuning job; on OpenAI or Azure only below a cost limit.

    On a paid backend it first estimates the billed tokens and dollars (:mod:`helpers.tokens`) and refuses
    when they are above ``COURSE_MAX_USD`` (default 5) unless ``confirm=True``. On the local server it
    simply creates the job. ``kwargs`` (suffix, seed, metadata, method, ...) go to ``jobs.create``.
    """
    from helpers.formats import read_jsonl
    from helpers.tokens import estimate_training_cost

    hyperparameters = dict(hyperparameters or {})
    if _backend_of(client) != "local":
        limit = float(os.environ.get("COURSE_MAX_USD") or DEFAULT_MAX_USD)
        try:
            estimate = estimate_training_cost(read_jsonl(training_file_path), model,
                                              hyperparameters.get("n_epochs", "auto"))
        except KeyError as exc:
            if not confirm:
                raise CostLimitExceeded(f"{exc.args[0]} Without a price the cost cannot be checked; pass "
                                        "confirm=True to create the job anyway.") from None
        else:
            print(f"Estimated cost: {estimate}")
            if estimate.usd > limit and not confirm:
                raise CostLimitExceeded(f"This job would cost about ${estimate.usd:,.2f}, above COURSE_MAX_USD="
                                        f"{limit:g}. Use fewer examples or epochs, raise COURSE_MAX_USD, or pass "
                                        "confirm=True.")
    with open(training_file_path, "rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    if validation_file_path is not None:
        with open(validation_file_path, "rb") as handle:
            kwargs["validation_file"] = client.files.create(file=handle, purpose="fine-tune").id
    return client.fine_tuning.jobs.create(training_file=training.id, model=model,
                                          hyperparameters=hyperparameters, **kwargs)


# --- Azure: deploying a fine-tuned model --------------------------------------------------------------
# A fine-tuned model on Azure answers only once it is deployed. Deployments belong to Azure's control plane
# (Azure Resource Manager), not to the openai package: one PUT with an Entra ID access token, for example from
# `az account get-access-token --query accessToken -o tsv`.
AZURE_DEPLOY_SETTINGS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_RESOURCE",
                         "AZURE_MANAGEMENT_TOKEN")
AZURE_MANAGEMENT_URL = "https://management.azure.com"
AZURE_MANAGEMENT_API_VERSION = "2024-10-01"   # Microsoft.CognitiveServices, the control plane's own version


class AzureDeploymentError(RuntimeError):
    """Azure refused or failed a deployment; the message holds its status and error."""


def azure_deployment_request(fine_tuned_model: str, deployment_name: str, *, subscription: str | None = None,
                             resource_group: str | None = None, resource: str | None = None,
                             sku: str = "standard", capacity: int = 1, environ=None) -> dict:
    """The PUT that creates (or updates) a deployment of ``fine_tuned_model``: method, url, params and json.
    Names not given come from the settings, else a placeholder such as ``<subscription-id>``. The access
    token is not part of it: :func:`deploy_on_azure` adds it as a header."""
    env = os.environ if environ is None else environ
    subscription = subscription or env.get("AZURE_SUBSCRIPTION_ID") or "<subscription-id>"
    resource_group = resource_group or env.get("AZURE_RESOURCE_GROUP") or "<resource-group>"
    resource = resource or env.get("AZURE_OPENAI_RESOURCE") or "<resource-name>"
    url = (f"{AZURE_MANAGEMENT_URL}/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
           f"Microsoft.CognitiveServices/accounts/{resource}/deployments/{deployment_name}")
    body = {"sku": {"name": sku, "capacity": capacity},
            "properties": {"model": {"format": "OpenAI", "name": fine_tuned_model, "version": "1"}}}
    return {"method": "PUT", "url": url, "params": {"api-version": AZURE_MANAGEMENT_API_VERSION}, "json": body}


def azure_deploy_settings(environ=None) -> tuple[dict, list[str]]:
    """``(settings found, names missing)`` among :data:`AZURE_DEPLOY_SETTINGS`."""
    env = os.environ if environ is None else environ
    found = {name: env[name] for name in AZURE_DEPLOY_SETTINGS if env.get(name)}
    return found, [name for name in AZURE_DEPLOY_SETTINGS if name not in found]


def deploy_on_azure(fine_tuned_model: str, deployment_name: str, *, sku: str = "standard", capacity: int = 1,
                    wait: bool = True, timeout: float = 900.0, poll: float = 10.0, environ=None, transport=None):
    """Deploy a fine-tuned model on Azure when the settings in :data:`AZURE_DEPLOY_SETTINGS` exist, and wait
    until Azure reports ``provisioningState`` Succeeded. Returns the deployment (a dict from Azure's JSON).

    Without the settings it prints one line saying what is missing and returns None, so that a notebook
    moves on. ``transport`` is an ``httpx`` transport (tests pass a mock). The token is never printed."""
    import httpx

    settings, missing = azure_deploy_settings(environ)
    if missing:
        print(f"Skipped the Azure deployment: {', '.join(missing)} not set (nothing was sent).")
        return None
    request = azure_deployment_request(fine_tuned_model, deployment_name, subscription=settings["AZURE_SUBSCRIPTION_ID"],
                                       resource_group=settings["AZURE_RESOURCE_GROUP"],
                                       resource=settings["AZURE_OPENAI_RESOURCE"], sku=sku, capacity=capacity)
    headers = {"Authorization": f"Bearer {settings['AZURE_MANAGEMENT_TOKEN']}"}
    with httpx.Client(transport=transport, timeout=60.0, headers=headers) as http:
        deployment = _azure_call(http, "PUT", request["url"], request["params"], request["json"])
        deadline = time.monotonic() + timeout
        while wait and _provisioning(deployment) not in ("Succeeded", "Failed", "Canceled"):
            if time.monotonic() > deadline:
                raise AzureDeploymentError(f"The deployment {deployment_name!r} was still "
                                           f"{_provisioning(deployment)} after {timeout:.0f} s.")
            time.sleep(poll)
            deployment = _azure_call(http, "GET", request["url"], request["params"])
    if _provisioning(deployment) in ("Failed", "Canceled"):
        raise AzureDeploymentError(f"Azure could not deploy {fine_tuned_model!r} as {deployment_name!r}: "
                                   f"provisioningState {_provisioning(deployment)}.")
    return deployment


def delete_azure_deployment(deployment_name: str, *, environ=None, transport=None) -> bool:
    """Delete a deployment (it is billed by the hour while it exists). False, with one line, without settings."""
    import httpx

    settings, missing = azure_deploy_settings(environ)
    if missing:
        print(f"Skipped deleting the Azure deployment: {', '.join(missing)} not set.")
        return False
    request = azure_deployment_request("", deployment_name, subscription=settings["AZURE_SUBSCRIPTION_ID"],
                                       resource_group=settings["AZURE_RESOURCE_GROUP"],
                                       resource=settings["AZURE_OPENAI_RESOURCE"])
    headers = {"Authorization": f"Bearer {settings['AZURE_MANAGEMENT_TOKEN']}"}
    with httpx.Client(transport=transport, timeout=60.0, headers=headers) as http:
        _azure_call(http, "DELETE", request["url"], request["params"])
    return True


def _provisioning(deployment) -> str:
    return str((deployment or {}).get("properties", {}).get("provisioningState", "Succeeded"))


def _azure_call(http, method: str, url: str, params: dict, body: dict | None = None):
    response = http.request(method, url, params=params, json=body)
    if response.status_code >= 400:
        try:
            error = response.json().get("error", {})
            detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        except ValueError:
            detail = response.text[:300]
        raise AzureDeploymentError(f"Azure answered {response.status_code} to {method} {url}: {detail}")
    return response.json() if response.content else {}
