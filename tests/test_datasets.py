"""Tests for helpers/datasets.py: fetch (cache, mirror, download), verification, parsers.

The real datasets come from a local mirror (``COURSE_SHARED_DATASETS``, default ``../shared/datasets``);
the network is never used: ``urllib.request.urlopen`` is replaced in every test.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import datasets

SHARED = Path(os.environ.get("COURSE_SHARED_DATASETS")
              or Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
SMALL = "ar_lsat"  # 4 files: the dataset the fetch tests use


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test: its own cache, no mirror from the environment, and no network."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "course-cache"))
    monkeypatch.delenv(datasets.MIRROR_ENV, raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("tests must not use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (SHARED / "SHA256SUMS").is_file():
        pytest.skip(f"dataset mirror not found at {SHARED} (set COURSE_SHARED_DATASETS to its folder)")
    return SHARED


@pytest.fixture(scope="session")
def shared_cache(mirror, tmp_path_factory) -> Path:
    """One cache filled from the mirror, shared by the parser tests."""
    cache = tmp_path_factory.mktemp("shared-cache")
    for name in datasets.manifest():
        datasets.fetch(name, mirror=mirror, cache=cache)
    return cache


def files_of(name):
    return datasets.info(name)["files"]


# --------------------------------------------------------------------------- manifest

def test_manifest_matches_the_mirror_checksums(mirror):
    sums = {line.split()[1][2:]: line.split()[0]
            for line in (mirror / "SHA256SUMS").read_text().splitlines() if line.strip()}
    listed = {}
    for name, entry in datasets.manifest().items():
        assert {"title", "repo", "commit", "license", "attribution", "files"} <= set(entry)
        assert entry["repo"].startswith("https://github.com/")
        assert any(f["path"] == f"{name}/LICENSE" for f in entry["files"])
        for f in entry["files"]:
            assert f["path"].startswith(name + "/")
            assert f["url"].startswith("https://raw.githubusercontent.com/")
            listed[f["path"]] = f["sha256"]
    data_files = {p: h for p, h in sums.items() if not p.endswith("README.upstream.md")}
    assert listed == data_files


def test_attribution_names_licence_and_link():
    for name, entry in datasets.manifest().items():
        text = datasets.attribution(name)
        assert entry["repo"] in text
    assert "LSAC" in datasets.attribution("ar_lsat")
    assert "CC BY 3.0" in datasets.attribution("clinc150")


def test_unknown_names_and_splits_are_clear():
    with pytest.raises(KeyError, match="known: ar_lsat"):
        datasets.fetch("imagenet")
    with pytest.raises(KeyError, match="unknown dataset"):
        datasets.load("imagenet")
    with pytest.raises(ValueError, match="choose one of train, val, test"):
        datasets.load_ar_lsat("dev")


# --------------------------------------------------------------------------- fetch

def test_fetch_from_mirror_then_from_cache(mirror, tmp_path):
    cache = tmp_path / "c"
    folder = datasets.fetch(SMALL, mirror=mirror, cache=cache)
    assert folder == cache / "datasets" / SMALL
    for f in files_of(SMALL):
        assert datasets.sha256(cache / "datasets" / f["path"]) == f["sha256"]
    # Second time: no mirror (a missing folder), no network, and it still works from the cache.
    assert datasets.fetch(SMALL, mirror=tmp_path / "no-such-mirror", cache=cache) == folder
    assert not list(folder.glob("*.part"))


def test_mirror_from_environment_and_default_cache(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.MIRROR_ENV, str(mirror))
    folder = datasets.fetch(SMALL)
    assert folder == tmp_path / "course-cache" / "datasets" / SMALL
    assert len(datasets.load_ar_lsat("val")) == 231


def test_corrupted_cache_file_is_fetched_again(mirror, tmp_path):
    cache = tmp_path / "c"
    folder = datasets.fetch(SMALL, mirror=mirror, cache=cache)
    bad = folder / "val_ar.json"
    bad.write_text("[]", encoding="utf-8")
    datasets.fetch(SMALL, mirror=mirror, cache=cache)
    expected = next(f["sha256"] for f in files_of(SMALL) if f["path"] == f"{SMALL}/val_ar.json")
    assert datasets.sha256(bad) == expected


def test_mirror_with_wrong_bytes_raises(mirror, tmp_path):
    fake = tmp_path / "mirror"
    shutil.copytree(mirror / SMALL, fake / SMALL)
    (fake / SMALL / "val_ar.json").write_bytes(b"not the real file")
    wrong = datasets.hashlib.sha256(b"not the real file").hexdigest()
    expected = next(f["sha256"] for f in files_of(SMALL) if f["path"] == f"{SMALL}/val_ar.json")
    cache = tmp_path / "c"
    with pytest.raises(datasets.DatasetError) as err:
        datasets.fetch(SMALL, mirror=fake, cache=cache)
    message = str(err.value)
    assert f"{SMALL}/val_ar.json" in message and expected in message and wrong in message
    assert "Fix:" in message
    folder = cache / "datasets" / SMALL
    assert not (folder / "val_ar.json").exists()
    assert not list(folder.glob("*.part"))
    assert (fake / SMALL / "val_ar.json").exists()  # the mirror itself is never touched


def test_offline_without_mirror_explains_what_to_do(tmp_path):
    with pytest.raises(datasets.DatasetError) as err:
        datasets.fetch(SMALL, cache=tmp_path / "c")
    message = str(err.value)
    first = files_of(SMALL)[0]
    assert "Could not download" in message and first["path"] in message and first["url"] in message
    assert "offline" in message and datasets.MIRROR_ENV in message
    assert err.value.__suppress_context__  # no chained library traceback
    assert not list((tmp_path / "c" / "datasets" / SMALL).glob("*.part"))


def _serve_mirror(mirror, calls, corrupt=()):
    """A stand-in for urlopen that answers each manifest URL with the mirror's bytes."""
    by_url = {f["url"]: f["path"] for name in datasets.manifest() for f in files_of(name)}

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        data = (mirror / by_url[url]).read_bytes()
        return io.BytesIO(b"garbage" if by_url[url] in corrupt else data)

    return fake_urlopen


