"""Tests for helpers.plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from helpers.plots import token_histogram


@pytest.fixture(autouse=True)
def _headless_figures():
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def test_one_series_counts_every_example():
    ax = token_histogram([10, 12, 12, 30], bins=5)
    assert sum(p.get_height() for p in ax.patches) == 4
    assert ax.get_legend() is None
    assert ax.get_xlabel() == "tokens per example"


def test_several_series_share_bins_and_get_a_legend():
    ax = token_histogram({"user": [5, 6, 7], "assistant": [1, 1, 40]}, bins=4, title="by role", ylabel="messages")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["user", "assistant"]
    widths = {round(p.get_width(), 6) for p in ax.patches}
    assert len(widths) == 1  # the same bins for both series
    assert ax.get_title() == "by role" and ax.get_ylabel() == "messages"


def test_a_limit_in_range_is_a_line():
    ax = token_histogram([100, 200, 300], limit=400)
    assert any(list(line.get_xdata()) == [400, 400] for line in ax.lines)
    assert not ax.texts


def test_a_limit_far_off_the_scale_is_a_note():
    ax = token_histogram([100, 200, 300], limit=16_385)
    assert not ax.lines
    assert "16,385" in ax.texts[0].get_text() and "1.8%" in ax.texts[0].get_text()


def test_empty_counts_are_a_clear_error():
    with pytest.raises(ValueError, match="non-empty"):
        token_histogram({"user": []})
