"""The trainer: label mask, loss, events, checkpoints, pause/resume/cancel, adapters. Tiny data, one thread."""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import model as base
from helpers import trainer
from helpers.course_data import intent_chat, load_intents

torch.set_num_threads(1)
# 8 training and 4 validation requests (about 60 tokens each): 2 steps per epoch at batch 4.
CONFIG = trainer.TrainConfig(n_epochs=3, batch_size=4, max_length=64, learning_rate=1e-3, eval_every=2,
                             keep_checkpoints=2, seed=1)


@pytest.fixture(scope="module")
def data():
    frame = load_intents("train")
    examples = [intent_chat(t, l) for t, l in zip(frame.text, frame.label)]
    return examples[:8], examples[8:12]


@pytest.fixture(scope="module")
def tokenizer():
    return base.load_tokenizer()


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """One uninterrupted run (3 epochs, 6 steps) that several tests read."""
    events = []
    out = tmp_path_factory.mktemp("straight")
    result = trainer.train(*data, config=CONFIG, output_dir=out, on_event=events.append)
    return result, events, out


def trained_text(example, tokenizer):
    encoded = trainer.encode_example(example, tokenizer)
    return tokenizer.decode([t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label != -100])


# ---------------------------------------------------------------- the label mask
def test_mask_covers_exactly_the_replies_and_skips_weight_zero(tokenizer):
    example = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Turn on the porch light."},
        {"role": "assistant", "content": "Done, it is on.", "weight": 0},
        {"role": "user", "content": "And the heater?"},
        {"role": "assistant", "content": "The Hearth H2 starts at 6:30."}]}
    encoded = trainer.encode_example(example, tokenizer)
    assert encoded["input_ids"] == tokenizer.apply_chat_template(example["messages"], tokenize=True,
                                                                  return_dict=True)["input_ids"]
    labelled = [i for i, label in enumerate(encoded["labels"]) if label != -100]
    assert labelled == list(range(labelled[0], labelled[-1] + 1))  # one contiguous span: the last reply
    assert trained_text(example, tokenizer) == "The Hearth H2 starts at 6:30.<|im_end|>"
    both = {"messages": [{**m, "weight": 1} if m["role"] == "assistant" else m for m in example["messages"]]}
    assert trained_text(both, tokenizer) == "Done, it is on.<|im_end|>The Hearth H2 starts at 6:30.<|im_end|>"
    # labels equal the input ids where they are kept
    assert all(label in (-100, tok) for tok, label in zip(encoded["input_ids"], encoded["labels"]))


def test_mask_for_intent_chat_and_legacy_prompt_completion(tokenizer):
    assert trained_text(intent_chat("Dim the hall lights.", "lights"), tokenizer) == "lights<|im_end|>"
    legacy = {"prompt": "Dim the hall lights.\n\n###\n\n", "completion": " lights END"}
    assert trained_text(legacy, tokenizer) == " lights END<|im_end|>"
    cut = trainer.encode_example(intent_chat("Dim the hall lights.", "lights"), tokenizer, max_length=10)
    assert len(cut["input_ids"]) == 10 and set(cut["labels"]) == {-100}
    assert trainer._encode_all([intent_chat("x", "lights")], tokenizer, 10) == []  # nothing left to train on


def test_length_grouped_batches_cover_every_example_once():
    lengths = [5, 50, 7, 48, 6, 49, 8, 47] * 20
    batches = trainer.length_grouped_batches(lengths, 4, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == trainer.length_grouped_batches(lengths, 4, seed=3)
    assert batches != trainer.length_grouped_batches(lengths, 4, seed=4)
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spread) / len(spread) < 5  # similar lengths together: little padding


def test_token_loss_equals_the_transformers_loss(data, tokenizer):
    model = trainer._prepare_model(trainer.TrainConfig(), None, None).eval()
    rows = [trainer.encode_example(e, tokenizer) for e in data[0][:3]]
    batch = trainer.collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        loss_sum, correct, n = trainer.token_loss(model, batch)
        reference = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert n == sum(sum(label != -100 for label in r["labels"][1:]) for r in rows)
    assert abs(loss_sum.item() / n - reference.item()) < 1e-4
    keep = batch["labels"][:, 1:] != -100
    assert correct == int((logits[:, :-1].argmax(-1)[keep] == batch["labels"][:, 1:][keep]).sum())


