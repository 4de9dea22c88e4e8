"""The distributed training script: batching, one process, and two processes (DDP over gloo) giving the same run.

Tiny: 8 requests, 2 steps of a global batch of 4, examples cut at 64 tokens; one thread per process.
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


def test_deepspeed_configs_name_their_stage():
    folder = REPO_ROOT / "helpers" / "deepspeed"
    for stage in (1, 2, 3):
        config = json.loads((folder / f"zero{stage}.json").read_text())
        assert config["zero_optimization"]["stage"] == stage
        assert config["train_micro_batch_size_per_gpu"] >= 1 and config["gradient_clipping"] == 1.0
    assert json.loads((folder / "zero3.json").read_text())["zero_optimization"][
        "stage3_gather_16bit_weights_on_model_save"] is True  # else the saved model is only shards


def test_deepspeed_launch_command_runs_the_script_on_gpus():
    command = distributed.launch_command("out", 4, ["--steps", "3"], deepspeed_config="helpers/deepspeed/zero2.json")
    assert "--use_deepspeed" in command and "--multi_gpu" not in command
    assert command[command.index("--deepspeed_config_file") + 1] == "helpers/deepspeed/zero2.json"
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[-6:] == ["helpers.distributed", "--out", "out", "--gpu", "--steps", "3"]
    assert distributed.parse_args(["--out", "x", "--gpu"]).gpu is True


def test_adafactor_keeps_far_less_state_than_adamw():
    import torch

    def state_numbers(name):
        weight = torch.nn.Parameter(torch.randn(64, 32))
        optimizer = distributed.make_optimizer(name, [weight], 1e-3)
        weight.grad = torch.randn(64, 32)
        before = weight.detach().clone()
        optimizer.step()
        assert not torch.equal(before, weight.detach())  # it did update
        return sum(t.numel() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim())

    assert state_numbers("adamw") == 2 * 64 * 32           # two moments per weight
    assert state_numbers("adafactor") == 64 + 32           # one number per row and per column


def test_launch_runs_a_fresh_process_and_reports_failures(tmp_path):
    run = distributed.launch(tmp_path / "pt", 1, [*TINY, "--method", "prompt_tuning", "--lr", "3e-2"], threads=1)
    assert run["world_size"] == 1 and run["method"] == "prompt_tuning" and run["wall_seconds"] > run["seconds"]
    assert run["trainable"] < 20_000 and (tmp_path / "pt" / "final" / "adapter_config.json").exists()
    assert run["peak_gpu_mb"] is None and distributed.peak_mb(run) == run["peak_rss_mb"][0] > 200  # MB, a model
    with pytest.raises(RuntimeError, match="exited with code"):
        distributed.launch(tmp_path / "bad", 1, ["--steps", "0"])


def test_peak_memory_of_a_child_is_its_own():
    import sys

    ballast = bytearray(600 * 2**20)  # the parent grows by 600 MB before it starts a child
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from helpers import distributed; print(distributed.peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert float(done.stdout) < 400 < distributed.peak_rss_mb()
    del ballast
