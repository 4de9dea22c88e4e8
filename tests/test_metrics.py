"""helpers.metrics: one schema for every result file, the fit rule, curves, task metrics, forgetting."""
import base64
import os

import matplotlib
import numpy as np
import pandas as pd
import pytest

from helpers import metrics

matplotlib.use("Agg")

OPENAI_CSV = ("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
              "1,2.5,0.40,,\n2,2.0,0.50,2.1,0.48\n3,1.5,0.60,,\n")
AZURE_CSV = ("step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,"
             "full_valid_mean_token_accuracy\n1,2.5,0.4,2.6,0.38,,\n2,1.9,0.55,2.0,0.5,2.05,0.49\n")
LEGACY_CSV = ("step,elapsed_tokens,elapsed_examples,training_loss,training_sequence_accuracy,training_token_accuracy,"
              "validation_loss,validation_sequence_accuracy,validation_token_accuracy\n"
              "1,300,4,3.1,0.0,0.2,,,\n2,610,8,2.9,0.0,0.25,3.0,0.0,0.22\n")


# ---------------------------------------------------------------- result files
@pytest.mark.parametrize("text, name", [(OPENAI_CSV, "openai"), (AZURE_CSV, "azure"), (LEGACY_CSV, "legacy-2023")])
def test_every_format_reads_into_one_schema(text, name):
    frame = metrics.read_result_csv(text)
    assert list(frame.columns) == metrics.SCHEMA
    assert (frame["source"] == name).all() and frame["step"].dtype.kind == "i"
    assert frame.loc[1, "valid_loss"] == pytest.approx({"openai": 2.1, "azure": 2.0, "legacy-2023": 3.0}[name])
    assert 0 < frame.loc[0, "train_accuracy"] < 1


def test_openai_base64_text_bytes_and_paths(tmp_path):
    encoded = base64.b64encode(OPENAI_CSV.encode())
    expected = metrics.read_result_csv(OPENAI_CSV)
    pd.testing.assert_frame_equal(metrics.read_result_csv(encoded), expected)
    pd.testing.assert_frame_equal(metrics.read_result_csv(encoded.decode() + "\n"), expected)
    (tmp_path / "r.csv").write_text(OPENAI_CSV)
    pd.testing.assert_frame_equal(metrics.read_result_csv(tmp_path / "r.csv"), expected)
    pd.testing.assert_frame_equal(metrics.read_result_csv(str(tmp_path / "r.csv")), expected)
    assert (metrics.read_result_csv(OPENAI_CSV, source="mine")["source"] == "mine").all()


def test_azure_keeps_full_validation_and_legacy_drops_sequence_accuracy():
    azure = metrics.read_result_csv(AZURE_CSV)
    assert azure.loc[1, "full_valid_loss"] == pytest.approx(2.05)
    assert azure.loc[1, "full_valid_accuracy"] == pytest.approx(0.49)
    legacy = metrics.read_result_csv(LEGACY_CSV)
    assert legacy.loc[1, "valid_accuracy"] == pytest.approx(0.22)   # the token accuracy, not the sequence one
    assert legacy["full_valid_loss"].isna().all()


def test_unknown_columns_name_what_was_found():
    with pytest.raises(ValueError, match="Columns found: epoch, loss"):
        metrics.read_result_csv("epoch,loss\n1,2.0\n")


def test_trainer_metrics_and_its_csv_read_the_same(tmp_path):
    rows = [[1, 2.0, 0.5, np.nan, np.nan, 1, np.nan, np.nan], [2, 1.5, 0.6, 1.7, 0.55, 1, 1.6, 0.57]]
    frame = pd.DataFrame(rows, columns=metrics.RESULT_COLUMNS + metrics.EXTRA_COLUMNS)
    path = metrics.write_result_csv(frame, tmp_path / "m.csv", extra_columns=True)
    from_csv, from_frame = metrics.read_result_csv(path), metrics.read_result_csv(frame)
    pd.testing.assert_frame_equal(from_csv, from_frame)
    assert from_csv.loc[1, "full_valid_accuracy"] == pytest.approx(0.57)


