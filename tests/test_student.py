"""The student versions: no solutions, no outputs, and no lesson cell that needs a solution's names.

A student version is its notebook without the solution cells. ``make test`` runs every notebook, exercise
stubs included, so a student version can only fail where a later cell needs something a solution did: a
name it defined (``make_student.solution_leaks``) or a change it made (a solution may only define names and
confirm). ``make test-student`` runs every student version top to bottom as well."""
import ast
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_student  # noqa: E402


def _solution(source):
    return new_code_cell(source, metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}})


def _exercise(source):
    return new_code_cell(source, metadata={"tags": ["exercise"]})


@pytest.mark.parametrize("path", make_student.NOTEBOOKS, ids=lambda p: p.stem)
def test_each_student_version_keeps_the_lesson_and_drops_every_solution(path):
    nb = nbformat.read(path, as_version=4)
    student = make_student.student_version(nb)
    kept = [c for c in nb.cells if "solution" not in c.metadata.get("tags", [])]
    assert len(student.cells) == len(kept) < len(nb.cells), "every notebook has at least one solution to drop"
    assert [c.source for c in student.cells] == [c.source for c in kept]
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student.cells if c.cell_type == "code")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for before, cell in zip(code, code[1:]):
        if "solution" in cell.metadata.get("tags", []):
            assert "exercise" in before.metadata.get("tags", []), f"tag the exercise before: {before.source[:60]!r}"


def test_a_lesson_cell_that_reads_a_solutions_name_is_refused():
    nb = new_notebook(cells=[
        new_code_cell("data = [3, 1, 2]"),
        _exercise("def my_sort(xs):\n    ...\n\nexercises.check(my_sort)"),
        _solution("def my_sort(xs):\n    return sorted(xs)\n\nbest = my_sort(data)\nchecks.confirm(check, my_sort)"),
        new_markdown_cell("Now use it."),
        new_code_cell("print(best[0], [x for x in data])"),
    ])
    assert make_student.solution_leaks(nb) == ["cell 4 reads 'best', which only the solution in cell 2 defines"]
    with pytest.raises(ValueError, match="cell 4 reads 'best'"):
        make_student.student_version(nb)


def test_names_the_lesson_binds_itself_are_not_leaks():
    nb = new_notebook(cells=[
        new_code_cell("vectors = load()\nr = 8"),
        _solution("def top(query, vectors, k):\n    return [r for r in range(k)]\nchecks.confirm(check, top)"),
        new_code_cell("!echo shell lines are fine\nprint(vectors, r, [k for k in range(3)])"),
        _solution("frame = 1\nchecks.confirm(check, frame)"),
        new_code_cell("frame = 2\nprint(frame)"),
    ])
    assert make_student.solution_leaks(nb) == []


def test_write_all_writes_every_notebook_clean(tmp_path):
    written = make_student.write_all(tmp_path, make_student.NOTEBOOKS[:2])
    assert [p.name for p in written] == [p.name for p in make_student.NOTEBOOKS[:2]]
    for path in written:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)


def _effects(source: str) -> list[str]:
    """The top-level statements of a solution that do more than define names or call ``checks.confirm``."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
    names = (ast.Name, ast.Tuple)
    return [ast.unparse(s)[:80] for s in ast.parse(code).body
            if not (isinstance(s, (ast.FunctionDef, ast.Import, ast.ImportFrom))
                    or isinstance(s, ast.Assign) and all(isinstance(t, names) for t in s.targets)
                    and all(isinstance(e, ast.Name) for t in s.targets if isinstance(t, ast.Tuple) for e in t.elts)
                    or isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                    and ast.unparse(s.value.func) == "checks.confirm")]


@pytest.mark.parametrize("path", make_student.NOTEBOOKS, ids=lambda p: p.stem)
def test_a_solution_only_defines_names_and_confirms(path):
    nb = nbformat.read(path, as_version=4)
    found = {i: _effects(c.source) for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])}
    assert found and not any(found.values()), f"solution cells that change state: {found}"


def test_a_solution_that_changes_state_is_caught():
    assert _effects("def f(x):\n    return x\nbest = f(1)\nchecks.confirm(check, f)") == []
    assert _effects("data.append(4)\nchecks.confirm(check, f)") == ["data.append(4)"]
    assert _effects("frame['x'] = 1") == ["frame['x'] = 1"]
