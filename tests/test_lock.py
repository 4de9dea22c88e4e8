"""The lock resolves for Colab's Python: every pin has a file that pip would install there.

Colab runs CPython 3.12 on x86_64 Linux (Ubuntu 22.04, glibc 2.35). The check resolves, never installs:

1. It reads every pin's files from the package index (the JSON form of the simple API, PEP 691) and finds a
   wheel whose tags Colab's pip accepts, not yanked, whose Requires-Python admits 3.12.
2. For the pins whose wheel is small, it also runs pip itself: one ``pip download --no-deps --only-binary
   :all: --python-version 3.12`` for Colab's platform, into a temporary folder, so that pip's own finder
   agrees. Pins whose wheel is over ``BIG`` bytes (torch's CUDA build is about 530 MB; the model packages are
   80-90 MB each) are checked through the index only: ``pip download`` would fetch the whole wheel, pip has
   no way to resolve a platform that is not this machine's without fetching, and this index serves no
   separate metadata files that would make pip fetch less. Torch is not installed on Colab by the course
   anyway (``helpers.colab`` keeps Colab's own build), but the lock must still name a version that exists
   there.

Needs the package index (CI has it); skips, saying so, where it cannot be reached.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from helpers.colab import read_lock
from helpers.environment import REQUIREMENTS

COLAB_PYTHON = (3, 12)
COLAB_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
COLAB_TAGS = {*cpython_tags(COLAB_PYTHON, abis=["cp312"], platforms=COLAB_PLATFORMS),
              *compatible_tags(COLAB_PYTHON, "cp312", platforms=COLAB_PLATFORMS)}
BIG = 50 * 10**6   # bytes: larger wheels are checked through the index only
# Pure-Python packages that publish no wheel: pip builds them from source on any Python, Colab's included.
SOURCE_ONLY = {"rouge-score"}
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def index_files(name: str) -> list[dict]:
    request = urllib.request.Request(f"{INDEX}/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)["files"]


@pytest.fixture(scope="module")
def pins():
    lock = read_lock(REQUIREMENTS)
    pins = {**lock.pins, **lock.no_deps, **lock.cuda_only}
    try:
        index_files("pip")
    except (urllib.error.URLError, OSError) as error:
        pytest.skip(f"the package index {INDEX} cannot be reached ({error}), so the lock cannot be resolved")
    return pins


def _admits_colab(file: dict) -> bool:
    requires = file.get("requires-python")
    python = ".".join(map(str, COLAB_PYTHON))
    return not file.get("yanked") and (not requires or SpecifierSet(requires).contains(python))


def colab_files(name: str, version: str) -> tuple[list[dict], list[dict]]:
    """(wheels Colab's pip would take, source archives it could build) for ``name==version``."""
    wheels, sources = [], []
    for file in index_files(name):
        filename = file["filename"]
        try:
            if filename.endswith(".whl"):
                found, found_version, _, tags = parse_wheel_filename(filename)
                if not tags & COLAB_TAGS:
                    continue
                target = wheels
            else:
                found, found_version = parse_sdist_filename(filename)
                target = sources
        except ValueError:   # an old file with a name the current rules reject
            continue
        if canonicalize_name(found) == canonicalize_name(name) and found_version == Version(version) \
                and _admits_colab(file):
            target.append(file)
    return wheels, sources


def test_every_pin_has_a_file_for_colab_and_pip_agrees(pins, tmp_path):
    with ThreadPoolExecutor(8) as pool:
        found = dict(zip(pins, pool.map(lambda item: colab_files(*item), pins.items())))
    missing = [f"{name}=={version}" for name, version in pins.items()
               if not found[name][0] and not (canonicalize_name(name) in SOURCE_ONLY and found[name][1])]
    assert not missing, f"no file for CPython {COLAB_PYTHON} on Colab's platform: {missing}"
    small = {name: version for name, version in pins.items()
             if found[name][0] and max(f.get("size") or 0 for f in found[name][0]) <= BIG}
    assert "torch" not in small and len(small) >= len(pins) // 2, "check the BIG threshold"

    platforms = [option for platform in COLAB_PLATFORMS for option in ("--platform", platform)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "--python-version", ".".join(map(str, COLAB_PYTHON)), "--implementation", "cp", "--abi", "cp312",
         *platforms, "--dest", str(tmp_path), *(f"{name}=={version}" for name, version in small.items())],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    downloaded = {canonicalize_name(parse_wheel_filename(p.name)[0]) for p in tmp_path.glob("*.whl")}
    assert downloaded == {canonicalize_name(name) for name in small}
