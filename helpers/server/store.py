"""Everything the course server keeps, as plain files under one workspace folder.

Layout::

    WORKSPACE/
      files/file-XXXX.json        the file object (metadata)
      files/file-XXXX.data        the uploaded bytes (or the result CSV)
      jobs/ftjob-XXXX.json        one record per fine-tuning job (the API object plus private fields)
      events/ftjob-XXXX.jsonl     the job's event log, oldest first, append-only
      models/<token>.json         one record per fine-tuned model or checkpoint name
      adapters/ftjob-XXXX/        the trainer's output: checkpoint-N/ folders and final/

Every JSON record is written atomically (a temporary file, then ``os.replace``), so a crash or a
``kill -9`` never leaves half a record. The event log is append-only: one ``write`` per complete line;
a torn last line (a crash in the middle of that write) is skipped when reading.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import string
import threading
import time
from pathlib import Path

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 24) -> str:
    """A random id like OpenAI's, e.g. ``file-3kTz...``."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


def now() -> int:
    """Timestamps are integer Unix seconds, as in the OpenAI API."""
    return int(time.time())


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` atomically (readers see the old or the new file, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _token(name: str) -> str:
    """A file name for a model name (which holds ``:``): readable prefix plus a short hash."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"


class Store:
    """Thread-safe access to the workspace. Records are dicts; ``_seq`` orders records made in one second."""

    def __init__(self, workspace: Path | str):
        self.root = Path(workspace).expanduser().resolve()
        self.lock = threading.RLock()
        for sub in ("files", "jobs", "events", "models", "adapters"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._seq = time.time_ns()
        self._checked: set[str] = set()  # event logs whose end was checked since this process started

    def next_seq(self) -> int:
        with self.lock:
            self._seq = max(self._seq + 1, time.time_ns())
            return self._seq

    # --- generic records -------------------------------------------------------------------------
    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / (f"{key}.json" if kind != "models" else f"{_token(key)}.json")

    def put(self, kind: str, key: str, record: dict) -> dict:
        with self.lock:
            record.setdefault("_seq", self.next_seq())
            write_json(self._path(kind, key), record)
        return record

    def get(self, kind: str, key: str) -> dict | None:
        if not isinstance(key, str) or len(key) > 512 or (kind != "models" and not (
                len(key) <= 128 and all(c in _ALPHABET + "-_" for c in key))):
            return None  # ids never hold other characters or run so long; this also blocks path tricks
        with self.lock:
            return read_json(self._path(kind, key))

    def delete(self, kind: str, key: str) -> None:
        with self.lock:
            self._path(kind, key).unlink(missing_ok=True)

    def all(self, kind: str) -> list[dict]:
        """Every record of a kind, newest first."""
        with self.lock:
            records = [r for p in (self.root / kind).glob("*.json") if (r := read_json(p)) is not None]
        return newest_first(records)

    # --- file contents ---------------------------------------------------------------------------
    def data_path(self, file_id: str) -> Path:
        return self.root / "files" / f"{file_id}.data"

    def save_data(self, file_id: str, data: bytes) -> None:
        tmp = self.data_path(file_id).with_suffix(".data.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.data_path(file_id))

    # --- event logs ------------------------------------------------------------------------------
    def append_event(self, job_id: str, event: dict) -> None:
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
        path = self.root / "events" / f"{job_id}.jsonl"
        with self.lock:
            if job_id not in self._checked:  # after a crash the log may end in a torn line: end it first
                self._checked.add(job_id)
                if path.exists() and path.stat().st_size:
                    with open(path, "rb") as handle:
                        handle.seek(-1, os.SEEK_END)
                        if handle.read(1) != b"\n":
                            line = b"\n" + line
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def events(self, job_id: str) -> list[dict]:
        """The job's events, oldest first (a torn last line from a crash is skipped)."""
        path = self.root / "events" / f"{job_id}.jsonl"
        with self.lock:
            if not path.exists():
                return []
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def adapters_dir(self, job_id: str) -> Path:
        return self.root / "adapters" / job_id

    def rel(self, path) -> str | None:
        """A path inside the workspace as it is stored (relative, so the workspace can move)."""
        return None if path is None else str(Path(path).resolve().relative_to(self.root))

    def abs(self, rel) -> str | None:
        return None if rel is None else str(self.root / rel)


def newest_first(records: list[dict]) -> list[dict]:
    """Records sorted newest first (creation time, then the order they were written in)."""
    return sorted(records, key=lambda r: (r.get("created_at", r.get("created", 0)), r.get("_seq", 0)), reverse=True)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)
