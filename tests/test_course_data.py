"""The course-written data in data/: counts, splits without leakage, answers only in the manual."""
import json
from collections import Counter
from itertools import combinations

from rapidfuzz import fuzz, process

from helpers import course_data, formats
from helpers.environment import DATA_DIR


def _near_pairs(left, right, threshold=85):
    keys_l = [formats.leakage_key(t) for t in left]
    keys_r = [formats.leakage_key(t) for t in right]
    scores = process.cdist(keys_l, keys_r, scorer=fuzz.ratio, score_cutoff=threshold)
    return int((scores > 0).sum())


def test_intents_are_balanced_and_splits_fixed():
    sizes = {"train": 80, "valid": 15, "test": 25}
    for split, per_label in sizes.items():
        frame = course_data.load_intents(split)
        assert Counter(frame["label"]) == {label: per_label for label in course_data.INTENT_LABELS}
    assert sum(len(course_data.load_intents(s)) for s in sizes) >= 600


def test_intent_splits_share_no_near_duplicates():
    texts = {s: course_data.load_intents(s)["text"].tolist() for s in ("train", "valid", "test")}
    for a, b in combinations(texts, 2):
        assert _near_pairs(texts[a], texts[b]) == 0, f"near-duplicates between {a} and {b}"


def test_intent_labels_are_single_tokens_everywhere():
    from helpers import model, tokens

    tok = model.load_tokenizer()
    encoders = {"o200k": tokens.encoding_for("gpt-4o-mini").encode,
                "cl100k": tokens.encoding_for("gpt-3.5-turbo").encode,
                "smollm2": lambda t: tok.encode(t, add_special_tokens=False)}
    counts = formats.token_counts(course_data.INTENT_LABELS, encoders)
    assert all(n == 1 for per in counts.values() for n in per.values()), counts


def test_manual_answers_are_in_the_manual():
    manual = course_data.load_manual().set_index("doc")["text"]
    qa = course_data.load_qa()
    assert len(manual) >= 20 and len(qa) >= 80
    assert qa["id"].is_unique and set(qa["split"]) == {"train", "test"}
    for row in qa.itertuples():
        assert row.evidence in manual[row.doc], row.id
        for key in row.key:
            assert key.lower() in row.answer.lower() and key.lower() in row.evidence.lower(), row.id


def test_unanswerable_questions_exist():
    assert len(course_data.load_unanswerable()) >= 15


def test_products_pairs():
    products = course_data.load_products()
    assert len(products) >= 150 and products["id"].is_unique
    words = products["description"].str.split().str.len()
    assert words.between(40, 80).all()
    assert set(products["split"]) == {"train", "valid", "test"}


def test_alpaca_sample_has_system_history_and_other_languages():
    records = course_data.load_alpaca()
    assert all({"instruction", "input", "output", "system", "history"} <= set(r) for r in records)
    assert sum(bool(r["history"]) for r in records) >= 3
    assert any(any(ord(c) > 0x3000 for c in r["instruction"]) for r in records)  # Japanese
    chats = [formats.alpaca_to_chat(r) for r in records]
    assert all(c["messages"][-1]["role"] == "assistant" for c in chats)


def test_legacy_sample_follows_the_rules():
    for record in course_data.load_legacy():
        assert record["prompt"].endswith(formats.SEPARATOR)
        assert record["completion"].startswith(" ") and record["completion"].endswith(formats.STOP)


def test_every_data_folder_has_a_datasheet():
    for folder in ("manual", "intents", "products", "alpaca", "legacy", "raw"):
        sheet = (DATA_DIR / folder / "DATASHEET.md").read_text(encoding="utf-8")
        assert "Base model without help" in sheet and "measured:base" not in sheet


def test_price_table_is_valid_json():
    assert json.loads((DATA_DIR / "openai_prices.json").read_text())["models"]
