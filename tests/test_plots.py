"""Tests for helpers.plots."""
from __future__ import annotations

import base64

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
from IPython.core.formatters import DisplayFormatter

from helpers.plots import LivePlot, figure_png, token_histogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


def line(slope, intercept=0):
    """A draw function for the tests: a new figure with one line whose slope and intercept are given."""
    ax = plt.subplots(figsize=(3, 2))[1]
    ax.plot([0, 1], [intercept, intercept + slope])
    ax.set_title(f"slope {slope}")


def test_figure_png_renders_the_figure_it_opened_and_closes_it():
    kept = plt.figure()   # a figure the caller had open stays open
    png = figure_png(line, slope=2)
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    assert plt.get_fignums() == [kept.number]
    assert figure_png(line, slope=2) == png and figure_png(line, slope=-2) != png


def test_figure_png_closes_its_figures_when_draw_fails():
    def broken():
        plt.subplots()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        figure_png(broken)
    assert plt.get_fignums() == []
    with pytest.raises(ValueError, match="opened no matplotlib figure"):
        figure_png(lambda: None)


def live_line():
    return LivePlot(line, {"slope": widgets.Dropdown(options=[1, 3], description="slope"),
                           "intercept": widgets.SelectionSlider(options=[0, 5], description="intercept")})


def test_live_plot_is_one_bundle_with_the_widget_and_a_png_fallback():
    live = live_line()
    data, _ = DisplayFormatter().format(live)   # what IPython sends when a cell ends with live
    assert data[WIDGET_VIEW]["model_id"] == live.widget.model_id
    assert base64.b64decode(data["image/png"]) == live.image.value == figure_png(line, slope=1, intercept=0)
    assert data["text/plain"].startswith("LivePlot(slope, intercept)")
    assert live.widget.children[0].children == tuple(live.controls.values())
    assert live.widget.children[1] is live.image
    assert plt.get_fignums() == []   # nothing left for the inline backend to draw again


def test_live_plot_redraws_when_a_control_changes_and_the_fallback_follows():
    live = live_line()
    first = live.image.value
    live.controls["slope"].value = 3
    assert live.image.value == figure_png(line, slope=3, intercept=0) != first
    live.controls["intercept"].value = 5
    assert live.image.value == figure_png(line, slope=3, intercept=5)
    assert base64.b64decode(live._repr_mimebundle_()["image/png"]) == live.image.value
    assert plt.get_fignums() == []


def test_live_plot_needs_controls():
    with pytest.raises(ValueError, match="at least one control"):
        LivePlot(line, {})


def test_a_renderer_without_widgets_shows_the_png_once():
    nbconvert = pytest.importorskip("nbconvert")
    import nbformat

    data, _ = DisplayFormatter().format(live_line())
    output = nbformat.v4.new_output("execute_result", data=data, execution_count=1)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("LivePlot(...)", outputs=[output])])
    markdown, resources = nbconvert.MarkdownExporter().from_notebook_node(notebook)
    assert list(resources["outputs"]) == ["output_0_0.png"] and markdown.count("![png](output_0_0.png)") == 1
    assert "LivePlot(slope" not in markdown   # the PNG, not the text stand-in
