"""Figures and Markdown tables of effective receptive fields (:mod:`unirepclip.analysis.erf`).

:func:`plot_erf` draws one map on the ``log10(x + 1) / max`` scale RepLKNet plots,
:func:`plot_erf_grid` networks by stages, :func:`plot_square_shares` the share of the ERF inside a
growing centred square (where the area ratios are read); :func:`area_ratio_table` sets measured
area ratios beside RepLKNet's published ones, :func:`stage_table` / :func:`stage_tables` one
threshold across stages.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from unirepclip.analysis.erf import (PUBLISHED_AREA_RATIOS, THRESHOLDS, area_ratios, normalize_erf,
                                     square_shares, threshold_key)
from unirepclip.viz import style

__all__ = ["plot_erf", "plot_erf_grid", "plot_square_shares", "area_ratio_table", "stage_table",
           "stage_tables"]


# ----------------------------------------------------------------------------------------------
# A map
# ----------------------------------------------------------------------------------------------

def plot_erf(ax, erf: np.ndarray, title: Optional[str] = None, *, cmap: str = "RdYlGn",
             colorbar: bool = True):
    """Draw the normalized ERF (``log10(x + 1) / max``) on a matplotlib ``ax``.

    Axes are labelled in input pixels, with a colour bar; returns the image artist.
    """
    a = normalize_erf(erf)
    # "none": vector formats embed the map's own pixels instead of resampling it (faster, exact)
    im = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="none")
    ax.locator_params(nbins=4)
    ax.set_xlabel("x (input px)")
    ax.set_ylabel("y (input px)")
    if title:
        ax.set_title(title)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("log10(ERF + 1) / max")
    return im


# ----------------------------------------------------------------------------------------------
# Markdown tables
# ----------------------------------------------------------------------------------------------

def area_ratio_table(measured: Mapping[str, Mapping[str, Any]], *,
                     thresholds: Sequence[float] = THRESHOLDS, published: bool = True,
                     digits: int = 1) -> str:
    """A Markdown table of area ratios (in %) per row, with RepLKNet's published rows below.

    ``measured`` maps a row label to either an ERF map (analysed with :func:`area_ratios`), an
    :func:`area_ratios` result, or a ``{"t20": fraction, ...}`` dict. Measured rows also show the
    square's side in pixels.
    """
    keys = [threshold_key(float(t)) for t in thresholds]
    head = "| network | " + " | ".join(f"{k[1:]} %" for k in keys) + " |"
    lines = [head, "|---|" + "---:|" * len(keys)]

    def cell(v: Any) -> str:
        if isinstance(v, Mapping):
            return f"{100 * v['area_ratio']:.{digits}f} ({int(v['side'])} px)"
        return f"{100 * float(v):.{digits}f}"

    rows = list(measured.items())
    if published:
        rows += [(f"{name} (published, 1024 px)", r) for name, r in PUBLISHED_AREA_RATIOS.items()]
    for label, r in rows:
        if isinstance(r, np.ndarray):
            r = area_ratios(r, thresholds)
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"area_ratio_table: row {label!r} lacks {missing}")
        lines.append(f"| {label} | " + " | ".join(cell(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def _depth_order(name: str) -> tuple:
    """``"block2"`` before ``"block11"``: depth names in the tower's order, not the alphabet's."""
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or -1)


def stage_table(rows: Mapping[str, Mapping[str, np.ndarray]], threshold: float = 0.5, *,
                digits: int = 1) -> str:
    """A Markdown table of one threshold's area ratio (in %) and side, networks by stages.

    ``rows`` maps a row label to ``{"stage0": map, ...}``; a stage a row lacks shows as "-".
    """
    key = threshold_key(float(threshold))
    stages = sorted({s for r in rows.values() for s in r}, key=_depth_order)
    lines = [f"| network (t = {key[1:]} %) | " + " | ".join(stages) + " |",
             "|---|" + "---:|" * len(stages)]
    for label, erfs in rows.items():
        cells = []
        for s in stages:
            if s not in erfs:
                cells.append("-")
                continue
            v = area_ratios(erfs[s], (threshold,))[key]
            cells.append(f"{100 * v['area_ratio']:.{digits}f} ({v['side']} px)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_tables(rows: Mapping[int, Mapping[str, Mapping[str, np.ndarray]]],
                 thresholds: Sequence[float] = (0.2, 0.99), *, digits: int = 1) -> str:
    """:func:`stage_table` for every resolution and threshold, as one Markdown text: ``rows`` is
    ``{resolution: {label: {stage: map}}}`` (:func:`unirepclip.analysis.erf.tower_comparison`)."""
    return "\n\n".join(f"**{int(r)} px**\n\n" + stage_table(by_label, t, digits=digits)
                         for r, by_label in rows.items() for t in thresholds)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

def plot_erf_grid(rows: Mapping[str, Mapping[str, np.ndarray]], *, width: Union[str, float] = "two",
                  cmap: str = "viridis", suptitle: Optional[str] = None):
    """A grid of normalized ERF heat maps: one row per network, one column per stage.

    ``rows`` maps a row label (say ``"demo (trained), 64 px"``) to ``{"stage0": map, ...}``.
    Columns are titled with the stage, rows labelled on the left with the row label (", " starts
    a new line); one shared colour bar (the maps are all normalized to [0, 1]). Returns the figure.
    """
    if not rows:
        raise ValueError("plot_erf_grid: no rows")
    stages = sorted({s for r in rows.values() for s in r}, key=_depth_order)
    n_rows, n_cols = len(rows), len(stages)
    fig, axes = style.subplots(n_rows, n_cols, width=width,
                                 aspect=(0.88 * n_rows / n_cols) + 0.1, squeeze=False)
    im = None
    for i, (label, erfs) in enumerate(rows.items()):
        for j, stage in enumerate(stages):
            ax = axes[i, j]
            if stage not in erfs:
                ax.set_axis_off()
                continue
            im = plot_erf(ax, erfs[stage], title=stage if i == 0 else None, cmap=cmap,
                          colorbar=False)
            # axes are labelled once, under the bottom row and left of the first column; inner
            # panels keep their tick marks but no tick labels (the maps share one pixel grid)
            if i < n_rows - 1:
                ax.set_xlabel("")
                ax.tick_params(labelbottom=False)
            if j == 0:
                ax.set_ylabel(label.replace(", ", ",\n") + "\ny (input px)", fontsize=7)
            else:
                ax.set_ylabel("")
                ax.tick_params(labelleft=False)
    cb = fig.colorbar(im, ax=axes, fraction=0.025, pad=0.02)
    cb.set_label("log10(ERF + 1) / max")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_square_shares(ax, erfs: Mapping[str, np.ndarray], *,
                       thresholds: Sequence[float] = THRESHOLDS, title: Optional[str] = None):
    """Share of the normalized ERF inside a centred square against the square's area ratio.

    One curve per map (``{label: map}``); the thresholds are drawn as dotted lines, so the area
    ratios of :func:`area_ratios` are read where a curve crosses them.
    """
    for label, erf in erfs.items():
        _, shares, areas = square_shares(erf)
        ax.plot(areas / float(np.size(erf)), shares, label=label)
    for t in thresholds:
        ax.axhline(t, color="0.6", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("centred square area / input area")
    ax.set_ylabel("share of normalized ERF")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")  # curves rise late and to the right: the top left is free
    return ax
