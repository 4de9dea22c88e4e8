import json

import pytest

from helpers import formats


def test_jsonl_round_trip_keeps_unicode(tmp_path):
    rows = [{"text": "Heizung an, bitte 🔥"}, {"text": "暖房をつけて"}]
    path = formats.write_jsonl(rows, tmp_path / "sub" / "a.jsonl")
    assert formats.read_jsonl(path) == rows
    assert "🔥" in path.read_text(encoding="utf-8")


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n', encoding="utf-8")
    with pytest.raises(formats.FormatError, match=r"bad.jsonl:3: not valid JSON"):
        formats.read_jsonl(path)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(formats.FormatError, match="cannot read"):
        formats.read_jsonl(tmp_path / "nope.jsonl")


def test_chat_to_legacy_and_back():
    example = formats.chat_example("Dim the hallway lights", "lights", system="Classify.")
    legacy = formats.chat_to_legacy(example)
    assert legacy["prompt"].endswith(formats.SEPARATOR) and legacy["prompt"].count("###") == 1
    assert legacy["completion"] == " lights END"
    back = formats.legacy_to_chat(legacy, system="Classify.")
    assert back["messages"][-1] == {"role": "assistant", "content": "lights"}
    assert back["messages"][-2]["content"] == "Classify.\nDim the hallway lights"


def test_separator_inside_text_is_removed_from_prompt():
    example = formats.chat_example("a\n\n###\n\nb", "x")
    assert formats.chat_to_legacy(example)["prompt"].count(formats.SEPARATOR) == 1


def test_alpaca_system_and_history_become_multi_turn_chat():
    record = {"instruction": "Turn it down", "input": "living room", "output": "Done: 19 °C.",
              "system": "You are the Larkspur assistant.", "history": [["Is the heating on?", "Yes, at 21 °C."]]}
    chat = formats.alpaca_to_chat(record)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert chat["messages"][3]["content"] == "Turn it down\n\nliving room"
    again = formats.chat_to_alpaca(chat)
    assert again["history"] == [["Is the heating on?", "Yes, at 21 °C."]]
    assert again["system"] == "You are the Larkspur assistant." and again["output"] == "Done: 19 °C."


def test_alpaca_bad_history_is_a_clear_error():
    with pytest.raises(formats.FormatError, match="pairs"):
        formats.alpaca_to_chat({"instruction": "x", "output": "y", "history": [["only one"]]})


def test_chat_without_assistant_cannot_become_legacy():
    with pytest.raises(formats.FormatError, match="no assistant"):
        formats.chat_to_legacy({"messages": [{"role": "user", "content": "hi"}]})


def test_single_token_labels_keeps_single_tokens_and_replaces_others():
    encoders = {"fake": lambda text: text.split("_") if "_" in text else [text]}
    mapping = formats.single_token_labels(["lights", "climate_control", "Media"], encoders)
    assert mapping == {"lights": "lights", "climate_control": "climate", "Media": "Media"}


def test_single_token_labels_with_real_tokenizers():
    from helpers import tokens

    enc = tokens.encoding_for("gpt-4o-mini")
    mapping = formats.single_token_labels(["energy management", "door security"], {"o200k": enc.encode})
    assert mapping == {"energy management": "energy", "door security": "door"}
    counts = formats.token_counts(mapping.values(), {"o200k": enc.encode})
    assert all(c["o200k"] == 1 for c in counts.values())


def test_split_has_no_leakage_and_keeps_balance():
    rows = [{"text": f"turn on lamp {i}", "label": "lights"} for i in range(50)]
    rows += [{"text": f"set heating to {i} degrees", "label": "heating"} for i in range(50)]
    rows += [{"text": "Turn on lamp 3!!", "label": "lights"}, {"text": "turn ON lamp 3", "label": "lights"}]
    train, valid = formats.split_train_valid(rows, 0.2, seed=1, label_of=lambda r: r["label"])
    assert len(train) + len(valid) == len(rows)
    keys_train = {formats.leakage_key(r["text"]) for r in train}
    assert not keys_train & {formats.leakage_key(r["text"]) for r in valid}
    assert sum(r["label"] == "lights" for r in valid) == 10 and sum(r["label"] == "heating" for r in valid) == 10
    again = formats.split_train_valid(rows, 0.2, seed=1, label_of=lambda r: r["label"])
    assert json.dumps(again) == json.dumps((train, valid))


def test_chat_labels_without_space_can_split_but_first_tokens_differ():
    from helpers import course_data, tokens

    enc = {"o200k": tokens.encoding_for("gpt-4o-mini").encode}
    with_space = formats.token_counts(course_data.INTENT_LABELS, enc)
    without = formats.token_counts(course_data.INTENT_LABELS, enc, leading_space=False)
    assert all(c["o200k"] == 1 for c in with_space.values())
    assert without["heating"]["o200k"] == 2
    assert formats.first_tokens_differ(course_data.INTENT_LABELS, enc)
    assert not formats.first_tokens_differ(["heat", "heating"], {"fake": lambda t: [t[:4]]})
