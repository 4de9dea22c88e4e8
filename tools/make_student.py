"""Write the student versions of the notebooks: the same lessons with every solution taken out.

    python tools/make_student.py              # writes student/NN_*.ipynb (make student)
    python tools/make_student.py --out DIR    # somewhere else

The notebooks in ``notebooks/`` are the instructor's versions: each exercise is followed by a collapsed
solution cell (tag ``solution``). A student version:

- drops every solution cell, so Run All shows no answer; each exercise's check then says "not done yet";
- clears every output and execution count;
- is refused when a later cell reads a name that only a solution defines (a function, a variable or an
  import): in a student version that name would be missing, or the exercise's unfinished stub. The error
  names the notebook, the cell and the name.

``student/`` sits beside ``notebooks/``, so the notebooks' relative paths (``..`` for the course folder)
work unchanged. It is not committed: generate it for a class.
"""
from __future__ import annotations

import argparse
import ast
import sys
from copy import deepcopy
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _python(source: str) -> ast.Module:
    """Parse a cell, with IPython's ``!shell`` and ``%magic`` lines read as ``pass``."""
    lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line
             for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def defined_names(source: str, top_level: bool = False) -> set[str]:
    """Names a cell binds: assignments, loop targets, defs, classes, imports and, unless ``top_level``,
    also the names bound inside its functions and comprehensions (arguments, local variables)."""
    names, todo = set(), list(ast.iter_child_nodes(_python(source)))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        local_scope = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                                        ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp))
        if not (top_level and local_scope):
            todo.extend(ast.iter_child_nodes(node))
    return names


def read_names(source: str) -> set[str]:
    return {node.id for node in ast.walk(_python(source)) if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)}


def solution_leaks(nb) -> list[str]:
    """Where a cell after a solution reads a name that the solution alone defines, as readable lines."""
    problems, only_in_solutions, lesson = [], {}, set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if "solution" in tags:
            new = defined_names(cell.source, top_level=True) - lesson
            only_in_solutions.update(dict.fromkeys(new, index))
            continue
        if "exercise" not in tags:   # an exercise's stub is the learner's own, unfinished answer
            own = defined_names(cell.source)   # a name the cell binds itself (a loop variable, say) is its own
            for name in sorted((read_names(cell.source) - own) & set(only_in_solutions)):
                problems.append(f"cell {index} reads {name!r}, which only the solution in cell "
                                f"{only_in_solutions[name]} defines")
            for name in own:   # from here on the lesson's own definition stands
                only_in_solutions.pop(name, None)
            lesson |= defined_names(cell.source, top_level=True)
    return problems


def student_version(nb):
    """A copy of ``nb`` without its solution cells and outputs. Raises ``ValueError`` on a solution leak."""
    problems = solution_leaks(nb)
    if problems:
        raise ValueError("a later cell depends on a solution; define what it needs outside the solution "
                         "cell (for example from helpers.exercises):\n  " + "\n  ".join(problems))
    copy = deepcopy(nb)
    copy.cells = [cell for cell in copy.cells if "solution" not in _tags(cell)]
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.get("metadata", {}).pop("execution", None)
    return copy


def write_all(out: Path, notebooks=NOTEBOOKS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written, failures = [], []
    for path in notebooks:
        try:
            student = student_version(nbformat.read(path, as_version=4))
        except ValueError as error:
            failures.append(f"{path.name}: {error}")
            continue
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    if failures:
        raise SystemExit("\n".join(failures))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "student", help="folder to write (default student/)")
    args = parser.parse_args(argv)
    written = write_all(args.out)
    print(f"wrote {len(written)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