def test_download_path(mirror, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", _serve_mirror(mirror, calls))
    folder = datasets.fetch(SMALL, cache=tmp_path / "c")
    assert [url for url, _ in calls] == [f["url"] for f in files_of(SMALL)]
    assert {timeout for _, timeout in calls} == {30}
    for f in files_of(SMALL):
        assert datasets.sha256(tmp_path / "c" / "datasets" / f["path"]) == f["sha256"]
    assert not list(folder.glob("*.part"))
    assert len(datasets.load_ar_lsat("test", cache=tmp_path / "c")) == 230
    assert len(calls) == len(files_of(SMALL))  # the load used the cache


def test_download_with_wrong_bytes_raises(mirror, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", _serve_mirror(mirror, calls, corrupt={f"{SMALL}/LICENSE"}))
    with pytest.raises(datasets.DatasetError, match=f"{SMALL}/LICENSE: SHA-256 mismatch"):
        datasets.fetch(SMALL, cache=tmp_path / "c")
    assert not (tmp_path / "c" / "datasets" / SMALL / "LICENSE").exists()


def test_http_error_is_a_dataset_error(monkeypatch, tmp_path):
    def not_found(url, timeout=None):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(datasets.DatasetError, match="404"):
        datasets.fetch(SMALL, cache=tmp_path / "c", mirror=tmp_path / "empty-mirror")


# --------------------------------------------------------------------------- parsers

@pytest.mark.parametrize("split, rows", [("train", 1585), ("val", 231), ("test", 230)])
def test_ar_lsat(shared_cache, split, rows):
    df = datasets.load_ar_lsat(split, cache=shared_cache)
    assert list(df.columns) == ["id", "context", "question", "answers", "label", "letter"]
    assert len(df) == rows
    assert df["answers"].map(len).eq(5).all()
    assert df["label"].between(0, 4).all()
    assert (df["letter"] == df["label"].map(lambda i: "ABCDE"[i])).all()
    assert df["id"].is_unique


def test_snips(shared_cache):
    train = datasets.load_snips("train", cache=shared_cache)
    valid = datasets.load_snips("valid", cache=shared_cache)
    assert list(train.columns) == ["text", "intent"]
    assert (len(train), len(valid)) == (13_784, 700)
    assert train["intent"].nunique() == valid["intent"].nunique() == 7
    assert valid["intent"].value_counts().eq(100).all()
    assert train["text"].str.strip().ne("").all()


def test_clinc150(shared_cache):
    train = datasets.load_clinc150("train", cache=shared_cache)
    assert list(train.columns) == ["text", "intent", "domain"]
    assert len(train) == 15_000 + 100
    assert train["intent"].nunique() == 151 and "oos" in set(train["intent"])
    assert set(train.loc[train["intent"] == "oos", "domain"]) == {"oos"}
    assert train["domain"].nunique() == 11
    in_scope = datasets.load_clinc150("test", include_oos=False, cache=shared_cache)
    assert len(in_scope) == 4_500 and in_scope["intent"].nunique() == 150
    assert "oos" not in set(in_scope["domain"])
    assert len(datasets.load_clinc150("val", cache=shared_cache)) == 3_000 + 100
    assert len(datasets.load_clinc150("train", variant="small", cache=shared_cache)) == 7_500 + 100


def test_contoso(shared_cache):
    manuals = datasets.load_contoso("manuals", cache=shared_cache)
    assert list(manuals.columns) == ["doc", "title", "text"]
    assert len(manuals) == 20
    assert list(manuals["doc"]) == [f"product_info_{n}" for n in range(1, 21)]
    assert manuals["title"].iloc[0] == "Information about product item_number: 1"
    assert manuals["text"].str.len().gt(500).all()
    products = datasets.load_contoso("products", cache=shared_cache)
    assert len(products) == 20 and {"id", "name", "price"} <= set(products.columns)


def test_load_dispatches(shared_cache):
    assert len(datasets.load("snips_2017", split="valid", cache=shared_cache)) == 700
    assert len(datasets.load("contoso_chat", kind="products", cache=shared_cache)) == 20
    assert json.loads(datasets.MANIFEST.read_text(encoding="utf-8")).keys() == datasets.LOADERS.keys()
