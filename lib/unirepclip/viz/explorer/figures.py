"""The explorer's static figures: the ones notebook 06 saves for its report, and the ones the
explain, embedding map and receptive-field panels draw (:func:`panel_image`).

Every figure here is made without pyplot (:func:`new_figure`: a ``Figure`` on its own Agg
canvas). That is what keeps the panels' figures whole in JupyterLab: pyplot keeps a global list of
figures, and in a kernel the inline backend draws and closes every figure on that list after each
execution, and also after each widget message (``comm`` triggers ``post_execute``). With
ipykernel 7, JupyterLab's widget messages are handled on a subshell thread, concurrently with a
button's callback on the main thread: a progress bar's messages arriving while the receptive-field
panel drew its map made that thread draw and close the same figure mid-``savefig``, and the map
came out blank or cut off. A figure pyplot never saw is drawn by its own thread only. In a
notebook, show one by ending the cell with it (IPython displays a ``Figure``).

The panels show a figure at :data:`SCREEN_DPI` CSS pixels per inch (the workbook's fonts are
sized for paper, 7-8 pt; at the CSS inch of 96 pixels they read small) and render it at
:data:`DENSITY` device pixels per CSS pixel, with the image widget sized to the CSS size, so the
browser neither stretches nor shrinks it (:func:`panel_image`, ``common.show_figure``).
"""
from __future__ import annotations

import dataclasses
import io
import struct
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unirepclip.analysis.explore import MAP_TITLES, covers_image
from unirepclip.viz import style

__all__ = ["new_figure", "ShownFigure", "figure_png", "panel_image", "PanelImage", "SCREEN_DPI",
           "DENSITY", "zeroshot_figure", "hits_figure", "explain_figure", "map_figure",
           "erf_figure"]

#: CSS pixels per figure inch in the panels.
SCREEN_DPI = 120
#: Device pixels per CSS pixel of a panel's image (sharp on high-density screens and when zoomed).
DENSITY = 2


class ShownFigure(Figure):
    """A figure IPython shows as a PNG by itself (``_repr_png_``, at the figure's dpi): the
    inline backend's display hook for figures is installed only when pyplot is imported, which
    the explorer never does."""

    def _repr_png_(self) -> bytes:
        return figure_png(self, self.dpi)


def new_figure(nrows: int = 1, ncols: int = 1, *, width: Union[str, float] = "one",
               aspect: float = 0.75, **kwargs: Any):
    """``(fig, axes)`` like :func:`unirepclip.viz.style.subplots`, on a :class:`ShownFigure`
    pyplot does not know (see the module docstring), which a notebook shows by ending a cell with
    it or by ``display(fig)``; ``kwargs`` go to ``Figure.subplots``."""
    # constrained whatever the rcParams: the legends placed outside the axes need it
    fig = ShownFigure(figsize=style.figure_size(width, aspect), layout="constrained")
    FigureCanvasAgg(fig)  # its own canvas: savefig, draw and get_renderer need no pyplot
    return fig, fig.subplots(nrows, ncols, **kwargs)


def figure_png(fig, dpi: float = SCREEN_DPI * DENSITY) -> bytes:
    """A figure as PNG bytes at ``dpi`` pixels per inch."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class PanelImage:
    """A panel's PNG and the CSS size (pixels) it is shown at: its pixels over the density."""

    png: bytes
    width: float
    height: float
    density: float


def _png_size(png: bytes) -> Tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk, right after the signature
    return width, height


def panel_image(fig, *, dpi: float = SCREEN_DPI, density: float = DENSITY) -> PanelImage:
    """The figure rendered for a panel: ``dpi`` CSS pixels per inch at ``density`` device pixels
    per CSS pixel."""
    png = figure_png(fig, dpi * density)
    w, h = _png_size(png)
    return PanelImage(png, w / density, h / density, density)


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
    fig, axes = new_figure(2, n_show, width="two", aspect=0.45, squeeze=False,
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
    fig, axes = new_figure(1, n, width="two", aspect=min(0.5, 1.6 / n), squeeze=False)
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


def _attribution_panel(fig, ax, shown: np.ndarray, amap: np.ndarray,
                       mask: Optional[np.ndarray], title: str) -> None:
    """One map over the image, on a symmetric colour scale of its own (mask outlined)."""
    amap = np.asarray(amap, dtype=np.float64)
    lim = float(np.abs(amap).max()) or 1.0
    ax.imshow(shown, alpha=0.35)
    im = ax.imshow(amap, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.8)
    if mask is not None and np.shape(mask) == amap.shape:
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="k", linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8)


