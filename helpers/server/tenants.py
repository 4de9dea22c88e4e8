"""Workshop mode: one server for a class, each student with a workspace of their own.

``python -m helpers.server --host 0.0.0.0 --keys students.csv`` reads one ``key,name`` per line (a header
line ``key,name``, blank lines and lines starting with ``#`` are allowed). Each key is one student's API
key; the row whose name is ``instructor`` is the instructor's key.

* A student sees only their own files, jobs, events, checkpoints and fine-tuned models; anything of another
  student answers 404 exactly as an id that does not exist. The base models are everyone's.
* The instructor sees everything (their own things first), plus ``GET /v1/workshop/overview``.
* Each student's things live in ``WORKSPACE/tenants/<name>-<hash>/`` (the layout of :mod:`.store`), so they
  survive a restart. Keys are kept in memory as SHA-256 digests only, and never logged, echoed or written.

Without ``--keys`` the server has one tenant whose folder is the workspace itself: the single-user mode.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from helpers.server.store import Store, newest_first

INSTRUCTOR = "instructor"
NAME_RULE = re.compile(r"[\w .'-]{1,64}")
KEY_RULE = re.compile(r"[\x21-\x7e]{8,200}")  # printable ASCII without spaces: it travels in an HTTP header


class KeyFileError(ValueError):
    """The keys file cannot be used; the message names the file and the line, never a key."""


@dataclass(frozen=True)
class Student:
    name: str
    digest: str       # SHA-256 of the key
    instructor: bool


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def read_keys(path) -> list[Student]:
    """The students of a keys file (see the module docstring); :class:`KeyFileError` for a bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"Cannot read the keys file {path}: {exc}") from None
    students, names, keys, first = [], {}, {}, True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader([line]))]
        if first and [cell.lower() for cell in row] == ["key", "name"]:
            first = False
            continue
        first = False
        where = f"{path}, line {number}"
        if len(row) != 2:
            raise KeyFileError(f"{where}: expected 2 comma-separated fields (key,name), found {len(row)}. Write one "
                               "student per line, e.g. sk-workshop-7f3a9c21,Ada Lovelace.")
        key, name = row
        if not KEY_RULE.fullmatch(key):
            raise KeyFileError(f"{where}: the key must be 8 to 200 printable ASCII characters without spaces "
                               f"(this one has {len(key)} characters). Make one with: python -c \"import secrets; "
                               "print('sk-' + secrets.token_hex(12))\"")
        if not NAME_RULE.fullmatch(name):
            raise KeyFileError(f"{where}: the name {name[:70]!r} must be 1 to 64 letters, digits, spaces or . _ ' -.")
        if name.casefold() in names:
            raise KeyFileError(f"{where}: the name {name!r} is already used on line {names[name.casefold()]}; "
                               "every student needs a name of their own.")
        if digest(key) in keys:
            raise KeyFileError(f"{where}: this key is already used on line {keys[digest(key)]}; every student "
                               "needs a key of their own.")
        names[name.casefold()], keys[digest(key)] = number, number
        students.append(Student(name, digest(key), name.casefold() == INSTRUCTOR))
    if not students:
        raise KeyFileError(f"{path} lists no students: write one key,name line per student.")
    return students


def folder_name(name: str) -> str:
    """A folder name for a student: readable, and different for names that differ only in odd characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


@dataclass
class Tenant:
    name: str           # "" in single-user mode
    store: Store
    manager: object     # the tenant's helpers.server.jobs.JobManager
    instructor: bool = False


class Tenants:
    """Every tenant of a server. ``students=None``: single-user mode (one tenant, the workspace itself).

    ``make_manager(store, name, limited)`` builds a tenant's job manager (``limited``: a student, under the
    per-student limits); managers share the server's scheduler.
    """

    def __init__(self, workspace, students: list[Student] | None, make_manager):
        root = Path(workspace)
        self.workshop = students is not None
        self.by_digest: dict[str, Tenant] = {}
        self.all: list[Tenant] = []
        if students is None:
            store = Store(root)
            self.single = Tenant("", store, make_manager(store, "", False))
            self.all.append(self.single)
            return
        self.single = None
        for student in students:
            store = Store(root / "tenants" / folder_name(student.name))
            tenant = Tenant(student.name, store, make_manager(store, student.name, not student.instructor),
                            student.instructor)
            self.by_digest[student.digest] = tenant
            self.all.append(tenant)

    def identify(self, key: str) -> Tenant | None:
        return self.by_digest.get(digest(key))

    def scope(self, tenant: Tenant) -> Scope:
        return Scope(tenant, [tenant, *(t for t in self.all if t is not tenant)] if tenant.instructor else [tenant])


class Scope:
    """What one caller may see: ``own`` (where what they create goes) and, for the instructor, every tenant."""

    def __init__(self, own: Tenant, visible: list[Tenant]):
        self.own, self.visible = own, visible

    def find(self, kind: str, key: str) -> tuple[Tenant | None, dict | None]:
        """The tenant holding record ``key`` and the record, or ``(None, None)`` (missing, or not yours)."""
        for tenant in self.visible:
            record = tenant.store.get(kind, key)
            if record is not None:
                return tenant, record
        return None, None

    def all(self, kind: str) -> list[dict]:
        """Every visible record of a kind, newest first."""
        if len(self.visible) == 1:
            return self.own.store.all(kind)
        return newest_first([record for tenant in self.visible for record in tenant.store.all(kind)])

    def manager_of(self, job_id: str):
        """The job manager that owns ``job_id``; the caller's own when no visible tenant has it (its ``get``
        then answers the usual 404)."""
        tenant, _ = self.find("jobs", job_id)
        return (tenant or self.own).manager
