"""Write the course's address, from its one place (``helpers.environment.REPO_URL``), where it is repeated.

    python tools/sync_notebooks.py           # rewrite what is out of date, list the files changed
    python tools/sync_notebooks.py --check   # change nothing; exit 1 and list the files out of date

It touches three kinds of line and nothing else:

- the "Open in Colab" badge in the first cell of every notebook (it opens that notebook from ``BRANCH``);
- the ``!git clone`` line of every notebook's setup cell (its first code cell), which fetches the course on
  Colab;
- the Binder badge in README.md.

Running it twice changes nothing the second time.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.environment import REPO_URL  # noqa: E402

BRANCH = "main"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
README = ROOT / "README.md"
COLAB_BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)$", re.M)
CLONE = re.compile(r"^(\s*)!git clone --depth 1 \S+ /content/course$", re.M)
BINDER_BADGE = re.compile(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]"
                          r"\(https://mybinder\.org/v2/gh/[^)]*\)")


def _owner_repo() -> str:
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?", REPO_URL)
    if not match:
        raise ValueError(f"REPO_URL must be a GitHub repository address, not {REPO_URL!r}")
    return match.group(1)


def colab_url(notebook_name: str) -> str:
    return f"https://colab.research.google.com/github/{_owner_repo()}/blob/{BRANCH}/notebooks/{notebook_name}"


def colab_badge(notebook_name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook_name)})"


def clone_command() -> str:
    return f"!git clone --depth 1 {REPO_URL} /content/course"


def binder_badge() -> str:
    return (f"[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/{_owner_repo()}/{BRANCH}"
            "?urlpath=lab/tree/notebooks)")


def _replace_one(pattern: re.Pattern, text: str, new, where: str) -> str:
    result, count = pattern.subn(new, text)
    if count != 1:
        raise ValueError(f"{where}: expected one line matching {pattern.pattern!r}, found {count}")
    return result


def synced_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook with its badge and clone line written from REPO_URL (everything else as it was)."""
    notebook = nbformat.read(path, as_version=4)
    first, setup = notebook.cells[0], next(c for c in notebook.cells if c.cell_type == "code")
    first.source = _replace_one(COLAB_BADGE, first.source, lambda m: colab_badge(path.name), f"{path.name} cell 0")
    setup.source = _replace_one(CLONE, setup.source, lambda m: m.group(1) + clone_command(),
                                f"{path.name} setup cell")
    return notebook


def sync(write: bool = True) -> list[Path]:
    """Bring every notebook and README.md in line with REPO_URL; return the files that were (or would be)
    changed."""
    changed = []
    for path in NOTEBOOKS:
        text = nbformat.writes(synced_notebook(path)) + "\n"   # nbformat.write's bytes
        if text != path.read_text(encoding="utf-8"):
            changed.append(path)
            if write:
                path.write_text(text, encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    synced = _replace_one(BINDER_BADGE, readme, lambda m: binder_badge(), README.name)
    if synced != readme:
        changed.append(README)
        if write:
            README.write_text(synced, encoding="utf-8")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args()
    changed = sync(write=not args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
