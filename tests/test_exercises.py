import re

from helpers import exercises, formats


def test_not_done_yet_is_not_an_error(capsys):
    assert exercises.check_approaches(...) is False
    assert "Not done yet" in capsys.readouterr().out


def test_approaches_right_and_wrong(capsys):
    right = dict(exercises.SCENARIOS)
    assert exercises.check_approaches(right)
    wrong = {**right, next(iter(right)): "fine-tune"}
    assert not exercises.check_approaches(wrong)
    assert "Hint" in capsys.readouterr().out


def test_learning_rate_check_uses_the_fit():
    assert exercises.check_learning_rate(0.3, lambda lr: 0.01)
    assert not exercises.check_learning_rate(0.3, lambda lr: 0.5)
    assert not exercises.check_learning_rate(9.0, lambda lr: float("nan"))


def test_postcode_check():
    pattern = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", re.IGNORECASE)
    assert exercises.check_mask_postcodes(lambda t: pattern.sub("[POSTCODE]", t))
    assert not exercises.check_mask_postcodes(lambda t: t)


def test_legacy_record_check():
    good = formats.chat_to_legacy(formats.chat_example("dim the lights", "lights"))
    assert exercises.check_legacy_record(good, "dim the lights", "lights")
    assert not exercises.check_legacy_record({"prompt": "dim the lights", "completion": "lights"},
                                             "dim the lights", "lights")


def test_leakage_check():
    assert exercises.check_no_leakage([{"text": "a b"}], [{"text": "c d"}])
    assert not exercises.check_no_leakage([{"text": "A b!"}], [{"text": "a b"}])


def test_fit_verdicts_check():
    from helpers import metrics

    runs = {kind: metrics.synthetic_curve(kind, seed=3) for kind in metrics.VERDICTS}
    assert exercises.check_fit_verdicts({k: k for k in runs}, runs)
    assert not exercises.check_fit_verdicts({k: "good fit" for k in runs}, runs)
    assert not exercises.check_fit_verdicts(..., runs)


def test_macro_f1_check():
    from sklearn.metrics import f1_score

    assert exercises.check_macro_f1(lambda t, p, labels: f1_score(t, p, labels=labels, average="macro",
                                                                  zero_division=0))
    assert not exercises.check_macro_f1(lambda t, p, labels: sum(a == b for a, b in zip(t, p)) / len(t))


def test_rouge_blind_spot_check():
    reference = "Each bulb gives 806 lumens of warm white light and lasts about 25,000 hours."
    assert exercises.check_rouge_blind_spot(reference.replace("806", "608"), reference)
    assert not exercises.check_rouge_blind_spot(reference, reference)
    assert not exercises.check_rouge_blind_spot("A lamp with 12 lumens.", reference)


def test_auto_epochs_check(capsys):
    from helpers import tokens

    assert exercises.check_auto_epochs(tokens.default_epochs)
    assert not exercises.check_auto_epochs(lambda n: 3)
    assert "example-passes" in capsys.readouterr().out
    assert not exercises.check_auto_epochs(...)
    assert not exercises.check_auto_epochs(lambda n: ...)


def test_events_frame_check():
    import types

    import pandas as pd

    def event(kind, **data):
        return types.SimpleNamespace(type=kind, data=data, message="")

    events = [event("message"), event("metrics", step=2, train_loss=0.5, valid_loss=0.7, full_valid_loss=0.6),
              event("metrics", step=2, train_loss=0.5, valid_loss=0.7), event("metrics", step=1, train_loss=0.9,
                                                                               valid_loss=None), event("message")]

    def right(evs):
        rows = [e.data for e in evs if e.type == "metrics" and "step" in e.data]
        frame = pd.DataFrame(rows)[["step", "train_loss", "valid_loss"]]
        return frame.drop_duplicates("step").sort_values("step").reset_index(drop=True)

    assert exercises.check_events_frame(right, events)
    assert not exercises.check_events_frame(lambda evs: right(evs).iloc[::-1], events)
    assert not exercises.check_events_frame(lambda evs: pd.DataFrame([e.data for e in evs if e.type == "metrics"]),
                                            events)
    assert not exercises.check_events_frame(lambda evs: None, events)
    assert not exercises.check_events_frame(..., events)


