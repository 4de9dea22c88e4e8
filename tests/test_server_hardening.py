"""Every client mistake gets a 4xx in OpenAI's envelope, never a 5xx, and the connection survives it.

The app runs in-process under uvicorn with an engine that does not generate (:mod:`live_app`) and with
training switched off, in workshop mode (two students and the instructor), so tenancy is fuzzed too. Each
answer goes through :class:`live_app.Connection`: no 5xx, errors in the envelope, JSON answers matching
OpenAI's published schema (:mod:`openai_schema`), and the same keep-alive connection still working.

First the inputs an outside tester reported (each as a regression test), then property-based fuzzing
(hypothesis) of the body, query and path of every route: fixed example counts, derandomized, no database,
so CI runs the same requests every time, in well under a minute.
"""
from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.server import shapes
from helpers.server.app import create_app
from helpers.server.limits import Limits
from helpers.server.tenants import Student, digest
from live_app import Live, QuickEngine, multipart, training_rows

KEYS = {"ada": "sk-test-ada-0001", "bob": "sk-test-bob-0002", "instructor": "sk-test-teach-0003"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Dim the hall lights."}], "max_tokens": 4}
LEGACY = {"model": "davinci-002", "prompt": "The front door lock is", "max_tokens": 4}
EXAMPLES = 200  # per fuzzed route family
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    students = [Student(name, digest(key), name == "instructor") for name, key in KEYS.items()]
    engine = QuickEngine()
    app = create_app(tmp_path_factory.mktemp("hardening"), mode="ci", students=students, engine=engine, train=False,
                     limits=Limits(max_active_jobs=10_000, requests_per_minute=1_000_000))
    server = Live(app)
    server.engine = engine
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ada(live):
    return live.connect(KEYS["ada"])


@pytest.fixture(scope="module")
def ids(live, ada):
    """A file, a job and a (made-up) fine-tuned model of ada's, and a file of bob's."""
    out = {}
    for who, conn in (("ada", ada), ("bob", live.connect(KEYS["bob"]))):
        body, headers = multipart({"purpose": "fine-tune"}, ("train.jsonl", training_rows()))
        status, file, _ = conn.call("POST", "/v1/files", raw_body=body, headers=headers)
        assert status == 200
        out[f"{who}_file"] = file["id"]
    status, job, _ = ada.call("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": out["ada_file"]})
    assert status == 200
    out["ada_job"] = job["id"]
    return out


# --- the reported inputs, one by one ----------------------------------------------------------------------
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


def with_raw(body: dict, key: str, token: str) -> bytes:
    """``body`` as JSON text with ``key`` set to a raw token (NaN, 1e999: not expressible as a Python value)."""
    return json.dumps({**body, key: "@@"}).replace('"@@"', token).encode()


