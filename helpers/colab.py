"""Install the course into a running Google Colab session, without a restart.

On Colab, the setup cell of every notebook clones the course, then runs::

    from helpers import colab
    colab.install()

Colab already has most of the lock's packages, some at other versions, and a CUDA build of torch. Replacing a
package that the running kernel has already imported (numpy, pandas, matplotlib, ipykernel…) only takes
effect after a restart, and a half-replaced package can break the session; replacing torch would swap
Colab's CUDA build for a download of gigabytes. So :func:`install`:

1. reads the lock (``requirements.txt``): its ``name==version`` pins, the ``# no-deps:`` pin (the model
   package) and the ``# cuda-only:`` pins (bitsandbytes, which QLoRA needs);
2. keeps torch, and every package this session has already imported, at the version Colab has, and gives pip
   those versions as constraints, so that it cannot change them as a dependency of something else either;
3. installs, in one pip call, every other pin that is missing or at another version; the ``no-deps`` pin with
   ``--no-deps``; and, on a machine with a CUDA GPU only, the ``cuda-only`` pins;
4. leaves out what only runs the course on your own machine (JupyterLab, the test tools): Colab has its own
   frontend.

This module imports only the standard library, so it runs before anything heavy is imported.
``python -m helpers.colab`` prints what it would do in the Python that runs it, and installs nothing.
"""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.txt"
# Colab's torch is a CUDA build: never replaced, whatever the lock pins.
NEVER_REPLACE = frozenset({"torch"})
# What runs the course on your own machine (JupyterLab and the test tools); Colab has its own frontend.
LOCAL_ONLY = frozenset({"jupyterlab", "nbformat", "nbclient", "nbval", "pytest", "pytest-xdist", "selenium"})
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Lock:
    """The lock file's pins, each ``{name: version}`` in file order."""

    pins: dict[str, str] = field(default_factory=dict)
    no_deps: dict[str, str] = field(default_factory=dict)    # lines "# no-deps: name==version"
    cuda_only: dict[str, str] = field(default_factory=dict)  # lines "# cuda-only: name==version"


def read_lock(path: Path | str = LOCK) -> Lock:
    lock = Lock()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        target, marker = lock.pins, re.match(r"^#\s*(no-deps|cuda-only):(.*)$", line.strip())
        if marker:
            target, line = (lock.no_deps if marker.group(1) == "no-deps" else lock.cuda_only), marker.group(2)
        match = _PIN.match(line)
        if match:
            target[match.group(1)] = match.group(3)
    return lock


def installed_versions() -> dict[str, str]:
    """``{normalized name: version}`` of every distribution this Python can import."""
    versions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            versions.setdefault(normalize(name), dist.version)
    return versions


def imported_distributions(modules=None) -> set[str]:
    """The normalized names of the distributions whose modules this Python has imported (``sys.modules``)."""
    owners = importlib.metadata.packages_distributions()
    tops = {name.split(".")[0] for name in (sys.modules if modules is None else modules)}
    return {normalize(dist) for top in tops for dist in owners.get(top, ())}


def has_cuda() -> bool:
    """Whether an NVIDIA GPU is visible (``nvidia-smi -L`` lists one), without importing torch."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def _same(have: str | None, want: str) -> bool:
    return have is not None and have.split("+")[0] == want.split("+")[0]   # 2.9.0+cu126 is torch 2.9.0


@dataclass
class Plan:
    install: list[str] = field(default_factory=list)           # "name==version", one pip call
    install_no_deps: list[str] = field(default_factory=list)   # "name==version", with --no-deps
    keep: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (version kept, version locked)
    constraints: list[str] = field(default_factory=list)       # "name==version" pip may not change
    local_only: list[str] = field(default_factory=list)        # pins left out on Colab

    def pip_commands(self, constraints_file: str) -> list[list[str]]:
        """The pip command lines (after ``python -m pip``) that carry out the plan."""
        commands = []
        if self.install:
            commands.append(["install", "-q", "-c", constraints_file, *self.install])
        if self.install_no_deps:
            commands.append(["install", "-q", "--no-deps", *self.install_no_deps])
        return commands


def make_plan(lock: Lock, installed: dict[str, str], imported: set[str], cuda: bool) -> Plan:
    """What to install: see the module docstring. ``installed`` and ``imported`` use normalized names."""
    plan = Plan()
    frozen = imported | NEVER_REPLACE
    wanted = {**lock.pins, **(lock.cuda_only if cuda else {})}
    for name, want in wanted.items():
        key, have = normalize(name), installed.get(normalize(name))
        if key in LOCAL_ONLY:
            plan.local_only.append(name)
        elif _same(have, want):
            continue
        elif have is not None and key in frozen:
            plan.keep[name] = (have, want)
        else:
            plan.install.append(f"{name}=={want}")
    for name, want in lock.no_deps.items():
        if not _same(installed.get(normalize(name)), want):
            plan.install_no_deps.append(f"{name}=={want}")
    plan.constraints = [f"{name}=={installed[name]}" for name in sorted(frozen) if name in installed]
    return plan


def describe(plan: Plan, done: bool = True) -> str:
    """A few lines for the learner: what was (or would be) installed, what was kept, and why."""
    installed = ", ".join(plan.install + plan.install_no_deps)
    lines = [f"{'Installed' if done else 'Would install'} from the lock: {installed or 'nothing, all present'}."]
    if plan.keep:
        kept = ", ".join(f"{name} {have} (lock {want})" for name, (have, want) in plan.keep.items())
        lines.append(f"Kept {kept}: torch stays Colab's CUDA build, and this session has already imported the "
                     "others, so replacing them would need a restart.")
    return "\n".join(lines)


def install(lock_path: Path | str = LOCK, *, dry_run: bool = False) -> Plan:
    """Install the lock into this running Python as the module docstring says; print what was done."""
    plan = make_plan(read_lock(lock_path), installed_versions(), imported_distributions(), has_cuda())
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("\n".join(plan.constraints) + "\n")
        for command in plan.pip_commands(str(constraints)):
            if dry_run:
                print("would run: pip", " ".join(command))
                continue
            run = subprocess.run([sys.executable, "-m", "pip", *command], capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(
                    f"pip {' '.join(command)} failed:\n{(run.stderr or run.stdout)[-3000:]}\nIt may not change "
                    f"what this session has already imported ({', '.join(plan.constraints)}). In a new session "
                    "(Runtime > Restart session), run this cell first.")
    print(describe(plan, done=not dry_run))
    return plan


if __name__ == "__main__":
    install(dry_run=True)
