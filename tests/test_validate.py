"""Tests for helpers.validate: every defect class, found with its exact line, in one pass."""
from __future__ import annotations

import json
import random
import time

import pytest

from helpers.validate import CHECKS, Report, validate_chat_file, validate_legacy_file

QUESTIONS = [
    "When do I have to start the heater?",
    "Where is the garage remote control?",
    "What colour do the Larkspur Glow bulbs turn when the doorbell rings?",
    "How do I reset the Larkspur Sentry door lock?",
    "Which day is the recycling collected at 14 Alder Lane?",
    "How warm should the Larkspur Hearth H2 heat pump be set at night?",
    "Where is the spare key for the garden shed kept?",
    "What is the wifi network called in the demo house?",
    "How long does the hallway light stay on after sunset?",
    "Who do I call when the smoke alarm beeps twice?",
    "Which drawer holds the batteries for the thermostat?",
    "Can the porch camera record at night?",
    "How many Glow bulbs are in the living room ceiling?",
    "What code opens the side gate keypad?",
]


def chat(question: str, answer: str = "The answer is written in the Larkspur manual.", **extra) -> dict:
    return {"messages": [{"role": "system", "content": "You are the Larkspur Living assistant."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}], **extra}


def legacy(question: str, answer: str = "It is in the manual.") -> dict:
    return {"prompt": question + "\n\n###\n\n", "completion": " " + answer + " END"}


def write(folder, lines, name="train.jsonl"):
    """Write dicts as JSON lines, str and bytes as they are."""
    path = folder / name
    with path.open("wb") as f:
        for line in lines:
            raw = line if isinstance(line, bytes) else (
                line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode()
            f.write(raw + b"\n")
    return path


def good_chats(n=12):
    return [chat(q) for q in QUESTIONS[:n]]


def found(report: Report) -> list[tuple[str, int | None]]:
    return [(f.code, f.line) for f in report.findings]


def no_tokens(messages):
    return 1


def words(messages):
    """A fast stand-in for a token counter: words in the messages."""
    return sum(len(str(m.get("content")).split()) for m in messages)


def test_clean_chat_file_is_ok(tmp_path):
    report = validate_chat_file(write(tmp_path, good_chats()), count_tokens=no_tokens)
    assert report.ok and report.findings == [] and report.n_examples == 12
    assert "OK" in str(report) and report.summary() == {} and report.to_frame().empty


def test_clean_legacy_file_is_ok(tmp_path):
    report = validate_legacy_file(write(tmp_path, [legacy(q) for q in QUESTIONS[:12]]))
    assert report.ok and report.findings == [] and report.n_examples == 12


def test_not_json_gives_the_column(tmp_path):
    report = validate_chat_file(write(tmp_path, [*good_chats(), '{"messages": [}']), count_tokens=no_tokens)
    assert found(report) == [("not_json", 13)]
    assert "column 15" in report.findings[0].message


def test_not_object_and_blank_line(tmp_path):
    report = validate_chat_file(write(tmp_path, [*good_chats(), "[1, 2]", '"hello"', "", "  "]),
                                count_tokens=no_tokens)
    assert found(report) == [("not_object", 13), ("not_object", 14), ("blank_line", 15), ("blank_line", 16)]
    assert "array" in report.findings[0].message
    assert report.findings[2].severity == "warning"


def test_bad_encoding(tmp_path):
    report = validate_chat_file(write(tmp_path, [*good_chats(), b'{"messages": "caf\xe9"}']), count_tokens=no_tokens)
    assert found(report) == [("bad_encoding", 13)]
    assert "byte 18" in report.findings[0].message


def test_messages_structure(tmp_path):
    lines = [*good_chats(), {"prompt": "hi"}, {"messages": "hello"}, {"messages": []}]
    report = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens)
    assert found(report) == [("unknown_key", 13), ("missing_messages", 13), ("messages_not_list", 14),
                             ("empty_messages", 15)]
    assert "legacy" in report.findings[1].message


