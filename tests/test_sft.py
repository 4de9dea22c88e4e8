"""The course's training path (helpers.sft on TRL): the label mask, the loss, the result file, checkpoints,
pause/resume/cancel, bf16 base weights, other peft methods, and the same script in one or two processes.

Tiny: 8 training and 4 validation requests, batches of 4, one thread."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from peft import LoraConfig, PromptTuningConfig

from helpers import model as base
from helpers import sft, sft_launch
from helpers.course_data import intent_chat, load_intents
from helpers.environment import REPO_ROOT, bf16_supported, qlora_available
from helpers.metrics import write_result_csv

torch.set_num_threads(1)
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def config(out, **overrides):
    settings = dict(num_train_epochs=3, per_device_train_batch_size=4, max_length=64, learning_rate=2e-3,
                    save_total_limit=2, seed=1, disable_tqdm=True)
    return sft.course_config(out, **{**settings, **overrides})


@pytest.fixture(scope="module")
def data():
    frame = load_intents("train")
    examples = [intent_chat(t, label) for t, label in zip(frame.text, frame.label)]
    return examples[:8], examples[8:12]


@pytest.fixture(scope="module")
def tokenizer():
    return base.load_tokenizer()


def run(data, out, **kwargs):
    model, tokenizer = base.load_base_model(dtype=kwargs.pop("dtype", None))
    args = config(out, **kwargs.pop("args", {}))
    return sft.train(model, tokenizer, *data, args, kwargs.pop("peft", LoraConfig(**LORA)), eval_every=2, **kwargs)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """One uninterrupted run (3 epochs, 6 steps) that several tests read."""
    events, out = [], tmp_path_factory.mktemp("straight")
    return run(data, out, on_event=events.append), events, out


def trained_text(example, tokenizer):
    encoded = sft.encode_example(example, tokenizer)
    return tokenizer.decode([t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label != -100])


# ---------------------------------------------------------------- the label mask
def test_mask_covers_exactly_the_replies_and_skips_weight_zero(tokenizer):
    example = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Turn on the porch light."},
        {"role": "assistant", "content": "Done, it is on.", "weight": 0},
        {"role": "user", "content": "And the heater?"},
        {"role": "assistant", "content": "The Hearth H2 starts at 6:30."}]}
    encoded = sft.encode_example(example, tokenizer)
    assert encoded["input_ids"] == tokenizer.apply_chat_template(example["messages"], tokenize=True,
                                                                  return_dict=True)["input_ids"]
    labelled = [i for i, label in enumerate(encoded["labels"]) if label != -100]
    assert labelled == list(range(labelled[0], labelled[-1] + 1))  # one contiguous span: the last reply
    assert trained_text(example, tokenizer) == "The Hearth H2 starts at 6:30.<|im_end|>"
    both = {"messages": [{**m, "weight": 1} if m["role"] == "assistant" else m for m in example["messages"]]}
    assert trained_text(both, tokenizer) == "Done, it is on.<|im_end|>The Hearth H2 starts at 6:30.<|im_end|>"
    assert all(label in (-100, tok) for tok, label in zip(encoded["input_ids"], encoded["labels"]))


def test_mask_for_intent_chat_and_legacy_prompt_completion(tokenizer):
    assert trained_text(intent_chat("Dim the hall lights.", "lights"), tokenizer) == "lights<|im_end|>"
    legacy = {"prompt": "Dim the hall lights.\n\n###\n\n", "completion": " lights END"}
    assert trained_text(legacy, tokenizer) == " lights END<|im_end|>"
    data = sft.chat_dataset([intent_chat("Dim the hall lights.", "lights")] * 2, tokenizer, max_length=256)
    assert data.column_names == ["input_ids", "labels"] and len(data) == 2
    with pytest.raises(ValueError, match="None of the training examples has an assistant reply.*10 tokens"):
        sft.chat_dataset([intent_chat("Dim the hall lights.", "lights")], tokenizer, max_length=10)


def test_bad_examples_get_the_validators_message_before_any_tokenizer(tokenizer, tmp_path):
    bad = [intent_chat("Dim the lights.", "lights"), {"messages": [{"role": "user", "content": "Hi"}]},
           {"messages": [{"role": "assistant", "content": "x", "weight": 2}]}, {"text": "plain"}]
    with pytest.raises(ValueError) as error:
        sft.chat_dataset(bad, tokenizer)
    text = str(error.value)
    assert text.startswith("4 problem(s) in training examples; fix them before training:")
    assert "training examples:2: [no_assistant]" in text and "training examples:3: [bad_weight]" in text
    assert "training examples:4: [missing_messages]" in text and "-- fix:" in text
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(bad[1]) + "\n")
    with pytest.raises(ValueError, match=f"{path}:1: \\[no_assistant\\]"):
        sft.chat_dataset(path, tokenizer)


# ---------------------------------------------------------------- the loss
def test_the_labelled_positions_loss_equals_the_transformers_loss(data, tokenizer, tmp_path):
    model, _ = base.load_base_model()
    dataset = sft.chat_dataset(data[0][:3], tokenizer)
    trainer = sft.CourseTrainer(model=model, args=config(tmp_path), train_dataset=dataset, processing_class=tokenizer)
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader(dataset))))
    with torch.no_grad():
        loss_sum, correct, n = trainer.token_loss(model, batch)
        reference = model(**batch)
    assert n == sum(sum(label != -100 for label in row[1:]) for row in dataset["labels"])
    assert loss_sum.item() / n.item() == pytest.approx(reference.loss.item(), abs=1e-4)
    keep = batch["labels"][:, 1:] != -100
    assert correct == (reference.logits[:, :-1].argmax(-1)[keep] == batch["labels"][:, 1:][keep]).sum()
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)   # the real head is back in place


# ---------------------------------------------------------------- a straight run
def test_events_rows_and_result_file(straight, data, tokenizer, tmp_path):
    result, events, _ = straight
    assert result.status == "succeeded"
    assert [e["type"] for e in events] == ["metrics", "metrics", "epoch_end", "checkpoint"] * 3
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["step"] for e in metrics] == [1, 2, 3, 4, 5, 6] and {e["total_steps"] for e in metrics} == {6}
    assert [e["valid_loss"] is not None for e in metrics] == [False, True] * 3   # eval_every=2
    assert [e["epoch"] for e in metrics] == [1, 1, 2, 2, 3, 3]
    ends = [e for e in events if e["type"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [1, 2, 3] and all(0 <= e["full_valid_mean_token_accuracy"] <= 1 for e in ends)
    frame = result.metrics
    assert len(frame) == 6 and frame.full_valid_loss.notna().tolist() == [False, True] * 3
    csv = write_result_csv(frame, tmp_path / "result.csv")
    assert csv.read_text().splitlines()[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(pd.read_csv(csv)) == 6
    # every real token of the 8 examples, three times
    assert result.trained_tokens == 3 * sum(len(sft.encode_example(e, tokenizer)["input_ids"]) for e in data[0])


def test_loss_falls_when_the_model_learns_its_examples(straight):
    loss = straight[0].metrics.train_loss
    assert loss.iloc[-2:].mean() < 0.5 * loss.iloc[:2].mean()
    full = straight[0].metrics.full_valid_loss.dropna()
    assert full.iloc[-1] < full.iloc[0]


def test_only_the_last_checkpoints_are_kept(straight):
    result, events, out = straight
    assert [s for s, _ in result.checkpoints] == [4, 6]
    assert {"checkpoint-4", "checkpoint-6", "final"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoint-2").exists()
    assert [e["path"] for e in events if e["type"] == "checkpoint"][-2:] == [p for _, p in result.checkpoints]
    names = {p.name for p in Path(result.checkpoints[-1][1]).iterdir()}
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", sft.ROWS_FILE} <= names


def test_resume_from_an_epoch_checkpoint_continues_the_same_curve(straight, data, tmp_path):
    result, _, out = straight
    resumed = run(data, tmp_path, resume_from=result.checkpoints[0][1])
    assert resumed.status == "succeeded" and resumed.metrics.step.tolist() == [1, 2, 3, 4, 5, 6]
    for column in ("train_loss", "train_accuracy", "valid_loss"):
        assert resumed.metrics[column].iloc[4:].to_numpy() == pytest.approx(
            result.metrics[column].iloc[4:].to_numpy(), abs=1e-5, nan_ok=True)
    assert resumed.trained_tokens == result.trained_tokens


def test_pause_mid_epoch_then_resume_then_cancel(straight, data, tmp_path):
    result = straight[0]
    calls = []

    def pause_after_step_1():
        calls.append(1)
        return "pause" if len(calls) == 1 else None

    paused = run(data, tmp_path, should_stop=pause_after_step_1)
    assert paused.status == "paused" and paused.final_dir is None and len(paused.metrics) == 1
    assert Path(paused.resume_from).name == "checkpoint-1"
    seen = []
    resumed = run(data, tmp_path, resume_from=paused.resume_from, on_event=seen.append,
                  should_stop=lambda: "cancel" if seen and seen[-1].get("step") == 3 else None)
    assert resumed.status == "cancelled" and resumed.final_dir is None
    assert resumed.metrics.step.tolist() == [1, 2, 3]   # step 2 ends epoch 1; cancelled after step 3
    assert resumed.metrics.train_loss.to_numpy() == pytest.approx(result.metrics.train_loss.iloc[:3].to_numpy(), abs=1e-5)
    assert [e["type"] for e in seen] == ["metrics", "epoch_end", "checkpoint", "metrics"]
    assert not (tmp_path / "checkpoint-3").exists()   # a cancelled run keeps nothing new


def test_gradient_accumulation_gives_the_step_of_the_whole_batch(data, tmp_path):
    whole = run(data, tmp_path / "whole", args={"num_train_epochs": 1, "per_device_train_batch_size": 4,
                                                "train_sampling_strategy": "sequential"})
    pieces = run(data, tmp_path / "pieces", args={"num_train_epochs": 1, "per_device_train_batch_size": 2,
                                                  "gradient_accumulation_steps": 2,
                                                  "train_sampling_strategy": "sequential"})
    assert pieces.metrics.step.tolist() == [1, 2]   # 8 examples = 4 micro-batches of 2 = 2 steps
    assert pieces.metrics.train_loss.to_numpy() == pytest.approx(whole.metrics.train_loss.to_numpy(), abs=1e-5)
    # Adam divides by each gradient's running size, so rounding moves a weight by a tiny part of one step
    # (lr 2e-3); a real difference (another batch) moves weights by about a whole step.
    assert sft_launch.max_difference(whole.final_dir, pieces.final_dir) < 1e-4


def test_gradient_checkpointing_gives_the_same_curve_and_is_undone(data, tmp_path):
    plain = run(data, tmp_path / "plain", args={"num_train_epochs": 1})
    saving = run(data, tmp_path / "checkpointed", args={"num_train_epochs": 1, "gradient_checkpointing": True})
    assert saving.metrics.train_loss.to_numpy() == pytest.approx(plain.metrics.train_loss.to_numpy(), abs=1e-5)
    inner = saving.model.get_base_model()   # generation with this model keeps its key-value cache
    assert not inner.is_gradient_checkpointing


@pytest.mark.skipif(not bf16_supported("cpu")[0], reason="this CPU has no native bf16")
def test_a_bf16_base_trains_fp32_adapters_and_reloads_to_the_same_logits(data, tokenizer, tmp_path):
    result = run(data, tmp_path, dtype=torch.bfloat16, args={"num_train_epochs": 2, "save_strategy": "no"})
    params = list(result.model.named_parameters())
    assert {p.dtype for _, p in params if p.requires_grad} == {torch.float32}
    assert {p.dtype for _, p in params if not p.requires_grad} == {torch.bfloat16}
    assert result.metrics.train_loss.iloc[-1] < result.metrics.train_loss.iloc[0]
    same, _ = base.load_adapter(result.final_dir, bf16_base=True)
    batch = tokenizer([base.chat_prompt(tokenizer, intent_chat(t)) for t in ("Dim it.", "Warm up the house.")],
                      return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        assert torch.equal(result.model(**batch).logits, same(**batch).logits)
    on_fp32, _ = base.load_adapter(result.final_dir)
    assert {p.dtype for p in on_fp32.parameters()} == {torch.float32}


# ---------------------------------------------------------------- adapters and other methods
def test_saved_adapter_reloads_and_merges_to_the_same_logits(straight, data, tokenizer):
    result = straight[0]
    batch = tokenizer([base.chat_prompt(tokenizer, m["messages"][:2]) for m in data[1]], return_tensors="pt",
                      padding=True, add_special_tokens=False)
    with torch.no_grad():
        trained = result.model(**batch).logits
        loaded, _ = base.load_adapter(result.final_dir)
        assert not loaded.training and torch.equal(loaded(**batch).logits, trained)
        merged = base.merge(loaded)
        assert not hasattr(merged, "peft_config") and torch.allclose(merged(**batch).logits, trained, atol=1e-3)
        fresh, _ = base.load_base_model()
        assert not torch.allclose(fresh(**batch).logits, trained, atol=1e-2)   # training changed something


def test_prompt_tuning_trains_only_its_virtual_tokens(data, tokenizer, tmp_path):
    peft = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    result = run((data[0][:4], data[1][:2]), tmp_path, peft=peft,
                 args={"num_train_epochs": 1, "learning_rate": 3e-2, "save_strategy": "no"})
    assert result.status == "succeeded" and len(result.metrics) == 1 and result.metrics.valid_loss.notna().all()
    assert result.model.get_nb_trainable_parameters()[0] == 4 * 576
    with pytest.raises(ValueError, match="nothing to merge"):
        base.merge(result.model)


def test_qlora_and_bf16_are_detected_not_assumed():
    ok, reason = qlora_available()
    if not torch.cuda.is_available():
        assert ok is False and "CUDA" in reason
    ok, reason = bf16_supported("cpu")
    assert isinstance(ok, bool) and reason.startswith("CPU")
    settings = sft.course_config("out")
    assert settings.gradient_checkpointing is False and settings.bf16 is torch.cuda.is_available()


# ---------------------------------------------------------------- the same script, one or two processes
TINY = ["--examples", "8", "--steps", "2", "--batch-size", "4", "--lr", "1e-3"]


def test_two_processes_train_what_one_does(tmp_path):
    peft = LoraConfig(**{**LORA, "target_modules": ["q_proj", "v_proj"]})
    one = sft_launch.launch(tmp_path / "one", 1, TINY, threads=1, peft_config=peft)
    assert one["world_size"] == 1 and len(one["losses"]) == 2 and one["losses"][1] < one["losses"][0]
    assert 0 < one["trainable"] < one["total"] / 100 and one["wall_seconds"] > one["seconds"]
    two = sft_launch.launch(tmp_path / "two", 2, TINY, threads=1, peft_config=peft)
    assert two["world_size"] == 2 and two["backend"] == "gloo" and len(two["peak_rss_mb"]) == 2
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    assert sft_launch.max_difference(one["final_dir"], two["final_dir"]) < 1e-4
    with pytest.raises(RuntimeError, match="exited with code"):
        sft_launch.launch(tmp_path / "bad", 1, ["--batch-size", "3", "--steps", "x"])


def test_launch_command_and_deepspeed_configs():
    command = sft_launch.launch_command("out", 2, ["--steps", "3"])
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[-6:] == ["-m", "helpers.sft_launch", "--out", "out", "--steps", "3"]
    ds = sft_launch.launch_command("out", 4, [], deepspeed_config="helpers/deepspeed/zero2.json")
    assert "--use_deepspeed" in ds and "--multi_gpu" not in ds and ds[-1] == "--gpu"
    for stage in (1, 2, 3):
        settings = json.loads((REPO_ROOT / "helpers" / "deepspeed" / f"zero{stage}.json").read_text())
        assert settings["zero_optimization"]["stage"] == stage and settings["gradient_clipping"] == 1.0
    assert sft_launch.parse_args(["--out", "x"]).peft is None


def test_peak_memory_of_a_child_is_its_own():
    ballast = bytearray(600 * 2**20)   # the parent grows by 600 MB before it starts a child
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from helpers import sft_launch; print(sft_launch.peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert float(done.stdout) < 400 < sft_launch.peak_rss_mb()
    del ballast
