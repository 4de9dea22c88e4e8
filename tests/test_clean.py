"""Tests for helpers.clean: small inline fixtures, no model, no network."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import clean  # noqa: E402
from helpers.clean import (balance_report, clean_frame, dedupe, flag_offensive, load_blocklist,  # noqa: E402
                           normalise, plot_balance, rebalance, scrub_pii, scrub_pii_frame)

RAW = clean.DATA_DIR / "raw"


# ---------------------------------------------------------------- normalise
def test_normalise_quotes_spaces_and_unicode():
    assert normalise("  \u201cHello\u201d\u00a0\u00a0world\u2019s\tbulb\n ") == '"Hello" world\'s bulb'
    assert normalise("ﬁrst\u200b  ３ lamps") == "first 3 lamps"      # NFKC ligature + full-width digit
    assert normalise("\u2003\u2009") == ""


# ---------------------------------------------------------------- dedupe
def test_dedupe_exact_and_near():
    df = pd.DataFrame({"text": ["Turn on the kitchen lights", "turn on the  KITCHEN lights",
                                "Turn on the kitchen light", "Set the heating to 21 degrees"]},
                      index=[10, 11, 12, 13])
    kept, dropped = dedupe(df)
    assert list(kept.index) == [10, 13]
    assert dropped.loc[11, "reason"] == "exact" and dropped.loc[11, "duplicate_of"] == 10
    assert dropped.loc[12, "reason"] == "near" and dropped.loc[12, "duplicate_of"] == 10


def test_dedupe_threshold_and_empty_result():
    df = pd.DataFrame({"text": ["Turn on the kitchen lights", "Turn on the kitchen light"]})
    kept, dropped = dedupe(df, threshold=0.999)
    assert len(kept) == 2 and dropped.empty and {"reason", "duplicate_of"} <= set(dropped.columns)


# ---------------------------------------------------------------- PII
@pytest.mark.parametrize("text, expected, kinds", [
    ("Hi, this is Maya Patel, email maya.patel@example.com", "Hi, this is [NAME], email [EMAIL]",
     {"name", "email"}),
    ("My name is Tom O'Neill, call (202) 555-0142 after six.", "My name is [NAME], call [PHONE] after six.",
     {"name", "phone"}),
    ("I\u2019m Jo Reed from 22 Birch Road, ring +44 7700 900123.", "I\u2019m [NAME] from [ADDRESS], ring [PHONE].",
     {"name", "address", "phone"}),
    ("Landline 020 7946 0958 or mobile 07700-900-456", "Landline [PHONE] or mobile [PHONE]", {"phone"}),
    ("The H2 heat pump starts at 6:30 on 3 May 2024.", "The H2 heat pump starts at 6:30 on 3 May 2024.", set()),
    ("Hello, this is Larkspur Living support, 555-0199.", "Hello, this is Larkspur Living support, [PHONE].",
     {"phone"}),
])
def test_scrub_pii_realistic_strings(text, expected, kinds):
    scrubbed, found = scrub_pii(text)
    assert scrubbed == expected
    assert {kind for kind, _ in found} == kinds


def test_scrub_pii_reports_values():
    _, found = scrub_pii("I'm Ann Lee at 5 Kings Ave, ann@lee.example")
    assert ("name", "Ann Lee") in found and ("address", "5 Kings Ave") in found
    assert ("email", "ann@lee.example") in found


def test_scrub_pii_known_miss_name_without_introduction():
    """Documented limitation: a name with no "this is / my name is / I'm" in front is not found."""
    scrubbed, found = scrub_pii("Thanks for the help! Regards, Priya Shah")
    assert "Priya Shah" in scrubbed and found == []


def test_scrub_pii_frame_adds_column():
    df = pd.DataFrame({"text": ["mail me: a@b.co", "no pii here"], "label": ["x", "y"]})
    out = scrub_pii_frame(df)
    assert list(out["text"]) == ["mail me: [EMAIL]", "no pii here"]
    assert out["pii_found"].tolist() == [[("email", "a@b.co")], []]
    assert df["text"].iloc[0] == "mail me: a@b.co"          # the input is not changed


# ---------------------------------------------------------------- offensive content
def test_load_blocklist_skips_comments(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("# course blocklist\nDarn\n\n  # another comment\nstupid lamp\n", encoding="utf-8")
    assert load_blocklist(path) == ["darn", "stupid lamp"]


def test_flag_offensive_whole_words_case_insensitive():
    terms = ["darn", "stupid lamp"]
    assert flag_offensive("DARN this STUPID lamp!", terms) == ["darn", "stupid lamp"]
    assert flag_offensive("The darning needle is by the lamp", terms) == []


# ---------------------------------------------------------------- balance
def test_balance_report_columns_and_numbers():
    report = balance_report(["lights"] * 4 + ["heating"] * 2 + ["media"] * 2)
    assert list(report.columns) == ["label", "count", "share", "ratio_to_smallest"]
    assert report["label"].tolist() == ["lights", "heating", "media"]
    assert report["count"].tolist() == [4, 2, 2]
    assert report["share"].tolist() == [0.5, 0.25, 0.25]
    assert report["ratio_to_smallest"].tolist() == [2.0, 1.0, 1.0]


def test_plot_balance_returns_axes():
    import matplotlib.pyplot as plt
    ax = plot_balance(["a", "a", "b"])
    assert [bar.get_height() for bar in ax.patches] == [2, 1]
    plt.close(ax.figure)


def test_rebalance_downsamples_reproducibly():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["a"] * 6 + ["b"] * 3})
    out = rebalance(df)
    assert out["label"].value_counts().to_dict() == {"a": 3, "b": 3}
    assert out.equals(rebalance(df)) and list(out.index) == sorted(out.index)
    capped = rebalance(df, per_class=5)
    assert capped["label"].value_counts().to_dict() == {"a": 5, "b": 3}


# ---------------------------------------------------------------- the whole pipeline
def _messy() -> pd.DataFrame:
    return pd.DataFrame({"text": [
        "Turn on the  hall lights",             # 0 normalised
        "turn on the hall lights",              # 1 exact duplicate of 0 after normalising
        None,                                   # 2 empty
        "   \u00a0 ",                           # 3 empty after normalising
        "My name is Maya Patel, the heater is cold",   # 4 PII
        "This darn lock is stuck",              # 5 offensive
        "Turn on the hall light",               # 6 near duplicate of 0
        "Play some jazz in the lounge",         # 7 kept as is
    ], "label": ["lights", "lights", "media", "media", "heating", "security", "lights", "media"]})


def test_clean_frame_loses_nothing():
    df = _messy()
    out, log = clean_frame(df, blocklist=["darn"])
    dropped = log[log["action"] == "dropped"]
    assert len(out) + len(dropped) == len(df)
    assert set(out.index) | set(dropped["row"]) == set(df.index)
    assert dropped.set_index("row")["step"].to_dict() == {2: "empty", 3: "empty", 5: "offensive",
                                                           1: "dedupe", 6: "dedupe"}


def test_clean_frame_changes_and_log():
    out, log = clean_frame(_messy(), blocklist=["darn"])
    assert list(out.index) == [0, 4, 7]
    assert out.loc[0, "text"] == "Turn on the hall lights"
    assert out.loc[4, "text"] == "My name is [NAME], the heater is cold"
    assert out.loc[4, "pii_found"] == [("name", "Maya Patel")]
    changed = log[log["action"] == "changed"].set_index("row")["step"].to_dict()
    assert changed == {0: "normalise", 4: "pii"}
    assert "Maya" not in " ".join(log["text"].dropna())       # the log does not leak the PII
    assert log.loc[log["row"] == 6, "reason"].item() == "near duplicate of row 0"


def test_clean_frame_needs_unique_index():
    with pytest.raises(ValueError, match="unique index"):
        clean_frame(pd.DataFrame({"text": ["a", "b"]}, index=[0, 0]), blocklist=[])


def test_real_raw_files_if_present():
    """Shape-level checks on the course's data/raw files (skipped until they exist)."""
    csv, terms = RAW / "requests_raw.csv", RAW / "offensive_terms.txt"
    if not (csv.exists() and terms.exists()):
        pytest.skip("data/raw files not written yet")
    blocklist = load_blocklist(terms)
    assert blocklist and not any(term.startswith("#") for term in blocklist)
    raw = pd.read_csv(csv)
    column = "text" if "text" in raw.columns else raw.columns[0]
    out, log = clean_frame(raw.reset_index(drop=True), column=column, blocklist=blocklist)
    assert len(out) + (log["action"] == "dropped").sum() == len(raw)
    assert 0 < len(out) < len(raw)
