"""Figures for model evaluation, in the workbook's style (:mod:`unirepclip.viz.style`).

Each function returns a ``matplotlib.figure.Figure`` sized for a paper column, with labelled axes,
a title naming what is shown, and colours from the colour-blind-safe palette; save it with
``lm.results.save_figure(fig, name)``. Class names come from data and are used as plain text
(matplotlib's mathtext is switched off for them, so a ``$`` in a name prints as a dollar).
"""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Optional, Sequence, Union

import matplotlib as mpl
import numpy as np

from unirepclip.viz.style import OKABE_ITO, PALETTE, subplots

__all__ = ["image_grid", "per_class_accuracy", "confusion_matrix", "template_accuracies",
           "resolution_sweep", "retrieval_recall", "throughput"]

#: Title colours of an image grid: a right prediction, a wrong one, no truth to compare with.
RIGHT, WRONG, NEUTRAL = OKABE_ITO["bluish_green"], OKABE_ITO["vermillion"], OKABE_ITO["black"]


def _plain(s: str) -> str:
    """Data text for matplotlib: escape ``$`` so mathtext leaves it alone."""
    return str(s).replace("$", r"\$")


def _wrap(text: str, fig, key: str = "axes.titlesize") -> str:
    """``text`` wrapped to the figure's width (a title longer than its figure is clipped in the
    saved file), with ``$`` escaped."""
    points = mpl.font_manager.FontProperties(size=mpl.rcParams[key]).get_size_in_points()
    return _fit(text, fig.get_figwidth(), points)


def _fit(text: str, width_in: float, points: float) -> str:
    """Each line of ``text`` wrapped to ``width_in`` inches at ``points`` font size."""
    chars = max(8, int(width_in * 72 / (0.55 * points)))
    return "\n".join(textwrap.fill(line, chars) for line in _plain(text).split("\n"))


def _title(ax, text: str) -> None:
    """The figure's title, centred on the figure (an axes title is centred on the axes, which
    long tick labels push sideways, and would be clipped)."""
    ax.figure.suptitle(_wrap(text, ax.figure, "figure.titlesize"))


