"""Every notebook in gpu mode, and 04's QLoRA section, on a CUDA machine: ok or failed, seconds, peak GPU memory.

    python benchmarks/gpu_check.py               # every notebook, within 10 minutes in all
    python benchmarks/gpu_check.py 04 05         # notebooks whose name starts with 04 or 05
    python benchmarks/gpu_check.py --budget 900  # another time limit, in seconds

Each notebook runs top to bottom in a fresh kernel (nbclient, headless) with ``COURSE_MODE=gpu``, in course
order, all of them writing to one temporary outputs folder, as one learner's run would. The time limit covers
the whole check: a notebook still running when it is spent is stopped and counted as failed, and the
notebooks after it are not run. Peak GPU memory is the most device memory in use while the notebook ran
(``nvidia-smi``, every 0.2 s, all GPUs) less what was in use before it started, so it counts the kernel and
every process the notebook starts (the course server, accelerate's workers).

QLoRA needs ``bitsandbytes``, a ``# cuda-only:`` pin of the lock that ``make setup`` does not install: the
check installs it first when it is missing (``--no-install`` skips that; the QLoRA row then fails, saying
why). The QLoRA row reads the output of 04's QLoRA cell: it passes only when the section trained, not when
it printed why it skipped.

Prints a table and writes ``benchmarks/results/gpu_check.json`` with the commit. Exits 1 when a row failed.
Without CUDA it prints one line saying why it cannot run and exits 0. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
QLORA_NOTEBOOK, QLORA_MARK = "04_", "trainer.qlora_available()"   # the QLoRA section's cell calls this
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
client = NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}})
try:
    client.execute()
finally:
    nbformat.write(nb, sys.argv[3])   # what ran, outputs and errors included
"""


def why_no_cuda() -> str | None:
    """``None`` where a CUDA GPU is usable, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed here (make setup installs the course)"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def gpu_memory_mib() -> float | None:
    """Device memory in use on all GPUs, in MiB (nvidia-smi), or ``None`` where it cannot be read."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return sum(float(v) for v in out.stdout.split()) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        return ", ".join(out.stdout.split("\n")[:-1]) or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def install_cuda_only() -> str:
    """Install the lock's cuda-only pins that are missing or at another version; say what happened."""
    sys.path.insert(0, str(ROOT))
    from helpers.colab import installed_versions, normalize, read_lock

    have = installed_versions()
    missing = [f"{name}=={version}" for name, version in read_lock().cuda_only.items()
               if have.get(normalize(name)) != version]
    if not missing:
        return "cuda-only pins present"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], capture_output=True, text=True)
    return f"installed {' '.join(missing)}" if done.returncode == 0 else \
        f"could not install {' '.join(missing)}: {done.stderr.strip()[-300:]}"


def run_notebook(path: Path, outputs: Path, limit: float) -> dict:
    """Execute one notebook in gpu mode within ``limit`` seconds; return its row, with the executed notebook
    (``None`` where the runner wrote none) under ``"executed"``."""
    import nbformat

    env = {**os.environ, "COURSE_MODE": "gpu", "COURSE_OUTPUTS": str(outputs), "PYTHONWARNINGS": "ignore"}
    env.pop("CI", None)
    executed = outputs / f"executed_{path.name}"
    baseline, peak, stop = gpu_memory_mib(), [None], threading.Event()

    def watch():
        while not stop.wait(0.2):
            used = gpu_memory_mib()
            if used is not None:
                peak[0] = used if peak[0] is None else max(peak[0], used)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(path), str(NOTEBOOKS), str(executed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=max(limit, 1))
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the runner and the kernel it started
        _, err = proc.communicate()
        status = "failed"
        err = f"stopped: the time limit was spent after {limit:.0f} s"
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    peak_gib = None if peak[0] is None or baseline is None else max(peak[0] - baseline, 0) / 1024
    notebook = nbformat.read(executed, as_version=4) if executed.exists() else None
    note = "" if status == "ok" else _error_note(notebook, err)
    return {"notebook": path.stem, "status": status, "seconds": round(seconds, 1),
            "peak_gpu_gib": None if peak_gib is None else round(peak_gib, 2), "note": note, "executed": notebook}


def _error_note(notebook, stderr: str) -> str:
    for cell in (notebook.cells if notebook else []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output['ename']}: {output['evalue']}"[:300]
    return (stderr or "").strip().splitlines()[-1][:300] if (stderr or "").strip() else "failed"


def qlora_row(notebook) -> dict:
    """The QLoRA section's row, read from executed notebook 04 (``None`` where it did not run)."""
    row = {"notebook": "04 QLoRA section", "status": "failed", "seconds": None, "peak_gpu_gib": None}
    cells = [c for c in (notebook.cells if notebook else []) if c.cell_type == "code" and QLORA_MARK in c.source]
    if not cells:
        return {**row, "note": "notebook 04 did not run, or has no QLoRA cell"}
    cell = cells[0]
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream").strip()
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    timing = cell.metadata.get("execution", {})
    if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        started, ended = (datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
        row["seconds"] = round((ended - started).total_seconds(), 1)
    if errors:
        return {**row, "note": f"{errors[0]['ename']}: {errors[0]['evalue']}"[:300]}
    if not cell.get("execution_count"):
        return {**row, "note": "the QLoRA cell did not run"}
    if text.startswith("Skipped"):
        return {**row, "note": text[:300]}
    return {**row, "status": "ok", "note": text.splitlines()[-1][:300] if text else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose name starts with one of these")
    parser.add_argument("--budget", type=float, default=600, help="seconds for the whole check (default 600)")
    parser.add_argument("--no-install", action="store_true", help="do not install missing cuda-only pins")
    args = parser.parse_args()
    reason = why_no_cuda()
    if reason:
        print(f"gpu_check cannot run: {reason}; run it on a machine with a CUDA GPU.")
        return 0
    import torch

    notebooks = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
                 if not args.prefixes or p.name.startswith(tuple(args.prefixes))]
    print(f"device: {device_name()}; torch {torch.__version__}, CUDA {torch.version.cuda}; commit {commit()}")
    if not args.no_install:
        print(install_cuda_only())
    rows, deadline, started = [], time.monotonic() + args.budget, time.monotonic()
    print(f"{'notebook':<34}{'result':>8}{'seconds':>9}{'GPU GiB':>9}  note", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as outputs:
        for path in notebooks:
            left = deadline - time.monotonic()
            row = run_notebook(path, Path(outputs), left) if left > 0 else {
                "notebook": path.stem, "status": "failed", "seconds": None, "peak_gpu_gib": None,
                "note": f"not run: the {args.budget:.0f} s limit was spent", "executed": None}
            executed = row.pop("executed")
            new = [row, qlora_row(executed)] if path.name.startswith(QLORA_NOTEBOOK) else [row]
            rows += new
            for shown in new:
                print(f"{shown['notebook']:<34}{shown['status']:>8}"
                      f"{'-' if shown['seconds'] is None else shown['seconds']:>9}"
                      f"{'-' if shown['peak_gpu_gib'] is None else shown['peak_gpu_gib']:>9}  {shown['note']}",
                      flush=True)
    total = time.monotonic() - started
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows) - failed} of {len(rows)} ok in {total:.0f} s (limit {args.budget:.0f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "commit": commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(), "torch": torch.__version__, "cuda": torch.version.cuda, "mode": "gpu",
        "budget_s": args.budget, "total_s": round(total, 1), "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