def test_roles_and_content(tmp_path):
    lines = [*good_chats(),
             {"messages": [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
             {"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
             {"messages": [{"role": "user"}, {"role": "assistant", "content": None}]},
             {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}]},
             {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "Hello"}]},
             {"messages": ["Hi", {"role": "assistant", "content": "Hello"}]}]
    report = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens)
    assert found(report) == [("unknown_role", 13), ("unknown_role", 14), ("missing_content", 15),
                             ("missing_content", 15), ("empty_content", 16), ("empty_content", 16),
                             ("bad_content_type", 17), ("not_object", 18)]
    assert "'human'" in report.findings[0].message and "no role" in report.findings[1].message


def test_tool_calls_may_have_null_content(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "heater_on", "arguments": "{}"}}
    lines = [chat(q) for q in QUESTIONS[:11]] + [{"messages": [
        {"role": "user", "content": "Start the heater"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "started"},
        {"role": "assistant", "content": "The heater is on."}], "tools": []}]
    assert validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens).findings == []


def test_unknown_keys_at_both_levels(tmp_path):
    example = chat(QUESTIONS[12], metadata={"id": 1})
    example["messages"][1]["text"] = "typo"
    report = validate_chat_file(write(tmp_path, [*good_chats(), example]), count_tokens=no_tokens)
    assert found(report) == [("unknown_key", 13), ("unknown_key", 13)]
    assert "'metadata'" in report.findings[0].message and "message 2" in report.findings[1].message


def test_no_assistant(tmp_path):
    report = validate_chat_file(write(tmp_path, [*good_chats(), {"messages": [{"role": "user", "content": "Hi"}]}]),
                                count_tokens=no_tokens)
    assert found(report) == [("no_assistant", 13)]


def test_bad_weight(tmp_path):
    one, two, three = chat(QUESTIONS[0]), chat(QUESTIONS[1]), chat(QUESTIONS[2])
    one["messages"][2]["weight"] = 2
    two["messages"][1]["weight"] = 1
    three["messages"][2]["weight"] = 0  # fine
    report = validate_chat_file(write(tmp_path, [one, two, three, *good_chats()[3:]]), count_tokens=no_tokens)
    assert found(report) == [("bad_weight", 1), ("bad_weight", 2)]


def test_too_few_examples(tmp_path):
    path = write(tmp_path, good_chats(5))
    report = validate_chat_file(path, count_tokens=no_tokens)
    assert found(report) == [("too_few_examples", None)] and not report.ok
    assert validate_chat_file(path, count_tokens=no_tokens, min_examples=5).ok


def test_too_many_tokens_with_a_fake_counter(tmp_path):
    lines = good_chats()
    lines[3] = chat("x " * 50)
    report = validate_chat_file(write(tmp_path, lines), max_tokens=40, count_tokens=words)
    assert found(report) == [("too_many_tokens", 4)]
    assert "has 64 tokens; the limit is 40" in report.findings[0].message
    assert "split" in report.findings[0].fix


def test_default_token_counter(tmp_path):
    from helpers.tokens import install_offline_encodings

    install_offline_encodings()
    path = write(tmp_path, good_chats(3))
    assert validate_chat_file(path, min_examples=1).findings == []
    report = validate_chat_file(path, min_examples=1, max_tokens=20)
    assert [f.code for f in report.findings] == ["too_many_tokens"] * 3
    assert "the limit is 20" in report.findings[0].message


def test_a_failing_counter_is_one_warning(tmp_path):
    def broken(messages):
        raise RuntimeError("no encodings")

    report = validate_chat_file(write(tmp_path, good_chats()), count_tokens=broken)
    assert found(report) == [("tokens_not_counted", 1)] and report.ok


def test_exact_and_near_duplicates(tmp_path):
    lines = [*good_chats(), chat(QUESTIONS[1]), chat("where is the GARAGE remote control", "Another answer."),
             chat("Where is the garage remote controls?")]
    report = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens)
    assert found(report) == [("exact_duplicate", 13), ("near_duplicate", 14), ("near_duplicate", 15)]
    assert "line 2" in report.findings[0].message
    assert "100% similar to line 2" in report.findings[1].message and "line 2" in report.findings[2].message