@pytest.mark.parametrize("token", NON_FINITE)
def test_non_finite_numbers_are_400(ada, ids, token):
    job = {"model": "gpt-4o-mini", "training_file": ids["ada_file"]}
    bodies = [("/v1/fine_tuning/jobs", json.dumps({**job, "hyperparameters": {"n_epochs": "@@"}})),
              ("/v1/fine_tuning/jobs", json.dumps({**job, "method": {"type": "supervised", "supervised": {
                  "hyperparameters": {"learning_rate_multiplier": "@@"}}}})),
              *[("/v1/chat/completions", json.dumps({**CHAT, key: "@@"}))
                for key in ("max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "seed")],
              *[("/v1/completions", json.dumps({**LEGACY, key: "@@"})) for key in ("max_tokens", "n", "best_of")]]
    for path, text in bodies:
        status, error, _ = ada.call("POST", path, raw_body=text.replace('"@@"', token).encode(),
                                    headers={"Content-Type": "application/json"})
        assert status == 400, (path, text)
        assert token.lstrip("-") in error["error"]["message"] or "number" in error["error"]["message"]


@pytest.mark.parametrize("value", [10**400, 2.5, -1, True, "3", [1], {"a": 1}],
                         ids=["400 digits", "2.5", "-1", "true", "string", "list", "object"])
def test_out_of_range_and_mistyped_numbers_are_400(ada, ids, value):
    job = {"model": "gpt-4o-mini", "training_file": ids["ada_file"]}
    seed = -10**30 if value == -1 else value  # -1 is a fine seed; -10**30 is beyond the 64-bit seeds torch takes
    for path, body, param in [("/v1/fine_tuning/jobs", {**job, "hyperparameters": {"n_epochs": value}},
                               "hyperparameters.n_epochs"),
                              ("/v1/chat/completions", {**CHAT, "max_tokens": value}, "max_tokens"),
                              ("/v1/chat/completions", {**CHAT, "seed": seed}, "seed"),
                              ("/v1/completions", {**LEGACY, "best_of": value}, "best_of")]:
        status, error, _ = ada.call("POST", path, body)
        assert status == 400 and error["error"]["param"] == param, (path, body, error)


def test_strings_where_objects_belong_are_400(ada, ids):
    job = {"model": "gpt-4o-mini", "training_file": ids["ada_file"]}
    cases = [("/v1/fine_tuning/jobs", {**job, "method": "supervised"}, "method"),
             ("/v1/fine_tuning/jobs", {**job, "method": {"type": "supervised", "supervised": "fast"}},
              "method.supervised"),
             ("/v1/fine_tuning/jobs", {**job, "method": {"type": "supervised", "supervised": {"hyperparameters": "x"}}},
              "method.supervised.hyperparameters"),
             ("/v1/fine_tuning/jobs", {**job, "hyperparameters": [1]}, "hyperparameters"),
             ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": "include_usage"}, "stream_options"),
             ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
             ("/v1/chat/completions", {**CHAT, "response_format": "json"}, "response_format"),
             ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
              "messages[0].content"),
             ("/v1/completions", {**LEGACY, "stream": True, "stream_options": "x"}, "stream_options"),
             ("/v1/completions", {**LEGACY, "echo": "true"}, "echo")]
    for path, body, param in cases:
        status, error, _ = ada.call("POST", path, body)
        assert status == 400 and error["error"]["param"] == param, (body, error)


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_json_nested_100000_levels_is_400(ada, opening):
    closing = b"]" if opening == b"[" else b"}"
    deep = opening * 100_000 + b"1" + closing * 100_000
    for path in ("/v1/fine_tuning/jobs", "/v1/chat/completions", "/v1/completions", "/v1/load_lora_adapter"):
        status, error, _ = ada.call("POST", path, raw_body=deep, headers={"Content-Type": "application/json"})
        assert status == 400 and "JSON" in error["error"]["message"], (path, error)


@pytest.mark.parametrize("limit", ["١٢", "²", "１２", "9" * 5000, "-1", "0", "1.5", "", "12 "],
                         ids=["arabic-indic", "superscript", "fullwidth", "5000 digits", "-1", "0", "1.5", "empty",
                              "space"])
def test_limit_must_be_ascii_digits(ada, ids, limit):
    for path in ("/v1/files", "/v1/fine_tuning/jobs", f"/v1/fine_tuning/jobs/{ids['ada_job']}/events",
                 f"/v1/fine_tuning/jobs/{ids['ada_job']}/checkpoints"):
        status, error, _ = ada.call("GET", f"{path}?limit={quote(limit)}")
        assert status == 400 and error["error"]["param"] == "limit", (path, limit)
    assert ada.call("GET", "/v1/files?limit=12")[0] == 200


def test_prompt_beyond_the_context_is_refused_before_generation(live, ada):
    prompt = "The heater starts at 18 degrees, and the porch light at dusk. " * 810  # about 50,000 characters
    assert len(prompt) >= 50_000
    calls, started = live.engine.calls, time.monotonic()
    cases = [("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": prompt}]}, "messages",
              "However, you requested"),
             ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
                                       "stream": True}, "messages", "However, your messages resulted in"),
             ("/v1/completions", {**LEGACY, "prompt": prompt}, "prompt", "however you requested"),
             ("/v1/completions", {**LEGACY, "prompt": prompt, "stream": True}, "prompt", "however you requested")]
    for path, body, param, words in cases:
        status, error, _ = ada.call("POST", path, body)
        assert status == 400, error
        assert error["error"]["code"] == "context_length_exceeded" and error["error"]["param"] == param
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
        assert message.startswith("This model's maximum context length is 8192 tokens") and words in message
    assert live.engine.calls == calls, "generation started for a prompt beyond the context"
    assert time.monotonic() - started < 15
    messages = [{"role": "user", "content": "lamp " * 6000}]
    n_prompt = live.engine.count_tokens(live.engine.prompt_text(messages))
    assert 4096 < n_prompt < 8192
    room = 8192 - n_prompt  # the prompt fits alone; with max_tokens beyond the room left it does not
    status, error, _ = ada.call("POST", "/v1/chat/completions", {**CHAT, "messages": messages, "max_tokens": room + 1})
    assert status == 400 and f"({n_prompt} in the messages, {room + 1} in the completion)" in error["error"]["message"]
    assert ada.call("POST", "/v1/chat/completions", {**CHAT, "messages": messages, "max_tokens": room})[0] == 200


