"""The linear-probe results as Markdown tables and figures (:mod:`unirepclip.eval.linear_probe`).

Tables: :func:`comparison_table` (test top-1 by dataset and method), :func:`paired_tests_table`
(McNemar's exact test of the main probe against each baseline), :func:`gaps_text` (the main
probe's lead over each baseline beside its standard error), :func:`convergence_text` (the C each
rule kept, and any fit that did not converge). Figures, each drawn on a given
matplotlib axis: :func:`plot_comparison`, :func:`plot_sweep`, :func:`plot_kshot`;
:func:`feature_words` says in words which features were probed, for their titles.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from unirepclip.viz.style import OKABE_ITO, PALETTE

__all__ = ["TABLE_COLUMNS", "FEATURE_WORDS", "feature_words", "comparison_table",
           "paired_tests_table", "convergence_text", "GAP_LABELS", "gaps_text", "plot_sweep", "plot_kshot",
           "plot_comparison"]

#: Columns of :func:`comparison_table`: (result key, header).
TABLE_COLUMNS = (("acc1", "linear probe"), ("knn_acc1", "kNN"), ("zeroshot_acc1", "zero-shot"),
                 ("random_tower_acc1", "random tower (probe)"),
                 ("pixel_baseline_acc1", "raw pixels (probe)"), ("majority_acc1", "majority"))


#: Each feature kind a probe reads (:data:`unirepclip.eval.params.FEATURE_KINDS`), in words.
FEATURE_WORDS = {"pre_projection": "pooled tower features (before the projection)",
                 "embedding": "CLIP embeddings (after the projection)"}


def feature_words(kind: str) -> str:
    """The features of ``kind`` (``feature_kind``, e.g. ``"pre_projection"``) in words, for a
    figure's title."""
    if kind not in FEATURE_WORDS:
        raise ValueError(f"feature_kind={kind!r}: expected one of {sorted(FEATURE_WORDS)}")
    return FEATURE_WORDS[kind]


