"""The explorer's static figures: the ones notebook 06 saves for its report, and the ones the
explain, embedding map and receptive-field panels draw (:func:`figure_png`)."""
from __future__ import annotations

import io
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from unirepclip.viz import style

__all__ = ["figure_png", "zeroshot_figure", "hits_figure", "explain_figure", "map_figure",
           "erf_figure"]


def figure_png(fig, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def zeroshot_figure(table: Mapping[str, Any], images: Sequence[np.ndarray], *, n_show: int = 6,
                    n_classes: int = 5, title: str = ""):
    """The first ``n_show`` images with bars of their ``n_classes`` most probable classes."""
    probs = np.asarray(table["probabilities"])
    n_show = min(n_show, len(images), len(probs))
    if n_show < 1:
        raise ValueError("zeroshot_figure: no image to show")
    k = min(n_classes, probs.shape[1])
    fig, axes = style.subplots(2, n_show, width="two", aspect=0.45, squeeze=False,
                               gridspec_kw={"height_ratios": [1.0, 0.9]})
    for j in range(n_show):
        axes[0, j].imshow(images[j])
        axes[0, j].set_axis_off()
        # whole: style.save wraps a caption to its column (cut at 22 characters, it lost words)
        axes[0, j].set_title(table["names"][j], fontsize=6)
        order = np.argsort(-probs[j])[:k]
        ax = axes[1, j]
        ax.barh(np.arange(k)[::-1], probs[j, order], color=style.PALETTE[0])
        ax.set_yticks(np.arange(k)[::-1], [_short(table["classnames"][c], 12) for c in order],
                      fontsize=6)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=5)
    if title:
        fig.suptitle(title)
    return fig


def hits_figure(hits: Sequence[Mapping[str, Any]], images: Sequence[np.ndarray], *, title: str,
                highlight: Optional[int] = None):
    """Ranked images with their scores (``highlight``: the index framed in green)."""
    n = len(hits)
    if n < 1:
        raise ValueError("hits_figure: no hit to show")
    fig, axes = style.subplots(1, n, width="two", aspect=min(0.5, 1.6 / n), squeeze=False)
    for ax, hit, img in zip(axes[0], hits, images):
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{hit['rank']}. #{hit['index']}\n{hit['score']:.3f}", fontsize=6)
        if highlight is not None and hit["index"] == highlight:
            for side in ax.spines.values():
                side.set_edgecolor(style.PALETTE[2])
                side.set_linewidth(2.5)
    fig.suptitle(title)
    return fig


def explain_figure(answer: Mapping[str, Any], mask: Optional[np.ndarray] = None, *,
                   title: str = ""):
    """The image as the model saw it and the attribution map over it (mask outlined)."""
    fig, axes = style.subplots(1, 2, width="one", aspect=0.55, squeeze=False)
    a0, a1 = axes[0]
    a0.imshow(answer["input"])
    a0.set_title("input", fontsize=7)
    amap = np.asarray(answer["map"], dtype=np.float64)
    lim = float(np.abs(amap).max()) or 1.0
    a1.imshow(answer["input"], alpha=0.35)
    im = a1.imshow(amap, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.8)
    if mask is not None and np.shape(mask) == amap.shape:
        a1.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="k", linewidths=0.8)
    a1.set_title(answer["method"].replace("_", " "), fontsize=7)
    for ax in (a0, a1):
        ax.set_axis_off()
    fig.colorbar(im, ax=a1, shrink=0.8)
    fig.suptitle(title or _short(f"“{answer['caption']}”", 60), fontsize=7)
    return fig


def map_figure(emap: Mapping[str, Any], *, labels: Optional[np.ndarray] = None,
               classnames: Optional[Sequence[str]] = None, point: Optional[int] = None,
               neighbours: Sequence[int] = (), title: str = ""):
    """The 2-D embedding map coloured by class; ``point`` and its ``neighbours`` marked."""
    import matplotlib.pyplot as plt

    xy = np.asarray(emap["coords"])
    fig, ax = style.subplots(1, 1, width="one", aspect=0.85)
    if labels is not None:
        labels = np.asarray(labels)
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for c in np.unique(labels):
            sel = labels == c
            name = classnames[int(c)] if classnames is not None else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(int(c) % cmap.N), label=name)
        ax.legend(fontsize=5, markerscale=1.5, loc="best", ncol=2)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, color=style.PALETTE[0])
    if len(neighbours):
        nb = xy[list(neighbours)]
        ax.scatter(nb[:, 0], nb[:, 1], s=30, facecolors="none", edgecolors="k", linewidths=0.8)
    if point is not None:
        ax.scatter([xy[point, 0]], [xy[point, 1]], s=60, marker="*", color="k")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{emap['method'].upper()} of the image embeddings", fontsize=7)
    return fig


def erf_figure(rf: Mapping[str, Any], *, title: str = ""):
    """The normalized ERF map (RepLKNet's log10(map + 1) / max) with its t20 / t99 squares."""
    import matplotlib.patches as patches

    a = np.asarray(rf["normalized"])
    fig, ax = style.subplots(1, 1, width="one", aspect=0.85)
    im = ax.imshow(a, cmap="viridis", vmin=0, vmax=1)
    h, w = a.shape
    for key, colour in (("t20", "w"), ("t99", "r")):
        side = rf["area_ratios"][key]["side"]
        ax.add_patch(patches.Rectangle((w // 2 - side / 2, h // 2 - side / 2), side, side,
                                       fill=False, edgecolor=colour, linewidth=0.8,
                                       label=f"{key}: {rf['area_ratios'][key]['area_ratio']:.3f}"))
    ax.legend(fontsize=5, loc="lower right")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or f"ERF of stage {rf['stage']} at {rf['resolution']} px "
                          f"({rf['n_images']} images)", fontsize=7)
    return fig
