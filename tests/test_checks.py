"""Checks that teach: ✓/⚠ lines, strictness in ci mode and the claims run, and a table whose every range can fail."""
import json
import math
import re
from pathlib import Path

import nbformat
import pytest

from helpers import checks
from helpers.expectations import EXPECTATIONS, KINDS, Expectation

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SAMPLE = Expectation("04", "LoRA's accuracy on the held-out requests", "share", ci=(0.2, 1.0), cpu=(0.95, 1.0),
                     otherwise="Fewer right answers mean the adapter has not learned the task.")


@pytest.fixture
def sample(monkeypatch):
    monkeypatch.setitem(EXPECTATIONS, "sample_accuracy", SAMPLE)
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_CLAIMS_LOG", raising=False)
    return "sample_accuracy"


def test_in_range_prints_a_tick_with_value_and_range(sample, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert checks.expect(sample, 0.973) is True
    assert capsys.readouterr().out == ("✓ LoRA's accuracy on the held-out requests: 97.3% "
                                       "(expected at least 95.0%)\n")


def test_out_of_range_warns_a_learner_without_stopping(sample, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert checks.expect(sample, 0.81) is False
    out = capsys.readouterr().out
    assert out.startswith("⚠ LoRA's accuracy on the held-out requests: 81.0%, but expected at least 95.0%.")
    assert "has not learned the task" in out


@pytest.mark.parametrize("mode, strict", [("ci", ""), ("cpu", "1")])
def test_ci_and_the_claims_run_raise(sample, monkeypatch, mode, strict):
    monkeypatch.setenv("COURSE_MODE", mode)
    monkeypatch.setenv("COURSE_STRICT", strict)
    with pytest.raises(checks.ClaimNotMet, match="81.0%|10.0%"):
        checks.expect(sample, 0.81 if mode == "cpu" else 0.10)


def test_nan_never_passes(sample, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert checks.expect(sample, math.nan) is False


def test_each_check_is_logged_for_the_claims_run(sample, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODE", "cpu")
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("COURSE_CLAIMS_LOG", str(log))
    checks.expect(sample, 0.97)
    checks.expect(sample, 0.5)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["notebook"], r["key"], r["pass"], r["measured"]) for r in rows] == [
        ("04", sample, True, "97.0%"), ("04", sample, False, "50.0%")]
    assert rows[0]["expected"] == "expected at least 95.0%" and rows[0]["low"] == 0.95


def test_an_unknown_key_is_a_clear_error():
    with pytest.raises(KeyError, match="No expectation named 'lora_acuracy'"):
        checks.expect("lora_acuracy", 1.0)


def test_ranges_read_as_words():
    gap = Expectation("04", "gap", "gap", ci=(0, 1e-4), cpu=(0, 1e-4), otherwise="")
    assert gap.describe(0, 1e-4) == "expected at most 1.0e-04"
    assert SAMPLE.describe(0.95, 1.0) == "expected at least 95.0%"
    assert SAMPLE.describe(0.7, 0.9) == "expected 70.0% to 90.0%"
    assert Expectation("x", "c", "count", ci=(2, 2), cpu=(2, 2), otherwise="").describe(2, 2) == "expected exactly 2"
    assert Expectation("x", "c", "ratio", ci=(1, math.inf), cpu=(1, math.inf), otherwise="").describe(
        1, math.inf) == "expected at least 1.00×"


def test_confirm_prints_one_line_and_is_strict_in_ci(monkeypatch, capsys):
    def check(answer):
        print("Not quite:\n- r=4: you computed 2, peft counts 4")
        return answer == 4

    monkeypatch.setenv("COURSE_MODE", "cpu")
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    assert checks.confirm(check, 4) and capsys.readouterr().out == "✓ the solution passes the check\n"
    assert not checks.confirm(check, 2) and capsys.readouterr().out.startswith("✗ the solution does not pass")
    monkeypatch.setenv("COURSE_MODE", "ci")
    with pytest.raises(checks.ClaimNotMet, match="peft counts 4"):
        checks.confirm(check, 2)


@pytest.mark.parametrize("key", sorted(EXPECTATIONS))
def test_every_range_can_fail_in_every_mode(key):
    spec = EXPECTATIONS[key]
    assert spec.kind in KINDS and re.fullmatch(r"\d\d", spec.notebook)
    assert spec.claim and spec.otherwise.endswith((".", ")")), "say what a different value means, as a sentence"
    lo_domain, hi_domain = spec.domain
    for mode in ("ci", "cpu", "gpu"):
        low, high = spec.range_for(mode)
        assert lo_domain <= low <= high <= hi_domain, f"{mode}: ({low}, {high}) is not within {spec.domain}"
        assert low > lo_domain or high < hi_domain, f"{mode}: ({low}, {high}) spans every possible value"


def _keys_used(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return set(re.findall(r"""expect\(\s*["']([a-z0-9_]+)["']""", text))


def test_every_expectation_is_used_by_its_own_notebook():
    used = {path.name[:2]: _keys_used(path) for path in NOTEBOOKS}
    for key, spec in EXPECTATIONS.items():
        assert key in used.get(spec.notebook, set()), f"{key} belongs to {spec.notebook} but that notebook never checks it"
    for notebook, keys in used.items():
        unknown = [k for k in keys if k not in EXPECTATIONS or EXPECTATIONS[k].notebook != notebook]
        assert not unknown, f"notebook {notebook} checks {unknown}, which helpers/expectations.py gives no range for it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_bare_result_asserts_or_nbval_comments_in_learner_cells(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert "NBVAL" not in cell.source, "nbval markers are cell tags (nbval-ignore-output, nbval-check-output)"
        bare = [line for line in cell.source.splitlines() if re.match(r"\s*assert\b", line)]
        assert not bare, f"use helpers.checks.expect (results) or checks.confirm (solutions), not: {bare[0]}"
