"""What each notebook says you should see, per mode: the one table behind :func:`helpers.checks.expect`.

Each entry names the notebook, the claim in words, the kind of number (which fixes how it prints and which
values are possible at all), the range for each mode, and what a value outside the range means.

- ``cpu``: the range the notebook's prose states, checked by the strict claims run (``make claims``).
- ``ci``: tiny data and few steps, so results are weak, but every range must still be able to fail: a
  range, a direction (a difference above 0) or a shape. A range that spans every possible value (for
  example a share from 0% to 100%) is refused by the tests.
- ``gpu``: larger sizes; the ``cpu`` range unless given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf

# kind -> (the values possible at all, how a value prints)
KINDS = {
    "share": ((0.0, 1.0), lambda v: f"{v:.1%}"),
    "points": ((-1.0, 1.0), lambda v: f"{v * 100:+.1f} points"),
    "count": ((0.0, INF), lambda v: f"{v:,.0f}"),
    "number": ((-INF, INF), lambda v: f"{v:.3g}"),
    "positive": ((0.0, INF), lambda v: f"{v:.3g}"),
    "gap": ((0.0, INF), lambda v: f"{v:.1e}"),
    "ratio": ((0.0, INF), lambda v: f"{v:.2f}×"),
    "seconds": ((0.0, INF), lambda v: f"{v:.0f} s"),
    "gib": ((0.0, INF), lambda v: f"{v:.2f} GiB"),
    "usd": ((0.0, INF), lambda v: f"${v:,.2f}"),
}


@dataclass(frozen=True)
class Expectation:
    notebook: str
    claim: str
    kind: str
    ci: tuple
    cpu: tuple
    otherwise: str
    gpu: tuple | None = field(default=None)

    @property
    def domain(self) -> tuple[float, float]:
        return KINDS[self.kind][0]

    def range_for(self, mode: str) -> tuple[float, float]:
        chosen = {"ci": self.ci, "cpu": self.cpu, "gpu": self.gpu or self.cpu}[mode]
        return float(chosen[0]), float(chosen[1])

    def format(self, value: float) -> str:
        return "nan" if math.isnan(value) else KINDS[self.kind][1](value)

    def describe(self, low: float, high: float) -> str:
        lo_open, hi_open = low <= self.domain[0], high >= self.domain[1]
        if low == high:
            return f"expected exactly {self.format(low)}"
        if lo_open:
            return f"expected at most {self.format(high)}"
        if hi_open:
            return f"expected at least {self.format(low)}"
        return f"expected {self.format(low)} to {self.format(high)}"


def _e(notebook, claim, kind, *, ci, cpu, otherwise, gpu=None) -> Expectation:
    return Expectation(notebook, claim, kind, tuple(ci), tuple(cpu), otherwise, None if gpu is None else tuple(gpu))


# One section per notebook, in learning order. Keys are unique across the course.
_00_WHY: dict[str, Expectation] = {
}

_01_COLLECT: dict[str, Expectation] = {
}

_02_FORMAT: dict[str, Expectation] = {
}

_03_API: dict[str, Expectation] = {
}

_04_LORA: dict[str, Expectation] = {
}

_05_METRICS: dict[str, Expectation] = {
}

_06_RAG: dict[str, Expectation] = {
}

_07_SHIP: dict[str, Expectation] = {
}

EXPECTATIONS: dict[str, Expectation] = {**_00_WHY, **_01_COLLECT, **_02_FORMAT, **_03_API, **_04_LORA, **_05_METRICS,
                                        **_06_RAG, **_07_SHIP}
