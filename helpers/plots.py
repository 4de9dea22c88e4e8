"""Small plotting helpers for the notebooks. Each draws on a matplotlib ``Axes`` and returns it.

>>> ax = token_histogram({"intents": [31, 35, 40], "manual QA": [60, 75, 90]}, limit=16_385)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


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
