"""Figures of the compositional tests: accuracy per category with intervals and the chance
line (the demo's binding test, SugarCrepe), and example stimuli with their two captions."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from unirepclip.viz.style import OKABE_ITO, PALETTE, subplots

__all__ = ["plot_category_panels", "plot_binding_examples"]


def plot_category_panels(summaries: Mapping[str, Mapping[str, Mapping[str, Any]]], *,
                         chance: float = 0.5, metric: str = "text accuracy",
                         suptitle: Optional[str] = None):
    """One panel per category; in each, one bar per model (``summaries[model][category]`` with
    ``text_acc`` and an ``interval``), its interval as an error bar and chance as a dashed line.
    A model without the category leaves its slot empty."""
    models = list(summaries)
    categories = list(dict.fromkeys(c for s in summaries.values() for c in s))
    if not models or not categories:
        raise ValueError("plot_category_panels: no model or no category to show")
    ncols = min(4, len(categories))
    nrows = -(-len(categories) // ncols)
    fig, axes = subplots(nrows, ncols, width="two", aspect=0.3 * nrows + 0.08, squeeze=False)
    for ax, category in zip(axes.ravel(), categories):
        for i, model in enumerate(models):
            s = summaries[model].get(category)
            if s is None:
                continue
            iv = s["interval"]
            est, low, high = (100 * getattr(iv, k) for k in ("estimate", "low", "high"))
            ax.bar(i, est, color=PALETTE[i % len(PALETTE)], width=0.7, label=model)
            ax.errorbar(i, est, yerr=[[est - low], [high - est]], fmt="none",
                        ecolor=OKABE_ITO["black"], capsize=3, lw=1)
        ax.axhline(100 * chance, color=OKABE_ITO["black"], ls="--", lw=1)
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([str(i + 1) for i in range(len(models))])
        ax.set_title(category)
        ax.set_xlabel("model")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (%)")
    for ax in axes.ravel()[len(categories):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=PALETTE[i % len(PALETTE)]) for i in range(len(models))]
    handles.append(Line2D([], [], color=OKABE_ITO["black"], ls="--", lw=1))
    labels = [f"{i + 1}: {m}" for i, m in enumerate(models)] + [f"chance ({chance:.0%})"]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_binding_examples(images: np.ndarray, captions: Sequence[Sequence[str]],
                          titles: Sequence[str]):
    """Example stimuli in a row, each titled (its category) with its positive caption (top, the
    one that matches) and its negative (below, after "vs")."""
    n = len(images)
    if not n or n != len(captions) or n != len(titles):
        raise ValueError(f"{n} images, {len(captions)} caption pairs, {len(titles)} titles: "
                         "expected as many, at least one")
    fig, axes = subplots(1, n, width="two", aspect=0.34, squeeze=False)
    for ax, image, (pos, neg), title in zip(axes[0], images, captions, titles):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
        ax.set_xlabel(f"+ {pos}\n- {neg}", fontsize="x-small")
    return fig