@pytest.mark.parametrize("name, verdict", [("openai_step_metrics.b64", "good fit"), ("azure_results.csv", "overfitting"),
                                           ("legacy_2023_results.csv", "underfitting")])
def test_the_course_samples_read_and_show_their_verdict(name, verdict):
    frame = metrics.read_result_csv(metrics.sample_path(name))
    assert len(frame) >= 50 and frame["train_loss"].notna().all()
    assert metrics.diagnose(frame).verdict == verdict


# ---------------------------------------------------------------- the fit rule
@pytest.mark.parametrize("kind", metrics.VERDICTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagnose_each_verdict_on_synthetic_curves(kind, seed):
    diagnosis = metrics.diagnose(metrics.synthetic_curve(kind, seed=seed))
    assert diagnosis.verdict == kind, diagnosis.reasons
    assert diagnosis.reasons


def test_best_step_is_the_validation_minimum_and_respects_checkpoints():
    frame = metrics.synthetic_curve("overfitting", seed=0)
    diagnosis = metrics.diagnose(frame)
    assert 15 <= diagnosis.best_step <= 30      # the valid curve turns up after about a third of 60 steps
    saved = metrics.diagnose(frame, checkpoint_steps=[20, 40, 60])
    assert saved.best_step == 20


def test_diagnose_without_validation_uses_training_loss():
    frame = metrics.synthetic_curve("underfitting").assign(valid_loss=np.nan)
    diagnosis = metrics.diagnose(frame)
    assert diagnosis.verdict == "underfitting" and diagnosis.best_step == 60
    assert any("no validation" in r for r in diagnosis.reasons)
    with pytest.raises(ValueError, match="2 or more"):
        metrics.diagnose(frame.head(1))


def test_plot_curves_takes_a_frame_a_list_or_a_dict():
    a, b = metrics.synthetic_curve("good fit"), metrics.synthetic_curve("overfitting")
    axes = metrics.plot_curves({"a": a, "b": b})
    assert len(axes) == 2 and len(axes[0].get_legend().get_texts()) == 4
    assert len(metrics.plot_curves(pd.concat([a, b]))[0].lines) == len(axes[0].lines)


# ---------------------------------------------------------------- classification and generation
def test_classification_scores_and_errors():
    truth = ["lights", "lights", "heating", "media"]
    predicted = ["lights", "heating", None, "media"]
    scores = metrics.classification_scores(truth, predicted, ["lights", "heating", "media"])
    assert scores["accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert scores["confusion"].loc["heating", metrics.NO_LABEL] == 1
    assert scores["confusion"].values.sum() == 4
    errors = metrics.errors_by_class(["a", "b", "c", "d"], truth, predicted)
    assert errors["text"].tolist() == ["c", "b"] and errors.loc[0, "predicted"] == metrics.NO_LABEL
    metrics.plot_confusion(scores["confusion"])


def test_generation_metrics():
    refs = ["the cat sat on the mat today", "a warm white bulb for your lamp"]
    assert metrics.bleu(refs, refs) == pytest.approx(100)
    assert metrics.rouge_l(refs, refs) == pytest.approx(1)
    assert metrics.rouge_l(["the cat sat"], refs[:1]) == pytest.approx(2 * 1 * (3 / 7) / (1 + 3 / 7))
    assert metrics.bleu(["completely different words here now"], refs[:1]) < 5
    same = ["the same text again and again"] * 3
    assert metrics.self_bleu(same) == pytest.approx(100) and metrics.distinct_n(same) == pytest.approx(5 / 15)
    assert metrics.self_bleu(refs) < 20 and metrics.distinct_n(refs) == 1
    scores = metrics.generation_scores(refs, refs)
    assert set(scores) == {"bleu", "rouge_l", "self_bleu", "distinct_2", "words"}


# ---------------------------------------------------------------- forgetting
def test_probe_matching_is_whole_word_and_number_aware():
    assert metrics.probe_correct("The capital is Paris.", {"key": "Paris"})
    assert not metrics.probe_correct("Parisian food", {"key": "Paris"})
    assert not metrics.probe_correct("It freezes at -18.0°C", {"key": "0", "accept": ["zero"]})
    assert metrics.probe_correct("It freezes at zero degrees", {"key": "0", "accept": ["zero"]})
    assert metrics.probe_correct("It is 4.", {"key": "4"}) and not metrics.probe_correct("24 hours", {"key": "4"})


def test_probe_file_is_well_formed():
    probes = metrics.load_probes()
    assert 25 <= len(probes) <= 40
    assert all(p["question"].endswith("?") and p["key"] for p in probes)
    assert len({p["question"] for p in probes}) == len(probes)


def test_forgetting_counts_forgotten_and_learned():
    probes = [{"question": "q1", "key": "Paris"}, {"question": "q2", "key": "Rome"}, {"question": "q3", "key": "4"}]
    report = metrics.forgetting(["Paris", "Rome", "five"], ["lights", "Rome", "4"], probes)
    assert (report.before, report.after, report.forgotten, report.learned) == (2 / 3, 2 / 3, 1, 1)
    assert report.table["right_after"].tolist() == [False, True, True]
    with pytest.raises(ValueError):
        metrics.forgetting(["a"], ["b", "c"], probes)


# ---------------------------------------------------------------- sweeps, the local server, domain shift
def test_summarise_and_advice_table():
    rows = []
    for n_epochs, multiplier, kind in [(1, 0.02, "underfitting"), (1, 0.1, "good fit"), (3, 0.02, "good fit"),
                                       (3, 0.1, "overfitting")]:
        frame = metrics.synthetic_curve(kind, steps=20 * n_epochs, seed=1)
        frame["full_valid_loss"] = frame["valid_loss"]
        frame["train_loss"] *= 1.5 - 2 * multiplier - 0.1 * n_epochs     # more learning: lower loss
        frame["train_accuracy"] = (0.5 + multiplier + 0.1 * n_epochs) + 0 * frame["train_loss"]
        rows.append({"n_epochs": n_epochs, "lr_multiplier": multiplier, **metrics.summarise(frame)})
    sweep = pd.DataFrame(rows)
    assert sweep.loc[0, "verdict"] == "underfitting" and sweep.loc[3, "verdict"] == "overfitting"
    assert {"train_loss", "train_accuracy", "min_valid_loss", "full_valid_loss", "best_step"} <= set(sweep.columns)
    advice = metrics.advice_table(sweep)
    assert advice["holds"].tolist() == [True, True]
    sweep.loc[2, "train_accuracy"] = 0.1                                   # the coarse accuracy is shown, not judged
    assert metrics.advice_table(sweep)["holds"].tolist() == [True, True]
    sweep.loc[2, "train_loss"] = sweep.loc[0, "train_loss"] + 0.5           # more epochs made it worse at x0.02
    assert metrics.advice_table(sweep)["holds"].tolist() == [False, True]
    sweep.loc[1, "train_loss"] = sweep.loc[0, "train_loss"] + 1                # the larger multiplier did worse
    assert metrics.advice_table(sweep)["holds"].tolist() == [False, False]


def test_local_server_result_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS", str(tmp_path))
    frame, note = metrics.local_server_result()
    assert frame is None and "no course server is running" in note
    assert not (tmp_path / "server").exists()


def test_out_of_domain_skips_with_a_reason_when_nothing_is_reachable(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setattr(metrics, "_reachable", lambda url, timeout=3.0: False)
    frame, reason = metrics.load_out_of_domain()
    assert frame is None and "COURSE_DATA_MIRROR" in reason and "\n" not in reason


def test_out_of_domain_from_the_mirror(tmp_path, monkeypatch):
    from helpers.datasets import MIRROR_ENV

    mirror = os.environ.get(MIRROR_ENV) or os.environ.get("COURSE_SHARED_DATASETS")
    if not mirror:
        pytest.skip("no dataset mirror (set COURSE_DATA_MIRROR)")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv(MIRROR_ENV, mirror)
    frame, reason = metrics.load_out_of_domain(n_per_intent=3)
    assert reason is None and len(frame) == 21
    assert set(frame.loc[frame["course_label"].notna(), "intent"]) == {"PlayMusic", "AddToPlaylist"}


def test_a_missing_path_says_so():
    with pytest.raises(FileNotFoundError, match="No result file"):
        metrics.read_result_csv("outputs/nowhere/step_metrics.csv")
