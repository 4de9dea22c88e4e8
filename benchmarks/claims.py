"""The strict claims run: every notebook top to bottom in `cpu` mode under Binder's 2 GiB, every claim checked.

    make claims                          # every notebook
    python benchmarks/claims.py 04 05    # only notebooks whose name starts with 04 or 05 (rows of the
                                         # others are kept from the last run, with their own commit)

Each notebook runs in a fresh kernel (as :mod:`course_time` runs it) with ``COURSE_MODE=cpu``,
``MEM_LIMIT`` at 2 GiB (what Binder sets: the notebooks' memory guards read it) and ``COURSE_STRICT=1``:
an expectation that is not met (:func:`helpers.checks.expect`) stops the notebook, and the run fails.
The peak resident memory of the kernel and every process it starts must stay within the 2 GiB as well.

Writes ``benchmarks/results/claims.csv``: one row per expectation (notebook, claim, measured value, expected
range, pass), plus two rows per notebook for its wall time (the goal: 5 minutes) and the peak memory of all
its processes (the limit: 2 GiB), each row with the commit it ran on. Commit that file whenever notebooks or
helpers change in a way that can move a number.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_time import NOTEBOOKS, ROOT, run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "claims.csv"
LIMIT_GIB = 2.0
GOAL_SECONDS = 300
COLUMNS = ["notebook", "key", "claim", "measured", "expected", "pass", "value", "low", "high", "commit"]


def commit() -> str:
    """HEAD, with ``+dirty`` when tracked notebooks, helpers or data differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "notebooks", "helpers", "data"], cwd=ROOT)
    return head + ("+dirty" if dirty.returncode else "")


def run_notebook(path: Path, sha: str) -> tuple[list[dict], bool]:
    """Run one notebook strictly; return its rows and whether every claim, the memory limit included, held."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "claims.jsonl"
        env = {"MEM_LIMIT": str(int(LIMIT_GIB * 2**30)), "COURSE_STRICT": "1", "COURSE_CLAIMS_LOG": str(log)}
        seconds, _, peak_all, ok = run(path, "cpu", env)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    notebook = path.name[:2]
    rows = [{**r, "value": f"{r['value']:.6g}", "low": f"{r['low']:.6g}", "high": f"{r['high']:.6g}"}
            for r in rows]
    rows += [
        {"notebook": notebook, "key": "run_time", "claim": "the notebook runs top to bottom (goal: 5 minutes)",
         "measured": f"{seconds:.0f} s" if ok else f"failed after {seconds:.0f} s", "expected": "at most 300 s",
         "pass": ok and seconds <= GOAL_SECONDS, "value": f"{seconds:.1f}", "low": "0", "high": str(GOAL_SECONDS)},
        {"notebook": notebook, "key": "peak_memory", "claim": "peak memory of all its processes",
         "measured": f"{peak_all:.2f} GiB", "expected": f"at most {LIMIT_GIB:.2f} GiB",
         "pass": peak_all <= LIMIT_GIB, "value": f"{peak_all:.3f}", "low": "0", "high": str(LIMIT_GIB)},
    ]
    for row in rows:
        row["commit"] = sha
    claims_ok = all(r["pass"] for r in rows if r["key"] != "run_time")   # 5 minutes is a goal, not a limit
    return rows, ok and claims_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose name starts with one of these")
    args = parser.parse_args()
    notebooks = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
                 if not args.prefixes or p.name.startswith(tuple(args.prefixes))]
    sha = commit()
    ran = {p.name[:2] for p in notebooks}
    kept = []
    if RESULTS.exists() and args.prefixes:
        kept = [r for r in csv.DictReader(RESULTS.open(encoding="utf-8")) if r["notebook"] not in ran]
    rows, failed = [], []
    for path in notebooks:
        print(f"{path.stem} ...", flush=True)
        got, ok = run_notebook(path, sha)
        rows += got
        failed += [] if ok else [path.stem]
        for r in got:
            mark = "✓" if str(r["pass"]) == "True" else ("·" if r["key"] == "run_time" else "✗")
            print(f"  {mark} {r['claim']}: {r['measured']} ({r['expected']})", flush=True)
    everything = sorted(kept + rows, key=lambda r: r["notebook"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(everything)
    total = sum(float(r["value"]) for r in rows if r["key"] == "run_time")
    print(f"{len(rows)} rows -> {RESULTS.relative_to(ROOT)}; {total / 60:.1f} min for {len(notebooks)} notebooks; "
          + (f"FAILED: {', '.join(failed)}" if failed else "every claim held"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