def test_train_valid_overlap(tmp_path):
    train = write(tmp_path, good_chats())
    valid = write(tmp_path, [chat(QUESTIONS[12]), chat("When do I have to start the heater ?"),
                             chat(QUESTIONS[13]), {"messages": []}], name="valid.jsonl")
    report = validate_chat_file(train, valid_path=valid, count_tokens=no_tokens)
    assert found(report) == [("train_valid_overlap", 2), ("empty_messages", 4)]
    assert report.findings[0].file == str(valid) and "training line 1" in report.findings[0].message
    assert not report.ok


def test_label_imbalance(tmp_path):
    lines = [chat(q, "billing") for q in QUESTIONS[:10]] + [chat(q, "refund") for q in QUESTIONS[10:12]]
    report = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens)
    assert found(report) == [("label_imbalance", None)] and report.ok
    assert "'billing': 10" in report.findings[0].message and "'refund': 2" in report.findings[0].message
    balanced = [chat(q, "billing" if i % 2 else "refund") for i, q in enumerate(QUESTIONS[:12])]
    assert validate_chat_file(write(tmp_path, balanced), count_tokens=no_tokens).findings == []
    by_question = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens, imbalance_ratio=10)
    assert by_question.findings == []


def test_label_imbalance_with_own_label_function(tmp_path):
    lines = [chat(q, metadata=None) for q in QUESTIONS[:12]]
    for example in lines:
        del example["metadata"]
    report = validate_chat_file(write(tmp_path, lines), count_tokens=no_tokens, min_examples=1,
                                label_of=lambda ex: "heater" if "heater" in ex["messages"][1]["content"] else "other")
    assert found(report) == [("label_imbalance", None)]


def test_legacy_defects(tmp_path):
    lines = [legacy(q) for q in QUESTIONS[:12]] + [
        {"prompt": "Where?\n\n###\n\nWhen?\n\n###\n\n", "completion": " Here END"},
        {"prompt": "Where is it?", "completion": " Here END"},
        {"prompt": "Where is the bin?\n\n###\n\n", "completion": "Here END"},
        {"prompt": "Where is the hose?\n\n###\n\n", "completion": " Here"},
        {"completion": " Here END"},
        {"prompt": "Where is the ladder?\n\n###\n\n", "completion": ""},
        {"prompt": "Where is the rake?\n\n###\n\n", "completion": " Here END", "label": "x"},
        {"messages": []},
    ]
    report = validate_legacy_file(write(tmp_path, lines))
    assert found(report) == [
        ("separator_in_prompt", 13), ("missing_separator", 14), ("no_leading_space", 15), ("missing_stop", 16),
        ("missing_prompt", 17), ("missing_completion", 18), ("unknown_key", 19),
        ("unknown_key", 20), ("missing_prompt", 20), ("missing_completion", 20)]
    assert "chat" in report.findings[8].message


def test_legacy_duplicates_overlap_and_labels(tmp_path):
    lines = [legacy(q, "yes") for q in QUESTIONS[:11]] + [legacy(QUESTIONS[0], "yes"), legacy(QUESTIONS[11], "no")]
    valid = write(tmp_path, [legacy(QUESTIONS[5].upper(), "yes")], name="valid.jsonl")
    report = validate_legacy_file(write(tmp_path, lines), valid_path=valid)
    assert found(report) == [("label_imbalance", None), ("exact_duplicate", 12), ("train_valid_overlap", 1)]
    assert "training line 6" in report.findings[2].message


