"""Every notebook is committed clean and follows the course's shape (COURSE_STYLE.md).

Running them is nbval's job: `make test` passes `--nbval-lax notebooks`.
"""
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from helpers.environment import REPO_URL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The Colab address of the notebooks, derived from the course's one address.
COLAB = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/") + "/blob/main/notebooks/"


def _sync_tool():
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_are_numbered_in_order():
    assert NOTEBOOKS, "no notebooks found"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS)
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_shaped(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code), "commit notebooks with outputs cleared"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · ")
    assert COLAB + path.name in first.source, "the Colab badge must open this notebook"
    assert "**Time:**" in first.source and "After this notebook you can" in first.source
    assert 3 <= len(re.findall(r"^\d\. ", first.source, flags=re.M)) <= 5, "give 3-5 objectives"
    assert "helpers.setup()" in code[0].source and "google.colab" in code[0].source
    assert f"!git clone --depth 1 {REPO_URL} /content/course" in code[0].source, "Colab clones the course"
    assert "## Wrap-up" in "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_hidden_and_checked(path):
    """A solution is collapsed (its code and its one-line output) and proves itself with checks.confirm."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            folded = cell.metadata.get("jupyter", {})
            assert folded.get("source_hidden") and folded.get("outputs_hidden"), "collapse solution cells"
            assert "checks.confirm(" in cell.source, "a solution cell must prove itself with checks.confirm"
            assert "print(" not in cell.source, "a solution prints only the one ✓/✗ line of checks.confirm"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_fails_on_purpose_and_run_time_is_reported(path):
    """Run All never stops: an error is demonstrated by catching it and printing it. The wrap-up prints the
    notebook's measured run time next to the Time line's estimate."""
    nb = nbformat.read(path, as_version=4)
    assert not any("raises-exception" in c.metadata.get("tags", []) for c in nb.cells)
    assert any("env.run_time()" in c.source for c in nb.cells if c.cell_type == "code")
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    assert tags <= {"solution", "exercise", "nbval-ignore-output", "nbval-check-output", "nbval-skip"}, tags


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_links_to_notebooks_exist(path):
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\((\d\d_[a-z0-9_]+\.ipynb)\)", text):
        if int(target[:2]) < len(NOTEBOOKS):
            assert (path.parent / target).exists(), f"broken link to {target}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short(path):
    nb = nbformat.read(path, as_version=4)
    lengths = sorted(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code")
    assert lengths[len(lengths) // 2] <= 14, "keep the median code cell near 10 lines"
    assert max(lengths) <= 30, "move long code into helpers"


def test_addresses_follow_repo_url():
    """Badges and clone lines are written from REPO_URL by tools/sync_notebooks.py: nothing is out of date,
    and a new address would rewrite every notebook and README.md."""
    tool = _sync_tool()
    assert tool.sync(write=False) == [], "run: python tools/sync_notebooks.py"
    assert tool.binder_badge() in (ROOT / "README.md").read_text(encoding="utf-8")
    tool.REPO_URL = "https://github.com/someone-else/a-fork"
    assert tool.colab_url("00_x.ipynb") == ("https://colab.research.google.com/github/someone-else/a-fork/blob/main/"
                                            "notebooks/00_x.ipynb")
    assert len(tool.sync(write=False)) == len(NOTEBOOKS) + 1
