"""Figures of notebook 07: shape bias and kernel surgery (:mod:`unirepclip.analysis.shape_study`).

:func:`plot_navon_examples` shows the stimuli, :func:`plot_design_controls` the two readability
controls of each Navon design, :func:`plot_per_class_shape_bias` the per-class shape bias in the
model-vs-human toolbox's style (classes down the side, the fraction of shape decisions along the
bottom and of texture decisions along the top, the means as vertical lines, people beside the
models), and :func:`plot_surgery` accuracy and shape bias against the kept kernel size, one line
per stage, no-op cuts as open markers, the uncut model and the reference towers as lines.
Intervals are drawn as error bars wherever a value carries one.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from unirepclip.eval.uncertainty import Interval
from unirepclip.viz import style

__all__ = ["plot_navon_examples", "plot_design_controls", "plot_per_class_shape_bias",
           "plot_surgery"]


def _err(ivs: Sequence[Interval]) -> np.ndarray:
    """Asymmetric error bars (2, N) of intervals (0 where undefined)."""
    est = np.array([iv.estimate for iv in ivs], float)
    lo = np.array([iv.low for iv in ivs], float)
    hi = np.array([iv.high for iv in ivs], float)
    return np.nan_to_num(np.stack([est - lo, hi - est]), nan=0.0).clip(min=0)


def plot_navon_examples(images: Sequence[np.ndarray], titles: Sequence[str], *,
                        suptitle: Optional[str] = None):
    """A row of stimuli (uint8 images), each titled; axes in pixels."""
    fig, axes = style.subplots(1, len(images), width="two", aspect=1.0 / max(len(images), 1),
                               squeeze=False)
    for ax, im, title in zip(axes[0], images, titles):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_xticks([0, im.shape[1] - 1])
        ax.set_yticks([0, im.shape[0] - 1])
        ax.set_xlabel("x (px)")
    axes[0][0].set_ylabel("y (px)")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_design_controls(rows: Sequence[Mapping[str, Any]], chance: float, *,
                         chosen: Optional[int] = None, title: str = ""):
    """Accuracy on the plain figures and on the elements alone for each Navon design (Wilson
    95% intervals), chance as a dotted line; the chosen design's label in bold."""
    drawn = [(i, r) for i, r in enumerate(rows) if r.get("error") is None]
    fig, ax = style.subplots(1, 1, width="two", aspect=0.4)
    x = np.arange(len(drawn))
    for off, kind, label in ((-0.12, "plain", "plain figure (global shape)"),
                             (0.12, "elements_alone", "one element alone")):
        ivs = [r[kind] for _, r in drawn]
        ax.errorbar(x + off, [iv.estimate for iv in ivs], yerr=_err(ivs), fmt="o", capsize=3,
                    label=label)
    ax.axhline(chance, ls=":", color="0.4", label=f"chance ({chance:.3f})")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['image_size']} px\n{r['global_scale']:g} / {r['element_px']} px"
                        for _, r in drawn], fontsize="small")
    for tick, (i, _) in zip(ax.get_xticklabels(), drawn):
        tick.set_fontweight("bold" if i == chosen else "normal")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("zero-shot accuracy")
    ax.set_xlabel("design: image side / global scale / element size")
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title(title)
    return fig


def plot_per_class_shape_bias(per_class: Mapping[str, Mapping[str, Optional[float]]],
                              means: Mapping[str, float], *, title: str = ""):
    """Per-class shape bias of each observer (``per_class[name][class]``, None or nan where a
    class had no decision) and its mean (``means[name]``, a vertical line): classes down the
    side, fraction of shape decisions along the bottom, of texture decisions along the top."""
    names = list(per_class)
    classes = list(next(iter(per_class.values())))
    fig, ax = style.subplots(1, 1, width="one", aspect=1.3)
    y = np.arange(len(classes))
    markers = "o^sDv<>"
    for k, name in enumerate(names):
        colour = style.PALETTE[k % len(style.PALETTE)]
        vals = [per_class[name].get(c) for c in classes]
        vals = np.array([np.nan if v is None else v for v in vals], float)
        ax.scatter(vals, y, marker=markers[k % len(markers)], color=colour, s=18, label=name,
                   zorder=3)
        if name in means and means[name] is not None and math.isfinite(means[name]):
            ax.axvline(means[name], color=colour, lw=1, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(classes, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("fraction of shape decisions")
    top = ax.secondary_xaxis("top", functions=(lambda v: 1 - v, lambda v: 1 - v))
    top.set_xlabel("fraction of texture decisions")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title(title)
    return fig


def _stage_line(ax, rows: Sequence[Mapping[str, Any]], field: str, colour: str, label: str,
                dilated_x: float) -> None:
    kern = [r for r in rows if not r["drop_dilated"]]
    ivs = [r[field] for r in kern]
    ax.errorbar([r["keep"] for r in kern], [iv.estimate for iv in ivs], yerr=_err(ivs),
                color=colour, marker="o", ms=4, capsize=2, label=label, lw=1)
    noop = [r for r in kern if r["noop"]]
    ax.scatter([r["keep"] for r in noop], [r[field].estimate for r in noop], s=40,
               facecolors="white", edgecolors=colour, zorder=4)
    for r in (r for r in rows if r["drop_dilated"]):
        iv = r[field]
        ax.errorbar([dilated_x], [iv.estimate], yerr=_err([iv]), color=colour, marker="s",
                    ms=5, capsize=2, mfc="white" if r["noop"] else colour)


def plot_surgery(rows: Sequence[Mapping[str, Any]], uncut: Mapping[str, Interval],
                 references: Mapping[str, Mapping[str, Interval]], *, title: str = "",
                 bias: str = "shape_bias", bias_label: str = "Navon shape bias (global share)"):
    """Two panels, zero-shot accuracy and Navon shape bias against the kept kernel size: one
    line per stage (error bars: Wilson 95%), open markers where the cut is a no-op by
    construction, a square at the right for the dilated branches dropped; the uncut model as a
    dashed line and each reference tower (``references[name] = {"accuracy", "shape_bias"}``)
    as a dotted one (where it has the field). ``bias`` names the rows' shape-bias field
    (``cue_conflict_shape_bias`` on the cue-conflict images)."""
    fig, axes = style.subplots(1, 2, width="two", aspect=0.42)
    full = max(r["full"] for r in rows)
    dilated_x = full + 2
    stages = sorted({r["stage"] for r in rows})
    for ax, field, label in zip(axes, ("accuracy", bias),
                                ("zero-shot shape accuracy", bias_label)):
        for k, s in enumerate(stages):
            _stage_line(ax, [r for r in rows if r["stage"] == s], field,
                        style.PALETTE[k % len(style.PALETTE)], f"stage {s} cut", dilated_x)
        ax.axhline(uncut[field].estimate, color="k", ls="--", lw=1, label="uncut")
        for j, (name, ref) in enumerate(references.items()):
            if ref.get(field) is None:
                continue
            ax.axhline(ref[field].estimate, ls=":", lw=1.2, label=name,
                       color=style.PALETTE[(len(stages) + j) % len(style.PALETTE)])
        ticks = list(range(1, full + 1, 2)) + [dilated_x]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks[:-1]] + ["no\ndil."], fontsize="small")
        ax.set_xlabel("kept kernel size (taps; open: no-op by construction)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize="x-small", loc="best")
    if title:
        fig.suptitle(title)
    return fig