# --- 07: ship it ---------------------------------------------------------------------------------------
def test_best_checkpoint_check():
    import pandas as pd
    table = pd.DataFrame({"step": [3, 6, 9], "model": ["m:ckpt-step-3", "m:ckpt-step-6", "m:ckpt-step-9"],
                          "train_loss": [1.0, 0.5, 0.2], "full_valid_loss": [1.2, 1.0, 1.1]})
    assert exercises.check_best_checkpoint("m:ckpt-step-6", table)
    assert exercises.check_best_checkpoint(6, table)
    assert not exercises.check_best_checkpoint("m:ckpt-step-9", table)
    assert not exercises.check_best_checkpoint(..., table)
    assert not exercises.check_best_checkpoint(3, table.assign(full_valid_loss=None))


def test_drift_settings_check():
    in_domain, shifted = [True, True, False, False, True, True, True, True] * 5, [False, False, True, False] * 5
    assert exercises.check_drift_settings(8, 0.3, 0.75, in_domain, shifted)
    assert not exercises.check_drift_settings(4, 0.05, 0.75, in_domain, shifted)  # false alarms
    assert not exercises.check_drift_settings(8, 0.7, 0.75, in_domain, shifted)   # never fires
    assert not exercises.check_drift_settings(..., 0.3, 0.75, in_domain, shifted)


def test_decline_detector_check():
    from helpers import ship
    assert exercises.check_decline_detector(ship.is_decline)
    assert not exercises.check_decline_detector(lambda a: "know" in a)
    assert not exercises.check_decline_detector(lambda a: True)


# --- 04: LoRA on your machine --------------------------------------------------------------------------
def test_lora_params_check():
    measured = {4: 30 * 4 * 3840, 8: 30 * 8 * 3840}   # attention only: r * (d_in + d_out) summed = r * 3840
    assert exercises.check_lora_params(lambda r: 30 * r * 3840, measured)
    assert not exercises.check_lora_params(lambda r: 15 * r * 3840, measured)   # half: only A or only B
    assert not exercises.check_lora_params(lambda r: r * 3840, measured)        # one layer, not 30
    assert not exercises.check_lora_params(lambda r: None, measured)            # the stub's body: ...
    assert not exercises.check_lora_params(..., measured)


def test_zero_memory_check():
    def memory_gb(n, gpus, stage):
        weights, grads, optimizer = (2 if stage < 3 else 2 / gpus), (2 if stage < 2 else 2 / gpus), \
            (12 if stage < 1 else 12 / gpus)
        return n * (weights + grads + optimizer) / 1e9

    assert exercises.check_zero_memory(memory_gb)
    assert not exercises.check_zero_memory(lambda n, gpus, stage: n * 16 / 1e9)        # no sharding at all
    assert not exercises.check_zero_memory(lambda n, gpus, stage: n * 16 / gpus / 1e9)  # everything sharded
    assert not exercises.check_zero_memory(lambda n, gpus, stage: None)
    assert not exercises.check_zero_memory(...)


# --- 06: RAG or fine-tune? -----------------------------------------------------------------------------
def test_cosine_top_k_check():
    import numpy as np

    def cosine_top_k(query, vectors, k):
        scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
        return np.argsort(-scores)[:k]

    assert exercises.check_cosine_top_k(cosine_top_k)
    assert not exercises.check_cosine_top_k(lambda q, v, k: np.argsort(-(v @ q))[:k])        # dot product only
    assert not exercises.check_cosine_top_k(lambda q, v, k: cosine_top_k(q, v, k)[::-1])     # worst first
    assert not exercises.check_cosine_top_k(lambda q, v, k: None)
    assert not exercises.check_cosine_top_k(...)


def test_decisions_check():
    assert exercises.check_decisions(dict(exercises.DECISION_SCENARIOS))
    wrong = dict(exercises.DECISION_SCENARIOS)
    wrong[next(iter(wrong))] = "fine-tune"
    assert not exercises.check_decisions(wrong)
    assert not exercises.check_decisions({s: "maybe" for s in exercises.DECISION_SCENARIOS})
    assert not exercises.check_decisions(...)