# ---------------------------------------------------------------- a straight run
def test_events_metrics_and_result_file(straight, data, tokenizer, tmp_path):
    result, events, _ = straight
    assert result.status == "succeeded" and result.config == CONFIG
    assert [e["type"] for e in events] == ["metrics", "metrics", "epoch_end", "checkpoint"] * 3
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["step"] for e in metrics] == [1, 2, 3, 4, 5, 6] and {e["total_steps"] for e in metrics} == {6}
    assert [e["valid_loss"] is not None for e in metrics] == [False, True] * 3  # eval_every=2
    assert {"train_loss", "train_mean_token_accuracy", "valid_mean_token_accuracy", "epoch"} <= set(metrics[0])
    ends = [e for e in events if e["type"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [1, 2, 3] and all(0 <= e["full_valid_mean_token_accuracy"] <= 1 for e in ends)

    frame = result.metrics
    assert list(frame.columns[:5]) == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert len(frame) == 6 and frame.full_valid_loss.notna().tolist() == [False, True] * 3
    csv = trainer.write_result_csv(frame, tmp_path / "result.csv")
    assert csv.read_text().splitlines()[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(pd.read_csv(csv)) == 6
    # every non-pad token of 8 examples, three times
    assert result.trained_tokens == 3 * sum(len(trainer.encode_example(e, tokenizer, 64)["input_ids"]) for e in data[0])


def test_loss_decreases_when_overfitting(straight):
    loss = straight[0].metrics.train_loss
    assert loss.iloc[-2:].mean() < 0.5 * loss.iloc[:2].mean()
    full = straight[0].metrics.full_valid_loss.dropna()
    assert full.iloc[-1] < full.iloc[0]


def test_only_the_last_checkpoints_are_kept(straight):
    result, events, out = straight
    assert [s for s, _ in result.checkpoints] == [4, 6]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-step-4", "checkpoint-step-6", "final"]
    assert [e["path"] for e in events if e["type"] == "checkpoint"][-2:] == [p for _, p in result.checkpoints]
    checkpoint = Path(result.checkpoints[-1][1])
    assert {"adapter_model.safetensors", "adapter_config.json", "trainer_state.pt"} <= {p.name for p in checkpoint.iterdir()}
    assert set(torch.load(checkpoint / "trainer_state.pt", weights_only=False)["rng"]) >= {"python", "numpy", "torch"}


def test_resume_from_an_epoch_checkpoint_continues_the_same_curve(straight, data, tmp_path):
    result, _, _ = straight
    resumed = trainer.train(*data, config=CONFIG, output_dir=tmp_path, resume_from=result.checkpoints[0][1])
    assert resumed.status == "succeeded"
    assert resumed.metrics.step.tolist() == [1, 2, 3, 4, 5, 6]  # the history travels in the checkpoint
    for column in ("train_loss", "train_accuracy", "valid_loss"):
        assert resumed.metrics[column].iloc[4:].to_numpy() == pytest.approx(
            result.metrics[column].iloc[4:].to_numpy(), abs=1e-5, nan_ok=True)
    assert resumed.trained_tokens == result.trained_tokens


def test_pause_mid_epoch_then_resume_then_cancel(straight, data, tmp_path):
    result, _, _ = straight
    calls = []

    def pause_before_step_2():
        calls.append(1)
        return "pause" if len(calls) == 2 else None

    paused = trainer.train(*data, config=CONFIG, output_dir=tmp_path, should_stop=pause_before_step_2)
    assert paused.status == "paused" and paused.final_dir is None and len(paused.metrics) == 1
    assert Path(paused.resume_from).name == "paused-step-1"
    seen = []
    resumed = trainer.train(*data, config=CONFIG, output_dir=tmp_path, resume_from=paused.resume_from,
                            on_event=seen.append,
                            should_stop=lambda: "cancel" if seen and seen[-1].get("step") == 3 else None)
    assert resumed.status == "cancelled" and resumed.final_dir is None
    assert resumed.metrics.step.tolist() == [1, 2, 3]  # step 2 ends epoch 1; cancelled before step 4
    assert resumed.metrics.train_loss.to_numpy() == pytest.approx(result.metrics.train_loss.iloc[:3].to_numpy(), abs=1e-5)
    assert [e["type"] for e in seen] == ["metrics", "epoch_end", "checkpoint", "metrics"]


def test_gradient_accumulation_counts_micro_batches_per_step(data, tmp_path):
    config = trainer.TrainConfig(n_epochs=1, batch_size=2, grad_accum=2, max_length=64, keep_checkpoints=0)
    result = trainer.train(data[0], None, config, tmp_path)
    assert result.metrics.step.tolist() == [1, 2]  # 8 examples = 4 micro-batches of 2 = 2 steps
    assert result.metrics.train_loss.notna().all() and Path(result.final_dir, "adapter_model.safetensors").exists()


def test_micro_batches_give_the_same_gradient_as_the_whole_batch(data):
    tokenizer = base.load_tokenizer()
    model = trainer._prepare_model(trainer.TrainConfig(lora_r=4, lora_dropout=0.0), None, None)  # no random masks
    rows = [trainer.encode_example(e, tokenizer, 64) for e in data[0][:5]]

    def gradients(micro):
        model.zero_grad(set_to_none=True)
        out = trainer.accumulate_gradients(model, micro, tokenizer.pad_token_id, torch.device("cpu"))
        return out, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    (loss, correct, labelled, seen), whole = gradients([rows])
    split = [[rows[i] for i in piece] for piece in trainer._pieces(list(range(5)), 2)]   # 2 + 2 + 1
    (loss_p, correct_p, labelled_p, seen_p), pieces = gradients(split)
    assert (correct_p, labelled_p, seen_p) == (correct, labelled, seen) and loss_p == pytest.approx(loss, rel=1e-5)
    assert all(torch.allclose(g, h, rtol=1e-3, atol=1e-7) for g, h in zip(pieces, whole))
    assert any(g.abs().sum() > 0 for g in whole)   # the comparison is not between zeros


def test_micro_batches_split_each_batch_and_keep_the_steps(data, tmp_path):
    config = trainer.TrainConfig(n_epochs=1, batch_size=4, micro_batch_size=3, max_length=64, keep_checkpoints=0)
    result = trainer.train(data[0], None, config, tmp_path)
    assert result.metrics.step.tolist() == [1, 2]   # 8 examples, batches of 4: 2 steps, each in pieces of 3 + 1
    assert trainer._pieces([5, 6, 7, 8, 9], 2) == [[5, 6], [7, 8], [9]] and trainer._pieces([5, 6], 0) == [[5, 6]]


@pytest.mark.skipif(not trainer.bf16_supported("cpu")[0], reason="this CPU has no native bf16")
def test_bf16_base_keeps_frozen_weights_in_bf16_and_adapters_in_fp32(data, tmp_path):
    config = trainer.TrainConfig(n_epochs=2, batch_size=4, max_length=64, learning_rate=1e-3, keep_checkpoints=0,
                                 bf16_base=True)
    result = trainer.train(data[0], None, config, tmp_path)
    params = list(result.model.named_parameters())
    assert {p.dtype for _, p in params if p.requires_grad} == {torch.float32}
    assert {p.dtype for _, p in params if not p.requires_grad} == {torch.bfloat16}
    losses = result.metrics.train_loss
    assert losses.notna().all() and losses.iloc[-1] < losses.iloc[0]
    reloaded, _ = trainer.load_adapter(result.final_dir)   # the saved adapter loads onto an fp32 base
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
    same, _ = trainer.load_adapter(result.final_dir, bf16_base=True)   # or onto a bf16 base, as trained
    named = list(same.named_parameters())
    assert {p.dtype for n, p in named if "lora_" in n} == {torch.float32}
    assert {p.dtype for n, p in named if "lora_" not in n} == {torch.bfloat16}
    batch = trainer.collate(trainer._encode_all(data[1][:2], base.load_tokenizer(), 64), 0)
    with torch.no_grad():
        trained = result.model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        again = same(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(trained, again)


def test_load_adapter_refuses_bf16_where_it_cannot_hold(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")   # what full fine-tuning saves: every weight
    with pytest.raises(ValueError, match="fully fine-tuned.*bf16_base=False"):
        trainer.load_adapter(tmp_path / "full", bf16_base=True)
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(trainer, "bf16_supported", lambda device=None: (False, "CPU has no native bf16"))
    with pytest.raises(ValueError, match="no native bf16.*bf16_base=False"):
        trainer.load_adapter(tmp_path / "lora", bf16_base=True)


def test_bf16_base_is_refused_where_the_base_is_trained():
    with pytest.raises(ValueError, match="frozen"):
        trainer.TrainConfig(method="full", bf16_base=True)


def test_bf16_base_without_native_bf16_says_why_and_leaves_the_model_alone(data, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "bf16_supported", lambda device=None: (False, "CPU has no native bf16"))
    model, _ = base.load_base_model()
    with pytest.raises(ValueError, match="no native bf16.*bf16_base=False"):
        trainer.train(data[0], None, trainer.TrainConfig(bf16_base=True), tmp_path, model=model)
    assert {p.dtype for p in model.parameters()} == {torch.float32} and not hasattr(model, "peft_config")


def test_gradient_checkpointing_gives_the_same_curve(data, tmp_path):
    config = trainer.TrainConfig(n_epochs=1, batch_size=4, max_length=64, learning_rate=1e-3, keep_checkpoints=0)
    plain = trainer.train(data[0], None, config, tmp_path / "plain")
    config.gradient_checkpointing = True
    saving = trainer.train(data[0], None, config, tmp_path / "checkpointed")
    assert saving.metrics.train_loss.to_numpy() == pytest.approx(plain.metrics.train_loss.to_numpy(), abs=1e-5)
    inner = saving.model.get_base_model()   # checkpointing is undone: generation keeps its key-value cache
    assert inner.config.use_cache is True and not inner.is_gradient_checkpointing


# ---------------------------------------------------------------- adapters
def test_lora_trains_a_small_fraction_of_the_weights():
    model = trainer._prepare_model(trainer.TrainConfig(lora_r=8), None, None)
    trainable, total = trainer.count_parameters(model)
    # 30 layers; rank 8; A (in x r) and B (r x out) for q and o (576 -> 576), k and v (576 -> 192)
    assert trainable == 30 * 8 * ((576 + 576) * 2 + (576 + 192) * 2)
    assert trainable / total < 0.01



def test_skeleton_counts_like_the_real_model_without_weights():
    lora = trainer.skeleton(trainer.TrainConfig(lora_r=8))
    assert {p.device.type for p in lora.parameters()} == {"meta"}  # no memory used
    real = trainer._prepare_model(trainer.TrainConfig(lora_r=8), None, None)
    assert trainer.count_parameters(lora) == trainer.count_parameters(real)
    r16 = trainer.count_parameters(trainer.skeleton(trainer.TrainConfig(lora_r=16)))[0]
    assert r16 == 2 * trainer.count_parameters(lora)[0]  # linear in the rank
    mlp = trainer.TrainConfig(lora_r=8, target_modules=("gate_proj", "up_proj", "down_proj"))
    assert trainer.count_parameters(trainer.skeleton(mlp))[0] == 30 * 8 * 3 * (576 + 1536)
    full = trainer.count_parameters(trainer.skeleton(trainer.TrainConfig(method="full")))
    trainable, total = trainer.count_parameters(real)
    assert full[0] == full[1] == total - trainable  # every weight of the base model, and no adapter
    prompt = trainer.count_parameters(trainer.skeleton(trainer.TrainConfig(method="prompt_tuning")))
    assert prompt[0] == 16 * 576  # 16 virtual tokens of the embedding size

def test_saved_adapter_reloads_and_merges_to_identical_logits(straight, data, tokenizer):
    result = straight[0]
    batch = trainer.collate([trainer.encode_example(e, tokenizer) for e in data[1]], tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        trained = result.model(**inputs).logits
        loaded, _ = trainer.load_adapter(result.final_dir)
        assert not loaded.training
        assert torch.equal(loaded(**inputs).logits, trained)
        merged = trainer.merge(loaded)
        assert not hasattr(merged, "peft_config")
        assert torch.allclose(merged(**inputs).logits, trained, atol=1e-4)
        fresh, _ = base.load_base_model()
        assert not torch.allclose(fresh(**inputs).logits, trained, atol=1e-2)  # training changed something


def test_prompt_tuning_runs_and_its_loss_matches_peft(data, tokenizer, tmp_path):
    config = trainer.TrainConfig(method="prompt_tuning", n_epochs=1, batch_size=4, max_length=64,
                                 learning_rate=3e-2, num_virtual_tokens=4, keep_checkpoints=0)
    result = trainer.train(data[0][:4], None, config, tmp_path)
    assert result.status == "succeeded" and len(result.metrics) == 1
    assert math.isfinite(result.metrics.train_loss[0]) and result.metrics.valid_loss.isna().all()
    trainable, _ = trainer.count_parameters(result.model)
    assert trainable == 4 * 576
    batch = trainer.collate([trainer.encode_example(e, tokenizer) for e in data[1][:2]], tokenizer.pad_token_id)
    with torch.no_grad():
        loss_sum, _, n = trainer.token_loss(result.model, batch)
        assert loss_sum.item() / n == pytest.approx(result.model(**batch).loss.item(), abs=1e-4)
    with pytest.raises(ValueError, match="nothing to merge"):
        trainer.merge(result.model)


def test_qlora_and_bf16_are_detected_not_assumed():
    ok, reason = trainer.qlora_available()
    if not torch.cuda.is_available():
        assert ok is False and "CUDA" in reason
    ok, reason = trainer.bf16_supported("cpu")
    assert isinstance(ok, bool) and reason.startswith("CPU")
    assert trainer.use_bf16("off", "cpu") is False and trainer.use_bf16("on", "cpu") is True
    assert trainer.use_bf16("auto", "cpu") is False   # on a CPU, autocast only when asked for


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="method"):
        trainer.TrainConfig(method="dpo")
    with pytest.raises(ValueError, match="micro_batch_size"):
        trainer.TrainConfig(micro_batch_size=-1)
    with pytest.raises(ValueError, match="messages"):
        trainer.encode_example({"text": "hi"}, base.load_tokenizer())
