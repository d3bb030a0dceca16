"""Figures and Markdown tables of notebook 04's attribution results.

The results come from :mod:`unirepclip.analysis.attribution`; here they are drawn
(:func:`plot_attribution_grid`, :func:`plot_randomization`) and tabulated (:func:`metrics_table`,
:func:`completeness_table`, :func:`gradcam_stage_table`).
"""
from __future__ import annotations

import textwrap
from typing import Any, List, Mapping, Optional, Sequence, Union

import numpy as np

from unirepclip.viz.style import subplots

__all__ = ["metrics_table", "completeness_table", "gradcam_stage_table", "plot_attribution_grid",
           "plot_randomization"]


def metrics_table(metrics: Mapping[str, Mapping[str, float]],
                  cascades: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """A Markdown table: per method the two mask metrics (and their ratio to chance), the chance
    level and, when given, the rank correlation after full randomization and the flag."""
    head = "| method | mass in mask | pointing game | chance |"
    rule = "|---|---:|---:|---:|"
    if cascades:
        head += " rank corr., all random | insensitive? |"
        rule += "---:|:---:|"
    lines = [head, rule]
    for method, m in metrics.items():
        c = m["chance"]
        row = (f"| {method} | {m['mass_in_mask']:.3f} ({m['mass_in_mask'] / c:.1f}x) | "
               f"{m['pointing_game']:.3f} ({m['pointing_game'] / c:.1f}x) | {c:.3f} |")
        if cascades:
            r = cascades.get(method)
            row += (f" {r['final']:.2f} | {'**yes**' if r['insensitive'] else 'no'} |"
                    if r else " - | - |")
        lines.append(row)
    return "\n".join(lines)


def completeness_table(summary: Mapping[str, Any]) -> str:
    """A Markdown table of :func:`~unirepclip.analysis.attribution.completeness_summary`: per IG
    baseline the mean gap f(x) - f(x'), the median and the largest relative completeness error;
    the baseline in use is marked."""
    lines = [f"| IG baseline ({summary['n_steps']} steps) | mean gap f(x) - f(x') | "
             f"median completeness error | max |", "|---|---:|---:|---:|"]
    for k, v in summary["baselines"].items():
        used = " (used)" if k == summary["used"] else ""
        lines.append(f"| {k}{used} | {v['mean_gap']:.3f} | {v['median_error']:.2%} | "
                     f"{v['max_error']:.2%} |")
    return "\n".join(lines)


def gradcam_stage_table(scores: Mapping[int, Mapping[str, Any]], used: int,
                        unit: str = "stage") -> str:
    """A Markdown table of :func:`~unirepclip.analysis.attribution.gradcam_stage_scores`: per
    stage (``unit``: a ViT's are blocks) its map size, the two mask metrics and the score
    (x chance); the stage used is marked."""
    lines = [f"| Grad-CAM {unit} | map size | mass in mask | pointing game | score (x chance) |",
             "|---|---|---:|---:|---:|"]
    for s, r in scores.items():
        h, w = r["map_size"]
        mark = " (used)" if s == used else ""
        lines.append(f"| {s}{mark} | {h} x {w} | {r['mass_in_mask']:.3f} | "
                     f"{r['pointing_game']:.3f} | {r['score']:.2f} |")
    return "\n".join(lines)


def _display_map(amap: np.ndarray) -> np.ndarray:
    """Positive part, scaled to [0, 1] by its 99.5th percentile (one hot pixel must not wash out
    the rest)."""
    pos = np.clip(np.asarray(amap, dtype=np.float64), 0, None)
    top = np.percentile(pos, 99.5)
    top = top if top > 0 else (pos.max() if pos.max() > 0 else 1.0)
    return np.clip(pos / top, 0, 1)


def plot_attribution_grid(pictures: np.ndarray, maps: Mapping[str, np.ndarray],
                          captions: Sequence[str], *, masks: Optional[np.ndarray] = None,
                          width: Union[str, float] = "two", cmap: str = "inferno",
                          alpha: float = 0.6, suptitle: Optional[str] = None):
    """Image | caption | one overlay per method, one row per image.

    ``pictures`` uint8 (N, H, W, 3); ``maps`` ``{method: (N, H, W)}``; ``captions`` one per row;
    ``masks`` (N, H, W) bool draws the object's outline on every panel. Each overlay shows the
    positive attribution scaled to its own 99.5th percentile, over the greyed picture. Returns
    the figure.
    """
    pictures = np.asarray(pictures)
    n = len(pictures)
    if len(captions) != n or any(len(m) != n for m in maps.values()):
        raise ValueError(f"plot_attribution_grid: {n} pictures, {len(captions)} captions, maps of "
                         f"lengths {[len(m) for m in maps.values()]}")
    methods = list(maps)
    cols = 1 + len(methods)
    fig, axes = subplots(n, cols, width=width, aspect=1.0 * n / cols + 0.1,
                                 squeeze=False)
    im = None
    for i in range(n):
        grey = pictures[i].mean(axis=-1)
        # "none": vector formats embed the pixels as they are instead of resampling them
        axes[i, 0].imshow(pictures[i], interpolation="none")
        axes[i, 0].set_ylabel("\n".join(_wrap(captions[i], 22)), fontsize=6)
        for j, method in enumerate(methods, start=1):
            ax = axes[i, j]
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="none")
            im = ax.imshow(_display_map(maps[method][i]), cmap=cmap, vmin=0, vmax=1, alpha=alpha,
                           interpolation="none")
            if masks is not None:
                ax.contour(np.asarray(masks[i], dtype=float), levels=[0.5], colors="#56B4E9",
                           linewidths=0.6)
            if i == 0:
                ax.set_title(method.replace("_", " "), fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    cb = fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
    cb.set_label("positive attribution / 99.5th pct")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _wrap(text: str, width: int) -> List[str]:
    return textwrap.wrap(text, width) or [""]


def plot_randomization(ax, cascades: Mapping[str, Mapping[str, Any]], *,
                       title: Optional[str] = None):
    """Adebayo et al.'s cascade curves: mean Spearman rank correlation with the original map
    after each cumulative randomization step, one line per method, the flag threshold dotted."""
    threshold = None
    for method, c in cascades.items():
        steps = ["original"] + list(c["steps"])
        ax.plot(range(len(steps)), [1.0] + list(c["rank_corr"]), marker="o",
                label=method.replace("_", " "))
        threshold = c.get("threshold", threshold)
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels(steps, rotation=30, ha="right")
    if threshold is not None:
        ax.axhline(threshold, color="0.5", ls=":", lw=0.8)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xlabel("randomized so far (top down, cumulative)")
    ax.set_ylabel("Spearman rank corr. with original map")
    ax.set_ylim(-0.5, 1.05)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
