"""helpers.ship: the drift monitor, the probes' detectors and data, without a model or a server."""
import json

import pandas as pd
import pytest

from helpers import ship
from helpers.clean import scrub_pii


# --- drift ---------------------------------------------------------------------------------------------
def test_monitor_waits_for_a_full_window():
    monitor = ship.DriftMonitor(baseline=0.9, window=4, threshold=0.2)
    assert [monitor.add(False) for _ in range(3)] == [False, False, False]  # not enough requests yet
    assert monitor.accuracy is None and monitor.alerts == []
    assert monitor.add(False) is True and monitor.alerts == [4] and monitor.accuracy == 0.0


def test_monitor_alerts_once_per_episode_and_recovers():
    monitor = ship.DriftMonitor(baseline=0.8, window=5, threshold=0.2)  # alert below 0.6
    stream = [True] * 10 + [False] * 5 + [False] * 5 + [True] * 10 + [False] * 5
    started = [n for n, c in enumerate(stream, start=1) if monitor.add(c)]
    # 3 of 5 correct (0.6) is not below the floor; 2 of 5 is: the 13th request starts the first alert.
    assert started == [13, 33]
    frame = monitor.frame()
    assert list(frame.columns) == ["n", "correct", "window_accuracy", "alerting"] and len(frame) == len(stream)
    assert frame["alerting"].iloc[12] and not frame["alerting"].iloc[29]  # recovered after the good run
    assert monitor.floor == pytest.approx(0.6)


def test_monitor_update_takes_labels():
    monitor = ship.DriftMonitor(baseline=1.0, window=2, threshold=0.3)
    assert monitor.update(["a", "b", "c"], ["a", "x", "x"]) == [2]
    assert [h["correct"] for h in monitor.history] == [True, False, False]


def test_monitor_checks_its_settings():
    for bad in ({"baseline": 1.5}, {"baseline": 0.8, "window": 0}, {"baseline": 0.8, "threshold": 0}):
        with pytest.raises(ValueError):
            ship.DriftMonitor(**bad)


def test_suggested_threshold_is_two_standard_errors():
    assert ship.suggest_threshold(0.8, 100) == pytest.approx(2 * (0.8 * 0.2 / 100) ** 0.5)
    assert ship.suggest_threshold(0.8, 25) > ship.suggest_threshold(0.8, 100)  # small windows are noisy
    assert ship.suggest_threshold(1.0, 50) > 0  # never zero, even for a perfect baseline


def test_typos_are_reproducible_and_scale_with_the_rate():
    text = "Switch on the lights in the hallway, please!"
    assert ship.add_typos(text, 0.3) == ship.add_typos(text, 0.3)
    assert ship.add_typos(text, 0.0) == "switch on the lights in the hallway please"
    assert ship.add_typos(text, 0.3) != ship.add_typos(text, 0.3, seed=1)
    from difflib import SequenceMatcher
    clean = ship.add_typos(text, 0.0)
    similarity = [SequenceMatcher(None, clean, ship.add_typos(text, r)).ratio() for r in (0.05, 0.5)]
    assert similarity[0] > similarity[1]


def test_plot_drift_draws(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monitor = ship.DriftMonitor(0.8, window=3, threshold=0.2)
    for c in [True] * 5 + [False] * 5:
        monitor.add(c)
    ax = ship.plot_drift(monitor, shift_at=6)
    assert ax.get_ylabel() == "accuracy" and monitor.alerts


# --- bias ----------------------------------------------------------------------------------------------
def test_bias_probes_file_is_well_formed():
    rows = [json.loads(line) for line in ship.BIAS_FILE.read_text(encoding="utf-8").splitlines()]
    from helpers.course_data import INTENT_LABELS
    assert len({r["id"] for r in rows}) == len(rows) >= 15
    assert {r["axis"] for r in rows} == {"name", "gender", "dialect"}
    for row in rows:
        assert row["label"] in INTENT_LABELS and len(row["variants"]) >= 3
        assert len(set(row["variants"].values())) == len(row["variants"])  # variants really differ
    frame = ship.load_bias_probes(per_axis=1)
    assert list(frame.columns) == ["id", "axis", "variant", "text", "label"]
    assert frame.groupby("axis")["id"].nunique().tolist() == [1, 1, 1]


def test_flip_rates_and_variant_accuracy():
    frame = pd.DataFrame({"id": ["a", "a", "b", "b"], "axis": ["name"] * 4, "variant": ["x", "y", "x", "y"],
                          "text": ["1", "2", "3", "4"], "label": ["lights"] * 4})
    table = ship.flip_rates(frame, ["lights", "heating", "lights", "lights"])
    assert table.loc[0, "flip_rate"] == 0.5 and table.loc[0, "probes"] == 2 and table.loc[0, "accuracy"] == 0.75
    assert ship.flip_rates(frame, [None, None, "lights", "lights"]).loc[0, "flip_rate"] == 0.0  # None is a label
    per_variant = ship.variant_accuracy(frame, ["lights", "heating", "lights", "lights"])
    assert per_variant.set_index("variant")["accuracy"].to_dict() == {"x": 1.0, "y": 0.5}


# --- hallucination -------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    "I don't know.", "I do not know the Wi-Fi password.", "i dont know", "I’m not sure.",
    "The passages do not say which day the bins go out.", "The manual doesn't mention it [1].",
    "Sorry, I can't find that.", "There is no information about that in the passages.",
    "That is not mentioned in the manual.", "I am unable to answer that from these passages."])