def test_an_unexpected_error_is_a_500_envelope_that_keeps_the_connection(ada):
    response, content = ada.raw("POST", "/v1/chat/completions",
                                json.dumps({**CHAT, "messages": [{"role": "user", "content": "BOOM"}]}).encode(),
                                {"Content-Type": "application/json"})
    assert response.status == 500 and not response.will_close  # a server bug: still the envelope, same connection
    body = json.loads(content)
    assert body["error"]["type"] == "server_error" and "planted bug" in body["error"]["message"]
    assert ada.call("GET", "/v1/models")[0] == 200


def test_empty_pages_and_file_objects_have_no_nulls(live, ada, ids):
    fresh = live.connect(KEYS["instructor"])
    status, page, _ = fresh.call("GET", "/v1/files?purpose=fine-tune-results")  # an empty page
    assert status == 200 and page["data"] == [] and page["first_id"] == "" and page["last_id"] == ""
    status, file, _ = ada.call("GET", f"/v1/files/{ids['ada_file']}")
    assert None not in file.values() and "expires_at" not in file
    status, points, _ = ada.call("GET", f"/v1/fine_tuning/jobs/{ids['ada_job']}/checkpoints")
    assert status == 200 and points["data"] == [] and None not in points.values()


def test_checkpoint_metrics_without_validation_have_no_nulls():
    point = shapes.checkpoint("ftjob-a", "ft:x:ckpt-step-3", 3, {"step": 3, "train_loss": 0.5, "valid_loss": None})
    assert point["metrics"] == {"step": 3.0, "train_loss": 0.5}
    old = {**point, "metrics": {"step": 3.0, "valid_loss": None}, "_path": "x"}  # as an older server stored it
    assert shapes.public(old)["metrics"] == {"step": 3.0}
    assert "expires_at" not in shapes.public({**shapes.file_object("a.jsonl", 1, "fine-tune"), "expires_at": None})


# --- fuzzing ------------------------------------------------------------------------------------------
class Raw:
    """A JSON token that Python cannot hold as a value: NaN, Infinity, 1e999, a 400-digit number."""

    def __init__(self, text: str):
        self.text = text


def dump(value) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


RAW = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "1" + "0" * 400, "-0",
                       "1.7976931348623157e308", "9007199254740993"]).map(Raw)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=12), RAW, st.sampled_from(["auto", "gpt-4o-mini", "supervised", "text", "", "x"]))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)


def paths(value, prefix=()) -> list[tuple]:
    """Every place in a JSON value: dict keys and list positions, nested ones too."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out = []
    for key, inner in items:
        out += [(*prefix, key), *paths(inner, (*prefix, key))]
    return out


@st.composite
def mutated(draw, template):
    """A valid request body with one to three places broken (replaced by any JSON, odd numbers included,
    removed, or given an extra key), so that each broken field reaches the code that reads it; now and
    then a body that is anything at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUE)
    body = json.loads(json.dumps(template))
    for _ in range(draw(st.integers(1, 3))):
        places = paths(body)
        if not places:
            break
        *parent_path, last = draw(st.sampled_from(places))
        parent = body
        for key in parent_path:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "extra"]))
        if action == "drop":
            del parent[last]
        elif action == "extra" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(VALUE)
        else:
            parent[last] = draw(VALUE)
    return body


def job_template(ids):
    return {"model": "gpt-4o-mini", "training_file": ids["ada_file"], "validation_file": ids["ada_file"],
            "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
            "suffix": "fuzz", "seed": 3, "metadata": {"lesson": "03"}, "integrations": []}


CHAT_TEMPLATE = {"model": "gpt-4o-mini", "max_tokens": 4, "max_completion_tokens": 4, "temperature": 0.5,
                 "top_p": 0.9, "n": 1, "stop": ["x"], "seed": 1, "stream": False, "logprobs": False,
                 "stream_options": {"include_usage": True}, "response_format": {"type": "text"},
                 "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": [{"type": "text", "text": "Dim the lights."}]}]}
