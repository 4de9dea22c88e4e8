"""Public datasets: download, cache, verify by SHA-256, parse into pandas, attribute.

The course never ships these datasets. ``data/public_datasets.json`` lists, for each one, its upstream
repository, commit, licence, the attribution to show, and every file with its download URL and SHA-256::

    from helpers import datasets
    df = datasets.load("snips_2017", split="train")   # fetch (if needed), verify, parse
    print(datasets.attribution("snips_2017"))          # show this in the notebook

Where a file comes from, in order:

1. the cache, ``cache_dir()/"datasets"/<path>``, if the file is there and its SHA-256 matches;
2. a mirror folder, if one is given (``mirror=`` or the ``COURSE_DATA_MIRROR`` environment variable),
   laid out like the cache: ``<mirror>/<path>``, e.g. ``<mirror>/ar_lsat/train_ar.json``;
3. the internet: the ``url`` from the manifest, written to a temporary file and renamed into place
   only when complete, so an interrupted download never leaves a half file behind.

Every file is checked against its SHA-256 before it is used. A file that fails the check is deleted and
:class:`DatasetError` explains what to do; you never get a bare library traceback.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from helpers.environment import DATA_DIR, cache_dir

MANIFEST = DATA_DIR / "public_datasets.json"
MIRROR_ENV = "COURSE_DATA_MIRROR"
TIMEOUT_S = 30
_log = logging.getLogger(__name__)


class DatasetError(RuntimeError):
    """A dataset file could not be fetched or failed its SHA-256 check; the message says how to fix it."""


def manifest() -> dict:
    """The parsed ``data/public_datasets.json``: ``{name: {title, repo, commit, license, ..., files}}``."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def info(name: str) -> dict:
    """The manifest entry of one dataset (raises ``KeyError`` naming the known datasets)."""
    entries = manifest()
    if name not in entries:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(entries)}")
    return entries[name]


