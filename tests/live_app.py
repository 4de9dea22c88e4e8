"""The course server's app under uvicorn in a thread, with an engine that does not generate, for HTTP tests.

:class:`QuickEngine` is the real engine (real tokenizer, chat template and context length) whose
``generate``/``stream`` answer at once and count their calls, so a test can tell that no generation work
started. :func:`multipart` and :func:`training_rows` make uploads. :class:`Connection` is one keep-alive HTTP connection (``http.client``) that checks every answer:
never a 5xx, every 4xx in OpenAI's envelope, every JSON answer matching OpenAI's schema, and the same
socket still usable for the next request.
"""
from __future__ import annotations

import http.client
import json
import threading
import time

import uvicorn

import openai_schema
from helpers import api
from helpers.server.inference import Engine, Generated


class QuickEngine(Engine):
    """Counts and templates like the real engine; replies "ok" at once; a prompt containing BOOM raises."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def generate(self, path, text, *, max_tokens, strip=True, **settings):
        self.calls += 1
        if "BOOM" in text:
            raise RuntimeError("a planted bug")
        return Generated("ok", "stop", self.count_tokens(text), 1)

    def stream(self, path, text, *, max_tokens, strip=True, **settings):
        self.calls += 1
        yield "o"
        yield "k"
        yield Generated("ok", "stop", self.count_tokens(text), 1)

    def base_for_training(self):
        raise AssertionError("no training in these tests")


class Live:
    """``app`` served on a free loopback port until ``stop()``."""

    def __init__(self, app):
        self.port = api.free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)

    def connect(self, key: str | None = None) -> Connection:
        return Connection(self.port, key)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class Connection:
    """One keep-alive connection; ``call`` checks each answer and that the connection survives it."""

    def __init__(self, port: int, key: str | None):
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.key, self.last_used = key, time.monotonic()

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        sent = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        if time.monotonic() - self.last_used > 3:  # the server closes a connection idle for 5 s, as any may:
            self.http.close()                       # start a new one, as a client's connection pool does
        self.last_used = time.monotonic()
        self.http.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = self.http.getresponse()
        content = response.read()
        self.last_used = time.monotonic()
        return response, content

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw_body: bytes | None = None):
        """``(status, parsed JSON or text, response)`` after every check (see the module docstring)."""
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        kind = {"Content-Type": "application/json"} if data is not None and raw_body is None else {}
        response, content = self.raw(method, path, data, {**kind, **(headers or {})})
        status, where = response.status, f"{method} {path[:120]} -> {response.status}"
        assert status < 500, f"{where}: {content[:400]!r}"
        assert not response.will_close, f"{where}: the server closed the connection"
        plain = path.split("?")[0]
        if response.getheader("content-type", "").startswith("text/event-stream"):
            parsed = content.decode()
            openai_schema.check_stream(plain, parsed)
        elif response.getheader("content-type", "").startswith("application/json"):
            parsed = json.loads(content)
            openai_schema.check(method, plain, status, parsed)
        else:
            assert status < 400, f"{where}: an error that is not JSON: {content[:200]!r}"
            parsed = content
        if status >= 400:
            assert set(parsed) == {"error"} and set(parsed["error"]) == {"message", "type", "param", "code"}, where
            assert parsed["error"]["message"], where
        port = self.http.sock.getsockname()[1]
        follow, _ = self.raw("GET", "/health")
        assert follow.status == 200 and self.http.sock.getsockname()[1] == port, \
            f"{where}: the next request on the same connection failed"
        return status, parsed, response


def training_rows(n: int = 10) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"Turn on lamp {i}"},
                          {"role": "assistant", "content": "lights_on"}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def multipart(fields: dict, file: tuple[str, bytes] | None, boundary: str = "courseboundary") -> tuple[bytes, dict]:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        name = file[0].replace('"', "").replace("\r", "").replace("\n", "")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + file[1] + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        {"Content-Type": f"multipart/form-data; boundary={boundary}"}
