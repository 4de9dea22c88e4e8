"""Per-student limits in workshop mode: active jobs, upload size and storage, requests per minute.

The defaults suit a class of about 30 on one laptop-class machine; ``python -m helpers.server --help`` lists
the flags that change them. The instructor has no limits. A request over the rate limit gets OpenAI's 429
(type ``requests``, code ``rate_limit_exceeded``) with a ``retry-after`` header in seconds.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from helpers.server.shapes import ApiError


@dataclass(frozen=True)
class Limits:
    max_active_jobs: int = 3                 # validating, queued or running at once
    max_upload_bytes: int = 10 * 2**20       # one file
    max_storage_bytes: int = 50 * 2**20      # all of a student's uploaded files together
    requests_per_minute: int = 300           # every /v1 request counts


class RateLimiter:
    """A sliding one-minute window of request times per student."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.times: dict[str, deque] = {}
        self.lock = threading.Lock()

    def hit(self, name: str) -> None:
        """Count one request by ``name``, or raise a 429 when the last minute already holds the limit."""
        now = self.clock()
        with self.lock:
            times = self.times.setdefault(name, deque())
            while times and times[0] <= now - self.WINDOW:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = max(1, math.ceil(times[0] + self.WINDOW - now))
                raise ApiError(429, f"Rate limit reached for requests per min (RPM) on the course server: Limit "
                               f"{self.per_minute}, Used {len(times)}, Requested 1. Please try again in {wait}s. "
                               "Poll less often (every few seconds is plenty for a job's events).",
                               type="requests", code="rate_limit_exceeded",
                               headers={"retry-after": str(wait), "x-should-retry": "true"})
            times.append(now)

    def recent(self, name: str) -> int:
        """Requests by ``name`` in the last minute."""
        now = self.clock()
        with self.lock:
            return sum(t > now - self.WINDOW for t in self.times.get(name, ()))