LEGACY_TEMPLATE = {"model": "davinci-002", "prompt": ["The lock is"], "max_tokens": 4, "best_of": 1, "n": 1,
                   "echo": True, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0,
                   "stop": "x", "seed": 2}
JOB_ACTIONS = ["", "/cancel", "/pause", "/resume", "/events", "/checkpoints"]


@FUZZ
@given(data=st.data())
def test_fuzz_create_job(ada, ids, data):
    body = data.draw(mutated(job_template(ids)))
    ada.call("POST", "/v1/fine_tuning/jobs", raw_body=dump(body).encode(), headers={"Content-Type": "application/json"})


@FUZZ
@given(body=mutated(CHAT_TEMPLATE))
def test_fuzz_chat(ada, body):
    ada.call("POST", "/v1/chat/completions", raw_body=dump(body).encode(), headers={"Content-Type": "application/json"})


@FUZZ
@given(body=mutated(LEGACY_TEMPLATE))
def test_fuzz_completions(ada, body):
    ada.call("POST", "/v1/completions", raw_body=dump(body).encode(), headers={"Content-Type": "application/json"})


@FUZZ
@given(body=mutated({"lora_name": "mine", "lora_path": "/no/such/adapter"}), key=st.sampled_from(["ada", "instructor"]))
def test_fuzz_load_lora_adapter(live, body, key):
    live.connect(KEYS[key]).call("POST", "/v1/load_lora_adapter", raw_body=dump(body).encode(),
                                 headers={"Content-Type": "application/json"})


TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)  # encodable in a URL
ID = st.one_of(TEXT, st.sampled_from(["file-", "ftjob-", "..", "../jobs", "%00", "a" * 600,
                                                      "ft:gpt-4o-mini:course-local::abcdefgh"]))


@FUZZ
@given(data=st.data())
def test_fuzz_paths_and_queries(ada, ids, data):
    known = st.sampled_from([ids["ada_job"], ids["ada_file"], ids["bob_file"]])
    item = quote(data.draw(st.one_of(known, ID)), safe="")
    path = data.draw(st.sampled_from([f"GET /v1/files/{item}", f"GET /v1/files/{item}/content",
                                      f"DELETE /v1/files/{item}", f"GET /v1/models/{item}",
                                      f"DELETE /v1/models/{item}", "GET /v1/files", "GET /v1/fine_tuning/jobs",
                                      "GET /v1/models", "GET /v1/workshop/overview",
                                      *[f"{'GET' if a in ('', '/events', '/checkpoints') else 'POST'} "
                                        f"/v1/fine_tuning/jobs/{item}{a}" for a in JOB_ACTIONS]]))
    if "DELETE /v1/files" in path and ids["ada_file"] in path:
        return  # keep the file the other fuzzers use
    query = data.draw(st.dictionaries(st.sampled_from(["limit", "after", "order", "purpose", "metadata[lesson]"]),
                                      st.one_of(TEXT, st.integers(-5, 20_000).map(str),
                                                st.sampled_from(["١٢", "²", "9" * 5000, "asc", "desc"])), max_size=3))
    method, route = path.split(" ", 1)
    suffix = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    ada.call(method, route + (f"?{suffix}" if suffix else ""))


@FUZZ
@given(purpose=st.one_of(st.just("fine-tune"), TEXT), filename=st.one_of(st.just("data.jsonl"), TEXT),
       content=st.one_of(st.just(training_rows(2)), st.binary(max_size=64)),
       with_file=st.booleans(), broken=st.booleans())
def test_fuzz_upload(ada, purpose, filename, content, with_file, broken):
    fields = {"purpose": purpose.replace("\r", "").replace("\n", "")}
    body, headers = multipart(fields, (filename, content) if with_file else None)
    if broken:
        body = body[: len(body) // 2]
    ada.call("POST", "/v1/files", raw_body=body, headers=headers)


@FUZZ
@given(header=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
       route=st.sampled_from(["GET /v1/models", "GET /v1/files", "POST /v1/fine_tuning/jobs"]))
def test_fuzz_authorization(live, header, route):
    method, path = route.split(" ")
    conn = live.connect()
    status, body, _ = conn.call(method, path, {} if method == "POST" else None, headers={"Authorization": header})
    if header.removeprefix("Bearer ").strip() not in KEYS.values():
        assert status == 401 and body["error"]["type"] == "invalid_request_error"