def explain_figure(answer: Mapping[str, Any], mask: Optional[np.ndarray] = None, *,
                   title: str = ""):
    """The image as the model saw it and the attribution map over it (mask outlined); with a
    contrastive answer (``"contrast_map"``), the map of the similarity difference beside it."""
    contrast = "contrast_map" in answer
    n = 3 if contrast else 2
    fig, axes = new_figure(1, n, width=2.2 * n, aspect=0.55 * 2 / n, squeeze=False)
    a0 = axes[0, 0]
    a0.imshow(answer["input"])
    a0.set_title("input", fontsize=7)
    a0.set_axis_off()
    method = answer["method"].replace("_", " ")
    _attribution_panel(fig, axes[0, 1], answer["input"], answer["map"], mask, method)
    default = f"“{_short(answer['caption'], 60)}”"
    if contrast:
        _attribution_panel(fig, axes[0, 2], answer["input"], answer["contrast_map"], mask,
                           "the difference (contrastive)")
        default += f" rather than “{_short(answer['contrast'], 60)}”"
    fig.suptitle(title or default, fontsize=7)
    return fig


def map_figure(emap: Mapping[str, Any], *, labels: Optional[np.ndarray] = None,
               classnames: Optional[Sequence[str]] = None, point: Optional[int] = None,
               neighbours: Sequence[int] = (), title: str = ""):
    """The 2-D embedding map coloured by class (the legend outside the axes, at the style's
    legend size); ``point`` and its ``neighbours`` marked."""
    import matplotlib

    xy = np.asarray(emap["coords"])
    fig, ax = new_figure(1, 1, width=4.6, aspect=0.7)
    if labels is not None:
        labels = np.asarray(labels)
        cmap = matplotlib.colormaps["tab10" if labels.max() < 10 else "tab20"]
        for c in np.unique(labels):
            sel = labels == c
            name = classnames[int(c)] if classnames is not None else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(int(c) % cmap.N), label=name)
        fig.legend(loc="outside right upper", markerscale=1.8, handletextpad=0.2,
                   ncol=1 if len(np.unique(labels)) <= 12 else 2)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, color=style.PALETTE[0])
    if len(neighbours):
        nb = xy[list(neighbours)]
        ax.scatter(nb[:, 0], nb[:, 1], s=34, facecolors="none", edgecolors="k", linewidths=0.8)
    if point is not None:
        ax.scatter([xy[point, 0]], [xy[point, 1]], s=70, marker="*", color="k")
    ax.set_xticks([])
    ax.set_yticks([])
    method = MAP_TITLES.get(emap["method"], emap["method"])
    ax.set_title(title or f"{method} of the image embeddings", fontsize=8)
    return fig


def _square_label(key: str, entry: Mapping[str, Any]) -> str:
    if covers_image(entry):
        return f"{key}: whole image"
    return f"{key}: side {entry['side']}, area {entry['area_ratio']:.3f}"


def erf_figure(rf: Mapping[str, Any], *, title: str = ""):
    """The normalized ERF map (RepLKNet's log10(map + 1) / max) with its t20 / t99 squares; a
    square that holds the whole image is the image's border and says so."""
    import matplotlib.patches as patches

    a = np.asarray(rf["normalized"])
    fig, ax = new_figure(1, 1, width="one", aspect=0.85)
    im = ax.imshow(a, cmap="viridis", vmin=0, vmax=1)
    h, w = a.shape
    for key, colour in (("t20", "w"), ("t99", "r")):
        entry = rf["area_ratios"][key]
        side = entry["side"]
        # the square's pixels, centred on (h // 2, w // 2), clipped to the image
        x0, y0 = max(w // 2 - side / 2, -0.5), max(h // 2 - side / 2, -0.5)
        x1, y1 = min(w // 2 + side / 2, w - 0.5), min(h // 2 + side / 2, h - 0.5)
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                       linewidth=1.0, label=_square_label(key, entry)))
    fig.legend(loc="outside lower center", ncol=2, handlelength=1.2)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or f"ERF of {rf.get('unit', 'stage')} {rf['stage']} at {rf['resolution']} px "
                          f"({rf['n_images']} images)", fontsize=7)
    return fig
