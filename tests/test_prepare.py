"""helpers.prepare: the standard fixes, a report of each, the input untouched, and a second run changes nothing."""
import json
import shutil
from pathlib import Path

import pytest

from helpers import prepare, validate
from helpers.environment import DATA_DIR
from helpers.formats import SEPARATOR, STOP

BROKEN = DATA_DIR / "broken"


@pytest.fixture
def copy(tmp_path):
    def _copy(name):
        target = tmp_path / name
        shutil.copy(BROKEN / name, target)
        return target
    return _copy


def _codes(result, action):
    return {(c.line, c.code) for c in result.changes if c.action == action}


def test_chat_file_is_repaired_and_then_validates_without_errors(copy):
    path = copy("chat_train.jsonl")
    before = path.read_bytes()
    result = prepare.prepare_file(path)
    assert path.read_bytes() == before, "the input must never change"
    assert result.kind == "chat" and result.out_path == path.with_name("chat_train_prepared.jsonl")
    assert {(6, "not_object"), (7, "unknown_key"), (8, "missing_messages"), (9, "messages_not_list"),
            (11, "unknown_role"), (15, "bad_weight"), (20, "bad_encoding")} <= _codes(result, "fixed")
    assert {(5, "blank_line"), (10, "empty_messages"), (17, "too_many_tokens"),
            (18, "exact_duplicate")} <= _codes(result, "dropped")
    report = validate.validate_chat_file(result.out_path)
    assert report.ok and report.n_examples == len(result.examples)
    assert {f.code for f in report.findings} <= {"label_imbalance", "near_duplicate"}


def test_legacy_file_gets_separator_space_and_stop(copy):
    result = prepare.prepare_file(copy("legacy_train.jsonl"))
    assert result.kind == "legacy"
    assert {(2, "missing_separator"), (4, "no_leading_space"), (5, "missing_stop"), (8, "unknown_key"),
            (10, "not_json")} <= _codes(result, "fixed")
    assert {(3, "separator_in_prompt"), (9, "exact_duplicate")} <= _codes(result, "dropped")
    for record in result.examples:
        assert set(record) == {"prompt", "completion"} and record["prompt"].endswith(SEPARATOR)
        assert record["completion"].startswith(" ") and record["completion"].endswith(STOP)
    report = validate.validate_legacy_file(result.out_path)
    assert {f.code for f in report.findings} == {"too_few_examples"}, "only the amount of data is left to fix"


def test_one_json_array_becomes_json_lines(copy):
    result = prepare.prepare_file(copy("pretty.json"))
    assert _codes(result, "fixed") == {(None, "not_jsonl")}
    lines = result.out_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(result.examples) == len(json.loads((BROKEN / "pretty.json").read_text()))


@pytest.mark.parametrize("name", ["chat_train.jsonl", "legacy_train.jsonl", "pretty.json"])
def test_preparing_twice_changes_nothing_more(copy, name):
    first = prepare.prepare_file(copy(name))
    second = prepare.prepare_file(first.out_path)
    assert second.changes == [] and second.kind == first.kind
    assert second.out_path.read_bytes() == first.out_path.read_bytes()


def test_the_input_is_never_the_output(copy):
    path = copy("legacy_train.jsonl")
    with pytest.raises(ValueError, match="input file"):
        prepare.prepare_file(path, out=path)


def test_cli_writes_the_prepared_file_and_reports(copy, capsys, tmp_path):
    out = tmp_path / "fixed.jsonl"
    assert prepare.main([str(copy("legacy_train.jsonl")), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "legacy file, kept" in said and "[missing_stop] fixed" in said and out.exists()
    assert prepare.main([str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot prepare" in capsys.readouterr().err


def test_prepare_examples_in_memory():
    values = [(1, {"messages": [{"role": "Human", "content": "Lights on"}, {"role": "bot", "content": "lights"}],
                   "id": 3}),
              (2, [{"role": "user", "content": "Lights on"}, {"role": "assistant", "content": "lights"}])]
    kept, changes = prepare.prepare_examples(values, "chat", count_tokens=lambda messages: 10)
    assert kept == [{"messages": [{"role": "user", "content": "Lights on"},
                                  {"role": "assistant", "content": "lights"}]}]
    assert [c.code for c in changes if c.action == "dropped"] == ["exact_duplicate"]
    assert Path(prepare.prepared_path("a/b.jsonl")) == Path("a/b_prepared.jsonl")
