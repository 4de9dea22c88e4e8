"""The distributed training script: batching, one process, and two processes (DDP over gloo) giving the same run.

Tiny: 8 requests, 2 steps of a global batch of 4, 32-token examples; one thread per process.
"""
import json
import os
import subprocess

import pytest

from helpers import distributed
from helpers.environment import REPO_ROOT

TINY = ["--examples", "8", "--steps", "2", "--batch-size", "4", "--max-length", "64", "--lr", "1e-3"]


def test_global_batches_repeat_and_cover_the_data():
    batches = distributed.global_batches(10, 4, steps=5, seed=3)
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert sorted(sum(batches[:2], [])) == sorted(set(sum(batches[:2], [])))  # no repeat inside a pass
    assert batches == distributed.global_batches(10, 4, steps=5, seed=3)
    assert batches != distributed.global_batches(10, 4, steps=5, seed=4)


def test_shards_split_a_batch_without_overlap():
    batch = [7, 3, 9, 1, 4, 8]
    parts = [distributed.shard(batch, rank, 3) for rank in range(3)]
    assert sorted(sum(parts, [])) == sorted(batch) and parts[0] == [7, 1]


def test_launch_command_and_arguments():
    command = distributed.launch_command("out", 2, ["--steps", "3"])
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[-6:] == ["-m", "helpers.distributed", "--out", "out", "--steps", "3"]
    assert distributed.parse_args(["--out", "x"]).method == "lora"
    with pytest.raises(SystemExit):
        distributed.parse_args(["--out", "x", "--steps", "0"])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    return out, distributed.main(["--out", str(out), *TINY])


def test_one_process_trains_and_saves(one_process):
    out, summary = one_process
    assert summary["world_size"] == 1 and len(summary["losses"]) == 2
    assert summary["losses"][1] < summary["losses"][0]
    assert distributed.read_run(out)["losses"] == summary["losses"]
    assert (out / "final" / "adapter_config.json").exists()
    assert 0 < summary["trainable"] < summary["total"] / 100


def test_two_processes_match_one(one_process, tmp_path):
    out_one, one = one_process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(distributed.launch_command(tmp_path / "two", 2, TINY), cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = distributed.read_run(tmp_path / "two")
    assert two["world_size"] == 2 and two["backend"] == "gloo"
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    # Adam divides each gradient by its running size, so rounding in gradients near zero moves a weight by a
    # small part of one step (lr = 1e-3 here); a real mismatch (another batch, another seed) moves it by ~lr.
    assert distributed.max_difference(out_one / "final", tmp_path / "two" / "final") < 1e-4
    assert json.loads(done.stdout.strip().splitlines()[-1])["world_size"] == 2