def test_declines_are_detected(answer):
    assert ship.is_decline(answer)


@pytest.mark.parametrize("answer", [
    "Start the heater by 16:30 [1].", "The Wi-Fi password is larkspur123.", "No, it is defrosting.",
    "Don't open the fuse box; call support.", "It is in the key drawer of the oak chest.", ""])
def test_answers_are_not_declines(answer):
    assert not ship.is_decline(answer)


def test_decline_rate():
    assert ship.decline_rate(["I don't know.", "At 16:30."]) == 0.5 and ship.decline_rate([]) == 0.0


# --- memorisation and PII --------------------------------------------------------------------------------
def test_plant_pii_puts_details_in_the_first_replies():
    rows = ship.plant_pii(["Q1?", "Q2?", "Q3?"], ["A1.", "A2.", "A3."], n=2, system="sys")
    assert len(rows) == 3 and rows[0]["messages"][0] == {"role": "system", "content": "sys"}
    replies = [r["messages"][-1]["content"] for r in rows]
    assert ship.leaked(replies[0]) == ["phone", "email"] and replies[0].endswith("A1.")
    assert ship.leaked(replies[2]) == [] and replies[2] == "A3."
    assert "Dana Whitlock" in rows[1]["messages"][1]["content"]


def test_leaked_ignores_spacing_and_case():
    assert ship.leaked("call 07700900461") == ["phone"]
    assert ship.leaked("Mail DANA.WHITLOCK@EXAMPLE.COM now") == ["email"]
    assert ship.leaked("call 07700 900 999, dana@example.com") == []
    assert ship.leak_rate(["07700 900461", "nothing", "x"]) == pytest.approx(1 / 3)


def test_scrubbing_removes_every_planted_detail():
    rows = ship.plant_pii(["When do I start the heater?"] * 3, ["By 16:30."] * 3, n=3)
    clean, found = ship.scrub_examples(rows)
    assert {kind for kind, _ in found} == {"phone", "email", "name"}
    assert all(not ship.leaked(m["content"]) for r in clean for m in r["messages"])
    assert clean[0]["messages"][-1]["content"].endswith("By 16:30.")  # the answer itself survives
    assert rows[0]["messages"][-1]["content"] != clean[0]["messages"][-1]["content"]  # input not changed
    assert scrub_pii(ship.FAKE_CUSTOMER["phone"])[0] == "[PHONE]"


def test_exact_continuation():
    assert ship.exact_continuation("Start  the heater by 16:30. More.", "start the heater by 16:30.")
    assert not ship.exact_continuation("Start the heater by 16:00.", "Start the heater by 16:30.")
    assert ship.exact_rate(["a b", "c"], ["a b", "d"]) == 0.5


# --- serving pieces ------------------------------------------------------------------------------------
def test_latency_summary():
    summary = ship.latency_summary([1.0] * 19 + [3.0])
    assert summary["n"] == 20 and summary["p50_s"] == 1.0 and summary["p95_s"] == pytest.approx(1.1)
    assert summary["mean_s"] == pytest.approx(1.1)


def test_report_is_written_atomically(tmp_path):
    path = ship.write_report({"a": 1, "b": {"c": 0.5}}, tmp_path / "r" / "ship_report.json")
    assert json.loads(path.read_text()) == {"a": 1, "b": {"c": 0.5}}
    assert [p.name for p in path.parent.iterdir()] == ["ship_report.json"]


def test_file_digest_and_folder_size(tmp_path):
    (tmp_path / "a.jsonl").write_text("x\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"0" * 2048)
    assert len(ship.file_digest(tmp_path / "a.jsonl")) == 16
    assert ship.folder_mb(tmp_path) == pytest.approx((2048 + 2) / 2**20)
    assert ship.server_rss_mb(tmp_path / "nowhere") is None