def comparison_table(by_dataset: Mapping[str, Mapping[str, Any]],
                     columns: Sequence[Tuple[str, str]] = TABLE_COLUMNS, digits: int = 1) -> str:
    """A Markdown table of test top-1 accuracy (%): one row per dataset (:func:`compare`
    results), one column per method; a method a dataset lacks shows as "-"."""
    lines = ["| dataset | " + " | ".join(h for _, h in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, r in by_dataset.items():
        cells = [f"{100 * r[k]:.{digits}f}" if k in r else "-" for k, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_tests_table(by_dataset: Mapping[str, Mapping[str, Any]],
                       baselines: Sequence[Tuple[str, str]] = (("random_tower_", "random tower"),
                                                               ("pixel_baseline_", "raw pixels"))
                       ) -> str:
    """A Markdown table of McNemar's exact test, the main space's linear probe against each
    baseline on the same test items: items only the main probe got right, items only the
    baseline got right, the two-sided p-value, and where the result has them the difference of
    top-1 (trained - baseline, points) with its 95% paired-bootstrap interval and the verdict
    ("not distinguishable" where p >= 0.05). Rows a result lacks are left out."""
    lines = ["| dataset | baseline | right only with the trained tower | right only with the "
             "baseline | p (McNemar, exact) | difference (points, 95% CI) | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, r in by_dataset.items():
        for prefix, label in baselines:
            t = r.get(prefix + "paired_test")
            if t is not None:
                diff = (f"{100 * (r['acc1'] - r[prefix + 'acc1']):+.1f} "
                        f"[{100 * t['difference_ci'][0]:+.1f}, {100 * t['difference_ci'][1]:+.1f}]"
                        if "difference_ci" in t and prefix + "acc1" in r else "-")
                verdict = t.get("verdict", "").split(" (p = ")[0] or "-"
                lines.append(f"| {name} | {label} | {t['main_only']} | {t['baseline_only']} | "
                             f"{t['p_value']:.2g} | {diff} | {verdict} |")
    return "\n".join(lines)


#: The spaces :func:`convergence_text` reports: (result key prefix, label).
SPACE_LABELS = (("", "trained"), ("random_tower_", "random tower"), ("pixel_baseline_", "raw pixels"))


def convergence_text(by_dataset: Mapping[str, Mapping[str, Any]],
                     spaces: Sequence[Tuple[str, str]] = SPACE_LABELS) -> str:
    """One line per dataset: the C the probe kept in each space with the C CLIP's rule (the best
    validation score) would have kept from the same sweep, then whether every fit converged or
    which did not (``<prefix>not_converged``: sweep C values, ``"final"``). Spaces a result
    lacks are left out."""
    lines = []
    for name, r in by_dataset.items():
        kept, bad = [], []
        for prefix, label in spaces:
            if prefix + "best_C" not in r:
                continue
            clip = r.get(prefix + "clip_best_C")
            kept.append(f"{label} {r[prefix + 'best_C']:.3g}"
                        + (f" (CLIP's rule {clip:.3g})" if clip is not None
                           and clip != r[prefix + "best_C"] else ""))
            failed = r.get(prefix + "not_converged") or []
            if failed:
                bad.append(f"{label} at " + ", ".join(
                    "the final fit" if c == "final" else f"C = {c:.3g}" for c in failed))
        state = ("every fit converged" if not bad else
                 "NOT converged: " + "; ".join(bad))
        lines.append(f"{name:<10} C kept: {', '.join(kept)}; {state}")
    return "\n".join(lines)


#: How :func:`gaps_text` names each baseline of :func:`~unirepclip.eval.linear_probe.probe_gaps`.
GAP_LABELS = {"random_tower": "points over the random tower", "pixel_baseline": "over raw pixels",
              "zeroshot": "over zero-shot"}


def gaps_text(gaps: Mapping[str, Mapping[str, Any]],
              labels: Mapping[str, str] = GAP_LABELS) -> str:
    """One line per dataset of :func:`~unirepclip.eval.linear_probe.probe_gaps`: the probe's
    accuracy, its chosen C, its standard error and its lead over each baseline, in points."""
    lines = []
    for name, g in gaps.items():
        leads = [f"{100 * v:+.1f} {labels.get(b, 'over ' + b)}" for b, v in g["gaps"].items()]
        lines.append(f"{name:<10} probe {g['acc1']:.1%} (C = {g['best_C']:.3g}, ± "
                     f"{100 * g['se']:.1f} points s.e. on {g['n_test']} test images): "
                     + ", ".join(leads))
    return "\n".join(lines)


def _space_label(result: Mapping[str, Any], prefix: str, label: str) -> str:
    d = result.get(prefix + "n_features")
    return f"{label} ({d}-d)" if d is not None else label


def plot_sweep(ax, result: Mapping[str, Any], spaces: Mapping[str, str], *,
               title: Optional[str] = None):
    """Validation accuracy against C for each space of a :func:`compare` result.

    ``spaces`` maps a result prefix (``""`` for the main space, ``"random_tower_"`` ...) to a
    legend label. Each curve shows the C values the sweep evaluated; the chosen C is a filled
    star (the sweep's argmax; ties go to the smaller C).
    """
    for i, (prefix, label) in enumerate(spaces.items()):
        if prefix + "sweep" not in result:
            raise KeyError(f"plot_sweep: the result has no {prefix + 'sweep'!r}")
        pts = np.asarray(result[prefix + "sweep"], dtype=float)
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(pts[:, 0], 100 * pts[:, 1], "o-", ms=3, color=colour,
                label=_space_label(result, prefix, label))
        best = float(result[prefix + "best_C"])
        acc = pts[np.argmin(np.abs(np.log(pts[:, 0]) - np.log(best))), 1]
        ax.plot([best], [100 * acc], "*", ms=10, color=colour, markeredgecolor="black",
                markeredgewidth=0.5, zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("inverse regularization C")
    ax.set_ylabel("validation top-1 (%)")
    ax.plot([], [], "*", ms=8, color="0.5", markeredgecolor="black", markeredgewidth=0.5,
            label="chosen C")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_kshot(ax, result: Mapping[str, Any], spaces: Mapping[str, str], *,
               title: Optional[str] = None, show_full: bool = True):
    """Test accuracy against labelled examples per class (mean ± sample std over seeds).

    ``spaces`` as in :func:`plot_sweep`. The zero-shot accuracy, when the result has one, is a
    dashed horizontal line (what the text tower gives with no labelled image at all); with
    ``show_full`` the main space's full-data probe is a dotted line.
    """
    shots_seen: List[int] = []
    for i, (prefix, label) in enumerate(spaces.items()):
        ks = result.get(prefix + "kshot")
        if not ks:
            continue
        k = np.array(sorted(int(s) for s in ks))
        mean = np.array([ks[str(s)]["mean"] for s in k])
        std = np.array([ks[str(s)]["std"] for s in k])
        ax.errorbar(k, 100 * mean, yerr=100 * std, fmt="o-", ms=3, capsize=2,
                    color=PALETTE[i % len(PALETTE)], label=label)
        shots_seen += k.tolist()
    if "zeroshot_acc1" in result:
        ax.axhline(100 * result["zeroshot_acc1"], color=OKABE_ITO["black"], ls="--", lw=1,
                   label=f"zero-shot ({100 * result['zeroshot_acc1']:.1f}%)")
    if show_full and "acc1" in result:
        n = f" {result['n_train']}" if "n_train" in result else ""
        ax.axhline(100 * result["acc1"], color=PALETTE[0], ls=":", lw=1,
                   label=f"probe, all{n} training images")
    if shots_seen:
        ax.set_xscale("log", base=2)
        ticks = sorted(set(shots_seen))
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)  # one scale for every dataset: the curves' distance to 100% is the point
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def plot_comparison(ax, by_dataset: Mapping[str, Mapping[str, Any]],
                    columns: Sequence[Tuple[str, str]] = TABLE_COLUMNS[:-1], *,
                    title: Optional[str] = None):
    """Grouped bars of test top-1 (%): datasets along x, one slot per method that some dataset
    has (methods none has are left out); a dataset without a method says "not measured" in its
    slot, which would otherwise read as 0%. A method with a recorded 95% interval (``<key>_ci``)
    gets it as an error bar. The majority-class rate of each dataset is a short black line (the
    floor)."""
    names = list(by_dataset)
    columns = [(k, label) for k, label in columns if any(k in by_dataset[n] for n in names)]
    width = 0.8 / max(len(columns), 1)
    for j, (key, label) in enumerate(columns):
        slots = [(i + (j - (len(columns) - 1) / 2) * width, by_dataset[n].get(key))
                 for i, n in enumerate(names)]
        ax.bar([x for x, v in slots if v is not None],
               [100 * v for x, v in slots if v is not None], width=width,
               color=PALETTE[j % len(PALETTE)], label=label)
        bars = [(x, v, by_dataset[n][key + "_ci"]) for (x, v), n in zip(slots, names)
                if v is not None and key + "_ci" in by_dataset[n]]
        if bars:
            ax.errorbar([x for x, _, _ in bars], [100 * v for _, v, _ in bars],
                        yerr=[[100 * (v - ci[0]) for _, v, ci in bars],
                              [100 * (ci[1] - v) for _, v, ci in bars]],
                        fmt="none", ecolor="0.15", elinewidth=0.8, capsize=2)
        for x, v in slots:
            if v is None:
                ax.text(x, 2, "not measured", rotation=90, ha="center", va="bottom",
                        fontsize=6, color="0.4")
    for i, n in enumerate(names):
        if "majority_acc1" in by_dataset[n]:
            m = 100 * by_dataset[n]["majority_acc1"]
            ax.plot([i - 0.45, i + 0.45], [m, m], color="black", lw=1,
                    label="majority class" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("dataset")
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return ax
