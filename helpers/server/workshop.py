"""The instructor's view of a workshop: ``GET /v1/workshop/overview`` (instructor key only).

One JSON object: the training queue in the order it will run, who is training now (and how far), the
latest failed jobs with their errors, and per-student counts (files, storage, jobs by status, fine-tuned
models, requests in the last minute). Names only: keys never appear.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from helpers.server.store import now

RECENT_FAILURES = 10


def _progress(store, job_id: str) -> dict:
    """The last step the job logged: ``{"step", "total_steps"}`` (empty before the first step)."""
    for event in reversed(store.events(job_id)):
        data = event.get("data") or {}
        if event.get("type") == "metrics" and "total_steps" in data:
            return {"step": data.get("step"), "total_steps": data["total_steps"]}
    return {}


def overview(tenants, scheduler, limiter, limits) -> dict:
    queue = [{"position": i, "student": manager.tenant, "job": job_id}
             for i, (manager, job_id) in enumerate(scheduler.order(), start=1)]
    training = None
    current = scheduler.current
    if current is not None:
        manager, job_id = current
        job = manager.store.get("jobs", job_id) or {}
        training = {"student": manager.tenant, "job": job_id, "model": job.get("model"),
                    "created_at": job.get("created_at"), **_progress(manager.store, job_id)}
    students, failures = [], []
    for tenant in tenants.all:
        jobs = tenant.store.all("jobs")
        files = [f for f in tenant.store.all("files") if f.get("purpose") == "fine-tune"]
        failures += [{"student": tenant.name, "job": j["id"], "finished_at": j.get("finished_at"),
                      "code": (j.get("error") or {}).get("code"), "message": (j.get("error") or {}).get("message")}
                     for j in jobs if j["status"] == "failed"]
        students.append({"name": tenant.name, "instructor": tenant.instructor, "files": len(files),
                         "storage_bytes": sum(f.get("bytes", 0) for f in files),
                         "jobs": dict(Counter(j["status"] for j in jobs)),
                         "models": sum(not m.get("_checkpoint") for m in tenant.store.all("models")),
                         "requests_last_minute": limiter.recent(tenant.name) if limiter else 0})
    failures.sort(key=lambda f: f["finished_at"] or 0, reverse=True)
    return {"object": "workshop.overview", "created": now(), "limits": asdict(limits), "queue": queue,
            "training": training, "recent_failures": failures[:RECENT_FAILURES], "students": students}