def attribution(name: str) -> str:
    """The attribution text to show wherever the dataset is used."""
    return info(name)["attribution"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- fetching

def _mirror_folder(mirror) -> Path | None:
    chosen = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    return Path(chosen) if chosen else None


def _check(tmp: Path, dest: Path, entry: dict, source: str, fix: str) -> None:
    """Move ``tmp`` to ``dest`` if its hash is right; otherwise delete it and raise DatasetError."""
    got = sha256(tmp)
    if got != entry["sha256"]:
        tmp.unlink(missing_ok=True)
        raise DatasetError(
            f"{entry['path']}: SHA-256 mismatch in the copy from {source}\n"
            f"  expected {entry['sha256']}\n  got      {got}\n"
            f"The bad copy was deleted, not cached. Fix: {fix}")
    os.replace(tmp, dest)  # atomic on the same file system


def _temp_next_to(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    os.close(fd)
    return Path(name)


def _from_mirror(src: Path, dest: Path, entry: dict) -> None:
    tmp = _temp_next_to(dest)
    shutil.copyfile(src, tmp)
    _check(tmp, dest, entry, f"the mirror ({src})",
           f"replace {src} with a byte-for-byte copy of {entry['url']}, "
           f"or unset {MIRROR_ENV} to download it.")


def _download(dest: Path, entry: dict, mirror: Path | None) -> None:
    url = entry["url"]
    tmp = _temp_next_to(dest)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:  # HTTPError, timeouts, DNS and socket errors
        tmp.unlink(missing_ok=True)
        where = f" and it is not in the mirror {mirror}" if mirror else ""
        raise DatasetError(
            f"Could not download {entry['path']} from {url} ({exc}){where}.\n"
            "This machine may be offline. Fix: set the environment variable "
            f"{MIRROR_ENV} to a folder that holds a copy of the datasets, laid out as "
            f"<folder>/{entry['path']} (one sub-folder per dataset, as in data/public_datasets.json).") from None
    _check(tmp, dest, entry, url,
           "try again; if it fails again the upstream file has changed since the course pinned it, "
           "so please report it to the course (data/public_datasets.json holds the pinned hashes).")


def fetch(name: str, *, mirror=None, cache=None) -> Path:
    """Make sure every file of dataset ``name`` is in the cache and verified; return its folder.

    ``mirror``: a folder laid out like the cache (default: ``$COURSE_DATA_MIRROR``, if set).
    ``cache``: the cache root to use instead of :func:`cache_dir`; files go to ``<cache>/datasets/<path>``.
    """
    entry = info(name)
    root = (Path(cache) if cache is not None else cache_dir()) / "datasets"
    mirror_dir = _mirror_folder(mirror)
    for item in entry["files"]:
        dest = root / item["path"]
        if dest.exists():
            if sha256(dest) == item["sha256"]:
                continue  # 1. cached and verified
            _log.warning("cached %s failed its SHA-256 check; fetching it again", item["path"])
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if mirror_dir is not None and (mirror_dir / item["path"]).is_file():
            _from_mirror(mirror_dir / item["path"], dest, item)  # 2. mirror
        else:
            _download(dest, item, mirror_dir)  # 3. internet
    return root / name


# --------------------------------------------------------------------------- parsers

def _read_json(path: Path):
    return json.loads(path.read_bytes().decode("utf-8", errors="replace"))


def _choose(value: str, allowed: tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what}={value!r}; choose one of {', '.join(allowed)}")
    return value


def load_ar_lsat(split: str = "train", *, mirror=None, cache=None) -> pd.DataFrame:
    """AR-LSAT analytical-reasoning questions: id, context, question, answers (5), label (0-4), letter."""
    split = _choose(split, ("train", "val", "test"), "split")
    items = _read_json(fetch("ar_lsat", mirror=mirror, cache=cache) / f"{split}_ar.json")
    return pd.DataFrame({
        "id": [it["id_string"] for it in items],
        "context": [it["context"] for it in items],
        "question": [it["question"] for it in items],
        "answers": [list(it["answers"]) for it in items],
        "label": [int(it["label"]) for it in items],
        "letter": ["ABCDE"[int(it["label"])] for it in items],
    })


def load_snips(split: str = "train", *, mirror=None, cache=None) -> pd.DataFrame:
    """SNIPS 2017 utterances: text, intent (7 intents; ``train`` = the ``_full`` files, ``valid`` = validate)."""
    split = _choose(split, ("train", "valid"), "split")
    folder = fetch("snips_2017", mirror=mirror, cache=cache)
    pattern = "train_*_full.json" if split == "train" else "validate_*.json"
    rows = []
    for path in sorted(folder.glob(pattern)):
        # errors="replace": one PlayMusic file holds a badly encoded emoji.
        for intent, examples in _read_json(path).items():
            for ex in examples:
                rows.append({"text": "".join(seg["text"] for seg in ex["data"]), "intent": intent})
    return pd.DataFrame(rows, columns=["text", "intent"])


def load_clinc150(split: str = "train", variant: str = "full", include_oos: bool = True, *,
                  mirror=None, cache=None) -> pd.DataFrame:
    """CLINC150 queries: text, intent, domain; out-of-scope rows get intent and domain ``"oos"``."""
    split = _choose(split, ("train", "val", "test"), "split")
    variant = _choose(variant, ("full", "small"), "variant")
    folder = fetch("clinc150", mirror=mirror, cache=cache)
    data = _read_json(folder / f"data_{variant}.json")
    domain_of = {intent: domain for domain, intents in _read_json(folder / "domains.json").items()
                 for intent in intents}
    pairs = list(data[split]) + (list(data[f"oos_{split}"]) if include_oos else [])
    return pd.DataFrame({
        "text": [text for text, _ in pairs],
        "intent": [intent for _, intent in pairs],
        "domain": [domain_of.get(intent, "oos") for _, intent in pairs],
    })


def _doc_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else 0


def load_contoso(kind: str = "manuals", *, mirror=None, cache=None) -> pd.DataFrame:
    """Contoso Outdoor data: ``manuals`` (doc, title = first heading, text) or ``products`` (the CSV)."""
    kind = _choose(kind, ("manuals", "products"), "kind")
    folder = fetch("contoso_chat", mirror=mirror, cache=cache)
    if kind == "products":
        return pd.read_csv(folder / "product_info" / "products.csv")
    rows = []
    for path in sorted((folder / "manuals").glob("*.md"), key=_doc_number):
        text = path.read_bytes().decode("utf-8", errors="replace")
        title = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")
        rows.append({"doc": path.stem, "title": title, "text": text})
    return pd.DataFrame(rows, columns=["doc", "title", "text"])


LOADERS = {"ar_lsat": load_ar_lsat, "snips_2017": load_snips, "clinc150": load_clinc150,
           "contoso_chat": load_contoso}


def load(name: str, **kw) -> pd.DataFrame:
    """Load dataset ``name`` with its parser, e.g. ``load("clinc150", split="test", include_oos=False)``."""
    if name not in LOADERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name](**kw)