def image_grid(images: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None, *,
               correct: Optional[Sequence[Optional[bool]]] = None, ncols: int = 8,
               title: Optional[str] = None, width: Union[str, float] = "two"):
    """Images in a grid, each with a caption (e.g. ``"true: star\\npred: heart 97%"``).

    ``correct[i]`` colours caption i green (True), vermillion (False) or black (None), and the
    figure legend says so. ``images`` are (H, W, 3) uint8 arrays (or (H, W) greyscale).
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid: no images")
    for name, seq in (("titles", titles), ("correct", correct)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"image_grid: {n} images but {len(seq)} {name}")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig, axes = subplots(nrows, ncols, width=width, aspect=(nrows / ncols) * 1.3, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        img = np.asarray(images[k])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        if titles is not None:
            flag = None if correct is None else correct[k]
            colour = NEUTRAL if flag is None else (RIGHT if flag else WRONG)
            # 0.85: leave a gap between neighbouring captions
            ax.set_title(_fit(titles[k], 0.85 * fig.get_figwidth() / ncols, 6), fontsize=6,
                         color=colour)
    if title:
        fig.suptitle(_wrap(title, fig, "figure.titlesize"))
    return fig


def _check_panels(tasks: Mapping[str, Any], what: str) -> None:
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(f"{what}: expected a non-empty mapping of task name -> data")


def per_class_accuracy(tasks: Mapping[str, Any], *, title: str, max_classes: int = 30):
    """Per-class accuracy, one panel per task: ``tasks[name] = (classnames, accuracy)``.

    Horizontal bars sorted from worst to best, a dashed line at chance (1 / number of classes).
    With more than ``max_classes`` classes only the worst and best ``max_classes // 2`` are shown
    (the panel title says so); classes without samples (NaN) are left out.
    """
    _check_panels(tasks, "per_class_accuracy")
    rows = []
    for name, (classnames, accuracy) in tasks.items():
        acc = np.asarray(accuracy, dtype=float)
        if len(acc) != len(classnames):
            raise ValueError(f"per_class_accuracy: task {name!r} has {len(classnames)} classnames "
                             f"but {len(acc)} values")
        keep = np.flatnonzero(~np.isnan(acc))
        order = keep[np.argsort(acc[keep], kind="stable")]
        label = str(name)
        if len(order) > max_classes:
            half = max_classes // 2
            order = np.concatenate([order[:half], order[-half:]])
            label = f"{name}: worst {half} and best {half} of {len(keep)} classes"
        rows.append((label, list(classnames), acc, order))
    n = len(rows)
    tallest = max(len(r[3]) for r in rows)
    fig, axes = subplots(1, n, width="one" if n == 1 else "two", squeeze=False,
                         aspect=max(0.5, 0.07 * tallest + 0.3) / (1 if n == 1 else 2))
    for ax, (label, classnames, acc, shown) in zip(axes[0], rows):
        y = np.arange(len(shown))
        ax.barh(y, acc[shown], color=PALETTE[0])
        ax.set_yticks(y, [_plain(classnames[i]) for i in shown])
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy (recall of the class)")
        chance = 1 / len(classnames)
        # named in the panel title: a legend or a label inside would hide bars that reach 1
        ax.axvline(chance, color=PALETTE[1], ls="--", lw=1)
        ax.set_title(_fit(f"{label} (dashed: chance, {chance:.0%})", fig.get_figwidth() / n,
                          mpl.rcParams["font.size"]))
    _title(axes[0, 0], title)
    return fig


def confusion_matrix(tasks: Mapping[str, Any], *, title: str, normalize: bool = True):
    """Confusion matrices, one panel per task: ``tasks[name] = (cm, classnames)`` with rows the
    true class and columns the predicted one, each row normalized to fractions when
    ``normalize`` (one shared colour bar); cells are annotated when a task has at most 12
    classes."""
    _check_panels(tasks, "confusion_matrix")
    mats = []
    for name, (cm, classnames) in tasks.items():
        m = np.asarray(cm, dtype=float)
        c = len(classnames)
        if m.shape != (c, c):
            raise ValueError(f"confusion_matrix: task {name!r}: expected ({c}, {c}) for {c} "
                             f"classes, got {m.shape}")
        if normalize:
            rows = m.sum(1, keepdims=True)
            m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        mats.append((str(name), m, list(classnames)))
    n = len(mats)
    fig, axes = subplots(1, n, width="one" if n == 1 else "two", squeeze=False,
                         aspect=1.0 if n == 1 else 1.1 / n)
    vmax = 1.0 if normalize else max(m.max() for _, m, _ in mats) or 1.0
    for ax, (name, m, classnames) in zip(axes[0], mats):
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax)
        names = [_plain(c) for c in classnames]
        c = len(names)
        ax.set_xticks(range(c), names, rotation=60, ha="right")
        ax.set_yticks(range(c), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if n > 1:
            ax.set_title(_plain(name))
        if c <= 12:
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}",
                            ha="center", va="center", fontsize=5,
                            color="white" if m[i, j] < 0.6 * vmax else "black")
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    cb.set_label("fraction of the true class" if normalize else "images")
    _title(axes[0, 0], title)
    return fig


def template_accuracies(tasks: Mapping[str, Any], *, title: str, xlabel: str = "top-1 accuracy",
                        max_templates: int = 40):
    """Each prompt template alone vs the ensemble, one panel per task:
    ``tasks[name] = (template labels, accuracy of each, ensemble accuracy)``.

    One bar per template (sorted, best on top) and a line at the ensemble's accuracy; with more
    than ``max_templates`` templates, the worst and best halves of that many are shown.
    """
    _check_panels(tasks, "template_accuracies")
    panels = []
    for name, (labels, accuracy, ensemble) in tasks.items():
        acc = np.asarray(accuracy, dtype=float)
        if len(acc) != len(labels):
            raise ValueError(f"template_accuracies: task {name!r} has {len(labels)} labels but "
                             f"{len(acc)} values")
        order = np.argsort(acc, kind="stable")
        label = str(name)
        if len(order) > max_templates:
            half = max_templates // 2
            order = np.concatenate([order[:half], order[-half:]])
            label = f"{name}: worst {half} and best {half} of {len(acc)} templates"
        panels.append((label, list(labels), acc, order, float(ensemble)))
    n = len(panels)
    tallest = max(len(p[3]) for p in panels)
    fig, axes = subplots(1, n, width="two", squeeze=False,
                         aspect=max(0.3, 0.028 * tallest + 0.12))
    for ax, (label, labels, acc, order, ensemble) in zip(axes[0], panels):
        y = np.arange(len(order))
        ax.barh(y, acc[order], color=PALETTE[5], label="one template alone")
        ax.axvline(ensemble, color=PALETTE[1], lw=1.5, label="ensemble of all templates")
        ax.set_yticks(y, [_plain(labels[i]) for i in order], fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_title(_fit(f"{label} (ensemble {ensemble:.1%})", fig.get_figwidth() / n,
                          mpl.rcParams["font.size"]))
    # one legend below the panels: inside, it would hide the bars
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    _title(axes[0, 0], title)
    return fig


def resolution_sweep(sizes: Sequence[int],
                     series: Mapping[str, Union[Sequence[float], Mapping[str, float]]], *,
                     title: str, native: Optional[int] = None, ylabel: str = "top-1 accuracy"):
    """Accuracy against input resolution, one line per task; ``native`` marks the training size.

    ``series[task]`` is one value per size, in the order of ``sizes``, or a mapping from the size
    (as ``str``, the form :func:`unirepclip.eval.zeroshot.resolution_sweep` returns) to the value.
    """
    sizes = list(sizes)
    if not series:
        raise ValueError("resolution_sweep: no series")
    fig, ax = subplots(width="one")
    for k, (name, values) in enumerate(series.items()):
        if isinstance(values, Mapping):
            absent = [s for s in sizes if str(s) not in values]
            if absent:
                raise KeyError(f"resolution_sweep: {name!r} has no value for size(s) {absent}")
            values = [values[str(s)] for s in sizes]
        if len(values) != len(sizes):
            raise ValueError(f"resolution_sweep: {len(sizes)} sizes but {len(values)} values "
                             f"for {name!r}")
        ax.plot(sizes, values, marker="o", color=PALETTE[k % len(PALETTE)], label=_plain(name))
    if native is not None:
        ax.axvline(native, color=OKABE_ITO["black"], ls=":", lw=1, label=f"trained at {native} px")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("input resolution (px)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend()
    _title(ax, title)
    return fig


def retrieval_recall(result: Mapping[str, Mapping[str, float]], *, title: str,
                     ks: Sequence[int] = (1, 5, 10),
                     intervals: Optional[Mapping[str, Mapping[str, Sequence[float]]]] = None):
    """Grouped bars of recall@k for image -> text and text -> image retrieval; ``intervals``
    (``{direction: {"r<k>": [low, high]}}``, e.g. ``eval.retrieval.recall_intervals``) adds
    each recall's 95% interval as an error bar."""
    directions = [("image_to_text", "image → text"), ("text_to_image", "text → image")]
    fig, ax = subplots(width="one")
    x = np.arange(len(ks))
    w = 0.38
    for k, (key, label) in enumerate(directions):
        if key not in result:
            raise KeyError(f"retrieval_recall: result has no {key!r} (keys: {list(result)})")
        vals = [result[key][f"r{kk}"] for kk in ks]
        bars = ax.bar(x + (k - 0.5) * w, vals, w, color=PALETTE[k], label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        if intervals is not None and key in intervals:
            ci = np.asarray([intervals[key][f"r{kk}"] for kk in ks], dtype=float)
            ax.errorbar(x + (k - 0.5) * w, vals, yerr=[np.subtract(vals, ci[:, 0]),
                                                       ci[:, 1] - np.asarray(vals)],
                        fmt="none", ecolor="0.15", elinewidth=0.8, capsize=2)
    ax.set_xticks(x, [f"R@{k}" for k in ks])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("recall (fraction of queries)")
    ax.legend(loc="upper left")
    _title(ax, title)
    return fig


def throughput(images_per_s: Mapping[str, float], *, title: str):
    """Bars of images per second, one per model form, labelled with the speed-up over the first."""
    if not images_per_s:
        raise ValueError("throughput: nothing to plot")
    labels = list(images_per_s)
    vals = np.asarray([images_per_s[k] for k in labels], dtype=float)
    fig, ax = subplots(width="one", aspect=0.6)
    bars = ax.barh(np.arange(len(labels)), vals, color=[PALETTE[i % len(PALETTE)]
                                                         for i in range(len(labels))])
    ax.bar_label(bars, labels=[f"{v:.0f}/s ({v / vals[0]:.2f}x)" for v in vals], fontsize=6,
                 padding=2)
    ax.set_yticks(np.arange(len(labels)), [_plain(s) for s in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, vals.max() * 1.35)
    ax.set_xlabel("images per second")
    _title(ax, title)
    return fig
