"""The training queue that every job manager of a server shares: one validation thread, one training thread.

Jobs are trained one at a time, fairly between tenants (the students of a workshop): the next job comes from
the tenant who was served least recently, so a student who queues three jobs does not make the next
student's first job wait behind all three. Within one tenant, jobs keep the order they were queued in; with
a single tenant (the course's single-user mode) the queue is first come, first served.

The scheduler only orders work; each tenant's :class:`helpers.server.jobs.JobManager` checks, trains and
records its own jobs (``validate``, ``is_queued``, ``run``, ``stop``).
"""
from __future__ import annotations

import itertools
import queue
import threading
from collections import deque


class Scheduler:
    """Fair order between tenants, and the two worker threads (``train=False``: no training thread, so jobs
    stay queued; for tests of the HTTP layer and of the order)."""

    def __init__(self, train: bool = True):
        self.cond = threading.Condition()
        self.waiting: dict[str, deque] = {}      # tenant -> deque of (arrival, manager, job_id)
        self.served: dict[str, int] = {}         # tenant -> when it last had a job started (a counter)
        self._clock = itertools.count()
        self.validate_q: queue.Queue = queue.Queue()
        self.current: tuple | None = None        # (manager, job_id) being trained
        self.idle = threading.Event()
        self.idle.set()
        for target in (self._validate_loop, self._train_loop)[:2 if train else 1]:
            threading.Thread(target=target, daemon=True, name=target.__name__).start()

    # --- queueing -------------------------------------------------------------------------------------
    def validate(self, manager, job_id: str) -> None:
        """Check a new job's files on the validation thread (the manager queues it for training after)."""
        self.validate_q.put((manager, job_id))

    def enqueue(self, manager, job_id: str) -> None:
        with self.cond:
            self.waiting.setdefault(manager.tenant, deque()).append((next(self._clock), manager, job_id))
            self.cond.notify()

    def _pick(self, waiting: dict, served: dict) -> str | None:
        """The tenant to serve next: least recently served first, then whoever has waited longest."""
        ready = [t for t, jobs in waiting.items() if jobs]
        if not ready:
            return None
        return min(ready, key=lambda t: (served.get(t, -1), waiting[t][0][0]))

    def take(self, timeout: float | None = None):
        """The next ``(manager, job_id)`` in fair order; blocks until there is one (None after ``timeout``)."""
        with self.cond:
            tenant = self._pick(self.waiting, self.served)
            while tenant is None:
                if not self.cond.wait(timeout) and timeout is not None:
                    return None
                tenant = self._pick(self.waiting, self.served)
            _, manager, job_id = self.waiting[tenant].popleft()
            return manager, job_id

    def started(self, manager) -> None:
        """Count a turn for ``manager``'s tenant (called when one of its jobs really starts)."""
        with self.cond:
            self.served[manager.tenant] = next(self._clock)

    def order(self) -> list[tuple]:
        """``(manager, job_id)`` of the queued jobs in the order they will be trained (as things stand now)."""
        with self.cond:
            waiting = {t: deque(jobs) for t, jobs in self.waiting.items()}
            served = dict(self.served)
        out, seen = [], set()
        while (tenant := self._pick(waiting, served)) is not None:
            _, manager, job_id = waiting[tenant].popleft()
            if job_id in seen or not manager.is_queued(job_id):
                continue  # cancelled or paused while it waited: skipped without using a turn
            seen.add(job_id)
            out.append((manager, job_id))
            served[tenant] = max(served.values(), default=0) + 1
        return out

    # --- the threads ----------------------------------------------------------------------------------
    def _validate_loop(self) -> None:
        while True:
            manager, job_id = self.validate_q.get()
            manager.validate(job_id)

    def _train_loop(self) -> None:
        while True:
            self.run_next()

    def run_next(self, timeout: float | None = None) -> bool:
        """Train the next queued job to its end; False when none came within ``timeout``."""
        taken = self.take(timeout)
        if taken is None:
            return False
        manager, job_id = taken
        if not manager.is_queued(job_id):
            return True  # cancelled or paused while it waited
        self.started(manager)
        self.current = (manager, job_id)
        self.idle.clear()
        try:
            manager.run(job_id)
        finally:
            self.current = None
            self.idle.set()
        return True

    def shutdown(self, timeout: float = 30.0) -> None:
        """Pause the running job (it can be resumed after the next start) and wait for it to stop."""
        current = self.current
        if current is not None:
            manager, job_id = current
            manager.stop(job_id)
            self.idle.wait(timeout)
