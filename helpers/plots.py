"""Small plotting helpers for the notebooks.

:func:`token_histogram` draws on a matplotlib ``Axes`` and returns it. :class:`LivePlot` shows a plot with
controls that redraw it, as one output that also works where widgets do not render.

>>> ax = token_histogram({"intents": [31, 35, 40], "manual QA": [60, 75, 90]}, limit=16_385)
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence


def token_histogram(counts: Sequence[int] | Mapping[str, Sequence[int]], *, limit: int | None = None,
                    ax=None, title: str | None = None, bins: int = 30, xlabel: str = "tokens per example",
                    ylabel: str = "examples"):
    """Histogram of token counts, one overlaid series per name when ``counts`` is a mapping.

    All series share the same bins. ``limit`` (a model's maximum tokens per example) is drawn as a
    dashed red line when it lies within twice the longest count; otherwise a note in the corner names it
    and says how much of it the longest example uses, so that short examples keep a readable scale.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    series = dict(counts) if isinstance(counts, Mapping) else {"": list(counts)}
    series = {name: np.asarray(values, dtype=float) for name, values in series.items()}
    if not series or not all(len(values) for values in series.values()):
        raise ValueError("token_histogram needs at least one non-empty list of token counts.")
    if ax is None:
        ax = plt.subplots(figsize=(7, 3.5))[1]
    longest = max(float(values.max()) for values in series.values())
    edges = np.histogram_bin_edges(np.concatenate(list(series.values())), bins=bins)
    for name, values in series.items():
        ax.hist(values, bins=edges, alpha=0.6 if len(series) > 1 else 0.9, label=name or None)
    if limit is not None and limit <= 2 * longest:
        ax.axvline(limit, color="C3", linestyle="--", label=f"limit: {limit:,} tokens")
    elif limit is not None:
        ax.text(0.98, 0.95, f"limit {limit:,} tokens is off the scale:\nthe longest example uses "
                f"{longest / limit:.1%} of it", transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ax.get_legend_handles_labels()[1]:
        ax.legend()
    return ax


def figure_png(draw: Callable[..., object], /, **values) -> bytes:
    """Call ``draw(**values)``, which must open a new matplotlib figure (``plt.subplots`` does), and return
    that figure as PNG bytes. Every figure the call opened is closed again, so that Jupyter's inline backend
    does not show it a second time at the end of the cell."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        draw(**values)
        opened = [number for number in plt.get_fignums() if number not in before]
        if not opened:
            raise ValueError("draw() opened no matplotlib figure: start one in it, e.g. with plt.subplots().")
        buffer = io.BytesIO()
        plt.figure(opened[-1]).savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    finally:
        for number in plt.get_fignums():
            if number not in before:
                plt.close(number)


class LivePlot:
    """A plot with controls that redraw it: ``LivePlot(draw, {"n_epochs": dropdown, ...})``.

    ``draw(**values)`` opens a new matplotlib figure; ``controls`` maps each of its keywords to an ipywidgets
    control (a ``Dropdown``, a slider…) whose ``value`` it receives. Each change of a control redraws the
    figure into an ``ipywidgets.Image`` below the controls.

    Displayed (the last line of a cell, or ``display(live_plot)``), it gives ONE output whose mime bundle holds
    both the widget view (``application/vnd.jupyter.widget-view+json``) and a static ``image/png`` of the
    current plot. A frontend picks the richest type it can render: JupyterLab, Notebook 7 and VS Code show
    the live controls and plot only; a renderer without widgets that takes the PNG shows the plot as a
    picture (GitHub's notebook view, nbconvert's Markdown, LaTeX and PDF exports). So the plot is drawn once
    either way, never a live copy and a static copy one under the other. (nbconvert's HTML export, which
    nbviewer uses, prefers the widget view and draws it only from widget state saved in the notebook.)
    """

    def __init__(self, draw: Callable[..., object], controls: Mapping[str, object]):
        import ipywidgets as widgets

        if not controls:
            raise ValueError("LivePlot needs at least one control, e.g. {'n_epochs': widgets.Dropdown(...)}.")
        self.draw, self.controls = draw, dict(controls)
        self.image = widgets.Image(value=self.render(), format="png")
        self.widget = widgets.VBox([widgets.HBox(list(self.controls.values())), self.image])
        for control in self.controls.values():
            control.observe(self._redraw, names="value")

    def values(self) -> dict:
        """The controls' current values, by ``draw``'s keyword."""
        return {name: control.value for name, control in self.controls.items()}

    def render(self) -> bytes:
        """The plot for the current values, as PNG bytes."""
        return figure_png(self.draw, **self.values())

    def _redraw(self, _change=None) -> None:
        self.image.value = self.render()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_()
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        bundle["text/plain"] = f"LivePlot({', '.join(self.controls)}): a plot with controls"
        return bundle
