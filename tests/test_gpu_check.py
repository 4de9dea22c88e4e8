"""benchmarks/gpu_check.py: its no-CUDA path, how it reads the QLoRA cell, and how it runs and stops a notebook.

The check itself needs a CUDA GPU and is not part of the suite.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_without_cuda_it_says_why_in_one_line_and_exits_0(tmp_path):
    if gpu_check.why_no_cuda() is None:
        pytest.skip("this machine has CUDA: the check would run for real")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("gpu_check cannot run: ")


def notebook_04(*outputs, source="ok, reason = trainer.qlora_available()\nprint(...)", count=7):
    cell = nbformat.v4.new_code_cell(source, execution_count=count, outputs=list(outputs))
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T10:00:00.000000Z",
                                  "shell.execute_reply": "2026-01-01T10:00:42.500000Z"}
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import helpers", execution_count=1), cell])


def test_the_qlora_row_passes_only_when_qlora_trained():
    trained = notebook_04(nbformat.v4.new_output("stream", name="stdout", text="QLoRA: 91.0% on 60 test requests "
                                                 "(LoRA 92.0%); peak GPU memory 0.41 GB\n"))
    row = gpu_check.qlora_row(trained)
    assert row["status"] == "ok" and row["seconds"] == 42.5 and row["note"].startswith("QLoRA: 91.0%")

    skipped = gpu_check.qlora_row(notebook_04(nbformat.v4.new_output(
        "stream", name="stdout", text="Skipped: QLoRA needs the bitsandbytes package: pip install bitsandbytes.\n")))
    assert skipped["status"] == "failed" and "bitsandbytes" in skipped["note"]
    error = nbformat.v4.new_output("error", ename="RuntimeError", evalue="CUDA out of memory", traceback=[])
    assert gpu_check.qlora_row(notebook_04(error))["note"] == "RuntimeError: CUDA out of memory"
    assert gpu_check.qlora_row(notebook_04(count=None))["note"] == "the QLoRA cell did not run"
    assert gpu_check.qlora_row(None)["status"] == "failed"
    assert gpu_check.qlora_row(notebook_04(source="print('no QLoRA here')"))["status"] == "failed"


def test_run_notebook_reports_errors_and_stops_at_the_limit(tmp_path):
    failing = tmp_path / "failing.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), failing)
    row = gpu_check.run_notebook(failing, tmp_path, limit=120)
    assert row["status"] == "failed" and row["note"].startswith("ZeroDivisionError")
    assert row["executed"].cells[0].outputs[0].output_type == "error"

    slow = tmp_path / "slow.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(60)")]), slow)
    row = gpu_check.run_notebook(slow, tmp_path, limit=3)
    assert row["status"] == "failed" and row["note"].startswith("stopped") and row["seconds"] < 30
