"""The efficiency figure of the card's comparative claims: ImageNet zero-shot top-1 against the
image tower's cost for CLIP-UniRepLKNet-L and its peers.

:func:`efficiency_points` gathers the points: the peers' top-1 and image-tower GMACs from open_clip's
published tables (:mod:`unirepclip.data.published`: GFLOPs converted to GMACs there, once; each
peer at its own input size), CLIP-UniRepLKNet-L's top-1 from its card with its tower's GMACs
measured here (:mod:`unirepclip.analysis.cost`, on the meta device), and measured images per second
where a GPU profile gave them. :func:`plot_efficiency` draws top-1 against GMACs and, beside it,
against measured images per second (a panel that says "not measured" when none was given); the
model is highlighted, published and measured values have their own markers.
:func:`efficiency_records` is what a notebook records.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from unirepclip.analysis.errata import PUBLISHED_IMAGENET_ZEROSHOT_TOP1, REFERENCE_MODEL
from unirepclip.data import published
from unirepclip.viz.style import OKABE_ITO, subplots

__all__ = ["EfficiencyPoint", "GMACS_AXIS", "NOT_MEASURED", "efficiency_points", "point_label",
           "efficiency_records", "plot_efficiency"]

#: The cost axis: one unit, said on the axis.
GMACS_AXIS = "image tower GMACs per image (1 MAC = 2 FLOPs)"
#: What the throughput panel says when no images per second were measured.
NOT_MEASURED = "images per second: not measured (the GPU profile measures them)"
_SOURCES = {  # source of a point's cost -> (marker, legend label)
    "published": ("o", "GMACs and top-1 published (open_clip v3.3.0 tables)"),
    "measured": ("D", "GMACs measured here (meta device), top-1 from the card"),
}


@dataclasses.dataclass(frozen=True)
class EfficiencyPoint:
    """One model on the figure: ImageNet zero-shot ``top1`` (%), image tower ``gmacs`` per image
    at ``image_size`` px, where its cost comes from (``source``: "published" or "measured"),
    measured ``images_per_s`` (None when not measured) and whether it is the ``highlight``."""

    label: str
    top1: float
    gmacs: float
    image_size: int
    source: str
    images_per_s: Optional[float] = None
    highlight: bool = False


def _rate(images_per_s: Mapping[str, float], label: str) -> Optional[float]:
    v = images_per_s.get(label)
    if v is None:
        return None
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"efficiency_points: images_per_s[{label!r}]={v!r} must be a positive "
                         f"number")
    return float(v)


def efficiency_points(reference_gmacs: float, *, reference_size: int = 224,
                      reference_top1: Optional[float] = None,
                      images_per_s: Optional[Mapping[str, float]] = None,
                      peer_keys: Optional[Sequence[Tuple[str, str]]] = None
                      ) -> List[EfficiencyPoint]:
    """CLIP-UniRepLKNet-L (``reference_gmacs`` measured at ``reference_size`` px; top-1 the card's
    75.7 unless ``reference_top1``, in %, was measured), highlighted, then the peers' published
    rows (``peer_keys``: :data:`unirepclip.data.published.PEERS` by default). ``images_per_s``
    maps :data:`~unirepclip.analysis.errata.REFERENCE_MODEL` and peers' labels ("name tag") to
    measured speeds; a label that is no point's is refused."""
    if not (math.isfinite(reference_gmacs) and reference_gmacs > 0):
        raise ValueError(f"efficiency_points: reference_gmacs={reference_gmacs!r} must be > 0")
    rates = dict(images_per_s or {})
    peers = published.peers(peer_keys)
    unknown = set(rates) - {REFERENCE_MODEL} - {p.label for p in peers}
    if unknown:
        raise ValueError(f"efficiency_points: images_per_s names no point: {sorted(unknown)}")
    top1 = PUBLISHED_IMAGENET_ZEROSHOT_TOP1["model card"] if reference_top1 is None \
        else float(reference_top1)
    points = [EfficiencyPoint(REFERENCE_MODEL, top1, float(reference_gmacs), int(reference_size),
                              "measured", _rate(rates, REFERENCE_MODEL), highlight=True)]
    for p in peers:
        points.append(EfficiencyPoint(p.label, 100.0 * p.result.imagenet_top1,
                                      p.profile.image_gmacs, p.profile.image_size, "published",
                                      _rate(rates, p.label)))
    return points


