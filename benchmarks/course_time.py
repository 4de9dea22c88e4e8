"""Wall time and peak memory of every notebook, in `ci` and `cpu` mode, measured side by side.

    python benchmarks/course_time.py                 # all notebooks, both modes
    python benchmarks/course_time.py --modes cpu 00  # notebooks whose name starts with 00, cpu mode only

Each notebook runs top to bottom in a fresh kernel (nbclient), as a learner would run it. Peak memory is
the largest high-water mark (VmHWM from /proc, Linux) of the kernel and the processes it starts (the
course server, accelerate's workers), and "all" is the peak of their summed resident memory, sampled
every 0.2 s: what a container such as Binder's must hold. The goal in `cpu` mode is at most 2 GiB per
notebook, the memory Binder gives. Prints a table and the cpu/ci time ratio.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GOAL_GIB = 2.0
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=1800, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(notebook: Path, mode: str, extra_env: dict | None = None) -> tuple[float, float, float, bool]:
    """Execute one notebook; return (seconds, peak GiB of one process, peak GiB of all, succeeded).
    ``extra_env`` adds settings for the kernel (the claims run sets ``MEM_LIMIT`` and ``COURSE_STRICT``)."""
    env = {**os.environ, "COURSE_MODE": mode, "PYTHONWARNINGS": "ignore", **(extra_env or {})}
    env.pop("CI", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(notebook), str(NOTEBOOKS)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, total, runner = [0], [0], psutil.Process(proc.pid)

    def watch():
        while proc.poll() is None:
            try:
                children = runner.children(recursive=True)
                for child in children:
                    peak[0] = max(peak[0], _peak_kib(child.pid))
                total[0] = max(total[0], sum(c.memory_info().rss for c in children) // 1024)
            except psutil.Error:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode:
        print(f"  {notebook.name} failed in {mode} mode:\n{err[-3000:]}", file=sys.stderr)
    return time.perf_counter() - start, peak[0] / 2**20, total[0] / 2**20, proc.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose name starts with one of these")
    parser.add_argument("--modes", default="ci,cpu")
    args = parser.parse_args()
    modes = args.modes.split(",")
    notebooks = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
                 if not args.prefixes or p.name.startswith(tuple(args.prefixes))]
    print(f"{'notebook':<34}" + "".join(f"{m + ' s':>9}{m + ' GiB':>9}{'all':>6}" for m in modes)
          + ("   cpu/ci" if {"ci", "cpu"} <= set(modes) else ""))
    failed = over = 0
    for notebook in notebooks:
        results = {mode: run(notebook, mode) for mode in modes}
        row = f"{notebook.stem:<34}"
        for mode in modes:
            seconds, gib, all_gib, ok = results[mode]
            row += f"{seconds:>9.1f}{gib:>9.2f}{all_gib:>6.2f}" if ok else f"{'FAILED':>24}"
            failed += not ok
            over += mode == "cpu" and all_gib > GOAL_GIB
        if {"ci", "cpu"} <= set(modes):
            row += f"{results['cpu'][0] / results['ci'][0]:>9.1f}x"
        print(row, flush=True)
    print(f"goal: peak <= {GOAL_GIB} GiB per notebook in cpu mode; {over} over, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
