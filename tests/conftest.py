"""Test settings: CI mode, offline, one thread, a mirror of the public datasets when one is beside the repo."""
import os
from pathlib import Path

os.environ.setdefault("COURSE_MODE", "ci")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
_shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if _shared.is_dir():
    os.environ.setdefault("COURSE_SHARED_DATASETS", str(_shared))