def test_many_defects_in_one_pass(tmp_path):
    lines = [*good_chats(),
             '{"messages": ',                                                  # 13 not_json
             "[]",                                                             # 14 not_object
             "",                                                               # 15 blank_line
             b"\xff\xfe",                                                      # 16 bad_encoding
             {"messages": [{"role": "robot", "content": "Hi"}]},               # 17 unknown_role, no_assistant
             chat(QUESTIONS[0]),                                               # 18 exact_duplicate
             chat("When do I have to start the heaters?"),                     # 19 near_duplicate
             chat(QUESTIONS[12], extra=1),                                     # 20 unknown_key
             chat("y " * 500),                                                 # 21 too_many_tokens
             {"messages": [{"role": "user", "content": ""},
                           {"role": "assistant", "content": "Hi", "weight": 3}]},  # 22 empty_content, bad_weight
             ]
    report = validate_chat_file(write(tmp_path, lines), max_tokens=40, count_tokens=words)
    assert found(report) == [("not_json", 13), ("not_object", 14), ("blank_line", 15), ("bad_encoding", 16),
                             ("unknown_role", 17), ("no_assistant", 17), ("exact_duplicate", 18),
                             ("near_duplicate", 19), ("unknown_key", 20), ("too_many_tokens", 21),
                             ("empty_content", 22), ("bad_weight", 22)]
    assert report.n_examples == 18 and len(report.errors) == 9 and len(report.warnings) == 3
    assert report.summary()["near_duplicate"] == 1
    lines_in_order = [f.line for f in report.findings]
    assert lines_in_order == sorted(lines_in_order)


def test_str_names_file_and_line(tmp_path):
    path = write(tmp_path, [*good_chats(), "oops"])
    text = str(validate_chat_file(path, count_tokens=no_tokens))
    first, second = text.splitlines()
    assert str(path) in first and "1 error" in first and "NOT READY" in first
    assert second.startswith(f"{path}:13: [not_json] ") and " -- fix: " in second


def test_to_frame(tmp_path):
    frame = validate_chat_file(write(tmp_path, good_chats(5)), count_tokens=no_tokens).to_frame()
    assert list(frame.columns) == ["file", "line", "severity", "code", "message", "fix"]
    assert frame.loc[0, "code"] == "too_few_examples" and frame["line"].isna().all()


@pytest.mark.parametrize("make", ["missing", "folder", "empty", "garbage", "nul", "array_file", "one_line_array",
                                  "nested", "bom"])
def test_never_raises_on_garbage(tmp_path, make):
    path = tmp_path / "train.jsonl"
    if make == "folder":
        path.mkdir()
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "garbage":
        path.write_bytes(random.Random(0).randbytes(20_000))
    elif make == "nul":
        path.write_bytes(b"\x00" * 100 + b"\n")
    elif make == "array_file":
        path.write_text(json.dumps(good_chats(), indent=2))
    elif make == "one_line_array":
        path.write_text(json.dumps(good_chats()) + "\n")
    elif make == "nested":
        path.write_text("[" * 100_000 + "\n")
    elif make == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat("Hi")).encode() + b"\n")
    for validate in (validate_chat_file, validate_legacy_file):
        report = validate(path)
        assert not report.ok and report.findings
        assert all(f.code in CHECKS and f.severity in ("error", "warning") for f in report.findings)
        str(report), report.to_frame()
    expected = {"missing": "unreadable_file", "folder": "unreadable_file", "empty": "empty_file",
                "array_file": "not_jsonl", "one_line_array": "not_object", "nul": "not_json", "nested": "not_json",
                "bom": "bad_encoding"}
    if make in expected:
        assert expected[make] in {f.code for f in report.findings}
    if make in ("missing", "folder", "empty", "array_file"):
        assert len(report.findings) == 1 and report.n_examples == 0


def test_file_is_not_modified(tmp_path):
    path = write(tmp_path, [*good_chats(), "oops", chat(QUESTIONS[0])])
    before = path.read_bytes(), path.stat().st_mtime_ns
    validate_chat_file(path, count_tokens=no_tokens)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_every_code_has_severity_and_fix():
    assert all(severity in ("error", "warning") and fix for severity, fix in CHECKS.values())
    assert all(code == code.lower() and " " not in code for code in CHECKS)


def test_two_thousand_examples_are_fast(tmp_path):
    rng = random.Random(1)
    words = ["heater", "garage", "remote", "bulb", "lock", "door", "window", "garden", "light", "gate", "alarm"]
    lines = [chat(" ".join(rng.choice(words) for _ in range(12)) + f" number {i}") for i in range(2000)]
    path = write(tmp_path, lines)
    start = time.perf_counter()
    report = validate_chat_file(path, count_tokens=no_tokens, valid_path=path)
    assert time.perf_counter() - start < 30
    assert report.summary()["train_valid_overlap"] == 2000