def point_label(model_name: str, checkpoint: str = "") -> Optional[str]:
    """The label of the point a notebook's model is on the figure: :data:`REFERENCE_MODEL` for
    its configs, "name tag" for a peer loaded by its open_clip name and pretrained tag, None
    for any other model (its speed is then not drawn)."""
    if str(model_name).startswith(REFERENCE_MODEL):
        return REFERENCE_MODEL
    if (str(model_name), str(checkpoint)) in set(published.PEERS):
        return f"{model_name} {checkpoint}"
    return None


def efficiency_records(points: Sequence[EfficiencyPoint]) -> Dict[str, Any]:
    """What notebook 01 records under ``efficiency``: the unit, each point's values by label,
    and the throughput panel's state ("measured" or :data:`NOT_MEASURED`)."""
    measured = any(p.images_per_s is not None for p in points)
    return {"unit": GMACS_AXIS,
            "points": {p.label: {"top1": p.top1, "gmacs": p.gmacs, "image_size": p.image_size,
                                 "source": p.source, "images_per_s": p.images_per_s,
                                 "highlight": p.highlight} for p in points},
            "throughput": "measured" if measured else NOT_MEASURED}


def _short(label: str) -> str:
    """A point's name on the axes: the model and its tag's samples seen (``s34b``), enough to
    tell the two ViT-g-14 rows apart; the legend and the records keep the full label."""
    name, _, tag = label.partition(" ")
    seen = re.search(r"(?:^|_)(s\d+b)(?:_|$)", tag)
    return f"{name} {seen.group(1)}" if seen else name


def _scatter(ax, points: Sequence[EfficiencyPoint], x_of) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    xs = [x_of(p) for p in points if x_of(p) is not None]
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.3, max(xs) * 2.2)   # room for the names right of the points
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    for p in points:
        x = x_of(p)
        if x is None:
            continue
        marker = _SOURCES[p.source][0]
        colour = OKABE_ITO["vermillion"] if p.highlight else OKABE_ITO["blue"]
        ax.scatter([x], [p.top1], marker=marker, s=48 if p.highlight else 22, color=colour,
                   edgecolor="black" if p.highlight else "none", linewidth=0.6, zorder=3)
        ax.annotate(_short(p.label), (x, p.top1), xytext=(4, 3), textcoords="offset points", fontsize=5.5,
                    fontweight="bold" if p.highlight else "normal")


def _legend(fig, points: Sequence[EfficiencyPoint]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker=_SOURCES[s][0], color="grey",
                      label=_SOURCES[s][1]) for s in _SOURCES if any(p.source == s for p in points)]
    handles += [Line2D([], [], linestyle="none", marker=_SOURCES[p.source][0],
                       color=OKABE_ITO["vermillion"], markeredgecolor="black",
                       label=f"{p.label} (this model)") for p in points if p.highlight]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6)


def plot_efficiency(points: Sequence[EfficiencyPoint], *, title: str = ""):
    """Two panels: top-1 against image tower GMACs (log scale), and top-1 against measured images
    per second (log scale), or that panel saying :data:`NOT_MEASURED`. Returns the figure."""
    if not points:
        raise ValueError("plot_efficiency: no points")
    fig, (cost_ax, speed_ax) = subplots(1, 2, width="two", aspect=0.45, layout="constrained")
    _scatter(cost_ax, points, lambda p: p.gmacs)

    cost_ax.set_xlabel(GMACS_AXIS)
    cost_ax.set_ylabel("ImageNet-1k zero-shot top-1 (%)")
    cost_ax.set_title("top-1 against cost, each at its own input size")
    if any(p.images_per_s is not None for p in points):
        _scatter(speed_ax, points, lambda p: p.images_per_s)
        speed_ax.set_xlabel("images per second, measured here")
        speed_ax.set_ylabel("ImageNet-1k zero-shot top-1 (%)")
        speed_ax.set_title("top-1 against measured speed")
    else:
        speed_ax.set_axis_off()
        speed_ax.text(0.5, 0.5, NOT_MEASURED.replace(": ", ":\n").replace(" (", "\n("), ha="center", va="center", wrap=True,
                      transform=speed_ax.transAxes, fontsize=7)
    _legend(fig, points)
    if title:
        fig.suptitle(title)
    return fig
