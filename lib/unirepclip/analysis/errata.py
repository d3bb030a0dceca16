"""The errata of the published model card, measured against the code.

The model card of ``CLIP-UniRepLKNet_large-laion5B-s11B-b75K`` repeats sentences of the
ConvNeXt-XXLarge card; :data:`MODEL_CARD_CLAIMS` lists them with the figures measured on the
reference code (``shared/REFERENCE.md``), :func:`errata_table` sets them beside this package's
measurements (:mod:`unirepclip.analysis.cost`), and :func:`card_errata` does both on meta-device
builds, for notebook 01.

The card also ranks the model among its peers ("performance range of ViT-g to ViT-G", "largest
convolutional CLIP image tower", "excels in ... efficiency"). :func:`comparative_claims` judges each
such sentence on open_clip's published results and model profiles
(:mod:`unirepclip.data.published`, GFLOPs converted to GMACs there) and on CLIP-UniRepLKNet-L as
measured here, with a verdict that may be "not supported" or "not measured here";
:func:`matching_profiles` finds the published rows the card's figures round to (its "847M params
w/ 198 GMAC" is ConvNeXt-XXLarge's image tower at 256 px), and :func:`peer_table` and
:func:`task_table` show the peers' rows, a failed upstream evaluation as ``failed``.
"""
from __future__ import annotations

import dataclasses
import html
import math
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from unirepclip.analysis.cost import ModelStats, model_stats
from unirepclip.data import published

__all__ = [
    "CardClaim", "MODEL_CARD_CLAIMS", "REFERENCE_MODEL", "REFERENCE_RESOLUTIONS",
    "card_measurements", "ErrataTable", "errata_table", "CardErrata", "card_errata",
    "PUBLISHED_IMAGENET_ZEROSHOT_TOP1", "stated_value", "matching_profiles", "ClaimTable",
    "comparative_claims", "peer_table", "task_table",
]

#: The model the card describes, and the resolutions its figures are checked at (256: the card's
#: image tower figure is given "@ 256x256").
REFERENCE_MODEL = "CLIP-UniRepLKNet-L"
REFERENCE_RESOLUTIONS = (224, 256, 320, 384)


@dataclasses.dataclass(frozen=True)
class CardClaim:
    """One figure the published model card gives (or omits), and what the reference code gives.

    ``card`` is the card's wording (``None`` where it states nothing), ``card_value`` and
    ``reference`` are in ``unit``; ``note`` says where the card's figure came from.
    """

    key: str
    quantity: str
    unit: str
    card: Optional[str]
    card_value: Optional[float]
    reference: Optional[float]
    note: str = ""


_COPIED = "copied from the ConvNeXt-XXLarge card"

#: The three published ImageNet-1k zero-shot top-1 figures of the model (%), by source. The paper's
#: is Table 13 of the journal version (Zhang, Ding, Yue, arXiv 2410.08049v1), row
#: OpenCLIP-UniRepLKNet-L; the paper-zeroshot profile compares with the same figure.
PUBLISHED_IMAGENET_ZEROSHOT_TOP1: Dict[str, float] = {
    "model card": 75.7,
    "checkpoint file name": 75.72,
    "UniRepLKNet paper (arXiv 2410.08049, Table 13)": 76.6,
}
_ZS = PUBLISHED_IMAGENET_ZEROSHOT_TOP1

#: The card's claims for CLIP-UniRepLKNet-L, and the reference code's figures (``shared``
#: REFERENCE.md). GMACs are per image (per text for the text tower), inference form.
MODEL_CARD_CLAIMS: tuple = (
    CardClaim("image_tower_params", "image tower parameters (no head)", "M",
              "847M params", 847.0, 218.5, _COPIED + " (its image tower)"),
    CardClaim("image_tower_params_in1k_head", "image tower with a 1000-class head", "M",
              None, None, 220.1, "UniRepLKNet-L's ImageNet classifier form (paper: 218M)"),
    CardClaim("text_tower_params", "text tower parameters", "M", None, None, 354.0,
              "the ViT-H-14 text tower"),
    CardClaim("total_params", "whole CLIP parameters", "M", "1.2B params", 1200.0, 574.0,
              _COPIED + " (its whole model)"),
    CardClaim("image_gmacs_224", "image tower GMACs at 224 px", "GMACs", "198 GMAC", 198.0, 35.9,
              _COPIED + " (its image tower at 256 px)"),
    CardClaim("image_gmacs_320", "image tower GMACs at 320 px", "GMACs", None, None, 73.2,
              "the card's second training resolution"),
    CardClaim("image_gmacs_384", "image tower GMACs at 384 px", "GMACs", None, None, 105.4,
              "UniRepLKNet paper: 105.4G for L at 384 px"),
    CardClaim("total_gmacs_224", "whole CLIP GMACs at 224 px (one image + one text)", "GMACs",
              "222 GMAC", 222.0, None, _COPIED + " (its whole model)"),
    CardClaim("imagenet_zeroshot_top1", "ImageNet-1k zero-shot top-1", "%", "> 79%", 79.0,
              _ZS["model card"],
              _COPIED + "; published for this model: " + ", ".join(
                  f"{v:g}% ({k})" for k, v in _ZS.items())),
)


def card_measurements(training: ModelStats, inference: Optional[ModelStats] = None,
                      zeroshot_top1: Optional[float] = None) -> Dict[str, Optional[float]]:
    """Measured values for each :data:`MODEL_CARD_CLAIMS` key, in the claim's unit.

    Parameters come from the training form (what a checkpoint stores and the reference counts),
    GMACs from the inference form when given (what published figures count) else the training
    form. ``zeroshot_top1`` is a fraction in [0, 1] (reported in %) or None when not measured.
    """
    macs = inference if inference is not None else training
    p = training.params
    out: Dict[str, Optional[float]] = {
        "image_tower_params": p["image_tower"] / 1e6,
        "image_tower_params_in1k_head": training.params_with_in1k_head / 1e6,
        "text_tower_params": p["text_tower"] / 1e6,
        "total_params": p["total"] / 1e6,
    }
    for r in (224, 320, 384):
        out[f"image_gmacs_{r}"] = macs.image_gmacs.get(r)
    out["total_gmacs_224"] = (macs.image_gmacs[224] + macs.text_gmacs
                              if 224 in macs.image_gmacs else None)
    if zeroshot_top1 is not None and not 0 <= zeroshot_top1 <= 1:
        raise ValueError(f"zeroshot_top1={zeroshot_top1!r} must be a fraction in [0, 1]")
    out["imagenet_zeroshot_top1"] = None if zeroshot_top1 is None else 100.0 * zeroshot_top1
    return out


def _fmt(v: Optional[float], unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "%":
        return f"{v:.1f}%"
    if unit == "M":
        return f"{v / 1000:.2f}B" if v >= 1000 else f"{v:.1f}M"
    return f"{v:.1f}"


class _Rendered:
    """A table that shows as HTML in a notebook, as text in a console and as Markdown; a
    subclass gives its header (:meth:`_header`) and each row's cells (:meth:`_cells`)."""

    rows: List[Dict[str, Any]]

    def _header(self) -> List[str]:
        raise NotImplementedError

    def _cells(self, row: Mapping[str, Any]) -> List[str]:
        raise NotImplementedError

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
        def esc(s: str) -> str:
            return s.replace("|", "\\|")
        lines = ["| " + " | ".join(self._header()) + " |",
                 "|" + "---|" * len(self._header())]
        lines += ["| " + " | ".join(esc(c) for c in self._cells(r)) + " |" for r in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in self._header())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(r))
                       + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return str(self)  # the text table, also what a notebook shows without HTML

    def __str__(self) -> str:
        rows = [self._header()] + [self._cells(r) for r in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


@dataclasses.dataclass(repr=False)
class ErrataTable(_Rendered):
    """The card's claims beside measured values; shows as an HTML table in a notebook.

    ``rows`` are dicts with ``key``, ``quantity``, ``unit``, ``card``, ``reference``,
    ``measured``, ``extra`` (the optional extra column, e.g. the demo model), ``ratio`` (card /
    measured, None where either is missing), ``verdict`` and ``note``.
    """

    rows: List[Dict[str, Any]]
    measured_label: str = "measured here"
    extra_label: Optional[str] = None
    with_consistency: bool = False

    def _cells(self, row: Mapping[str, Any]) -> List[str]:
        cells = [row["quantity"], row["card"] or "—", _fmt(row["reference"], row["unit"]),
                 _fmt(row["measured"], row["unit"])]
        if self.extra_label is not None:
            cells.append(_fmt(row["extra"], row["unit"]))
        if self.with_consistency:
            cells.append(row.get("consistency") or "—")
        return cells + [row["verdict"], row["note"]]

    def _header(self) -> List[str]:
        head = ["quantity", "model card says", "reference code", self.measured_label]
        if self.extra_label is not None:
            head.append(self.extra_label)
        if self.with_consistency:
            head.append("reference inside the measured 95% interval?")
        return head + ["verdict", "where the card's figure comes from"]

    def to_results(self) -> Dict[str, Dict[str, Any]]:
        """``{key: {"card", "reference", "measured"[, "extra"]}}`` for ``results.record``."""
        out = {}
        for r in self.rows:
            entry = {"card": r["card"], "card_value": r["card_value"], "reference": r["reference"],
                     "measured": r["measured"], "unit": r["unit"]}
            if self.extra_label is not None:
                entry["extra"] = r["extra"]
            out[r["key"]] = entry
        return out


def _verdict(claim: CardClaim, measured: Optional[float], rel_tol: float) -> str:
    if claim.card_value is None:
        return "not stated on the card"
    if measured is None:
        return "not measured here"
    if claim.key == "imagenet_zeroshot_top1":  # the card claims a lower bound
        return "holds" if measured > claim.card_value else "does not hold"
    ratio = claim.card_value / measured if measured else math.inf
    if abs(ratio - 1) <= rel_tol:
        return "agrees"
    return f"card is {ratio:.1f}x the measured value"


def errata_table(measured: Mapping[str, Optional[float]],
                 extra: Optional[Mapping[str, Optional[float]]] = None, *,
                 measured_label: str = "measured here", extra_label: Optional[str] = None,
                 claims: Sequence[CardClaim] = MODEL_CARD_CLAIMS,
                 rel_tol: float = 0.05,
                 intervals: Optional[Mapping[str, Sequence[float]]] = None) -> ErrataTable:
    """Set each claim beside ``measured[claim.key]`` (see :func:`card_measurements`) and, when
    given, an ``extra`` column (e.g. the small demo model's own figures, for scale).

    A verdict says whether the card's number agrees with the measurement within ``rel_tol``;
    keys missing from ``measured`` show as not measured. ``intervals``: a re-measured figure's
    95% interval ``[low, high]`` by key, in the row's unit; the table then says, per row with
    both, whether the published reference figure lies inside it (widened by half a unit of the
    reference's last stated digit: :func:`unirepclip.eval.uncertainty.consistent_with_published`)
    in a column of its own, and rows without an interval say "—".
    """
    known = {c.key for c in claims}
    unknown = sorted(set(measured) - known) + sorted(set(extra or {}) - known)
    if unknown:
        raise KeyError(f"errata_table: unknown claim key(s) {unknown}; known: {sorted(known)}")
    rows = []
    for c in claims:
        m = measured.get(c.key)
        ratio = (c.card_value / m) if (c.card_value is not None and m) else None
        rows.append({"key": c.key, "quantity": c.quantity, "unit": c.unit, "card": c.card,
                     "card_value": c.card_value, "reference": c.reference, "measured": m,
                     "extra": None if extra is None else extra.get(c.key), "ratio": ratio,
                     "verdict": _verdict(c, m, rel_tol), "note": c.note,
                     "consistency": _consistency(c, m, (intervals or {}).get(c.key))})
    if extra is not None and extra_label is None:
        extra_label = "other model"
    return ErrataTable(rows, measured_label, extra_label, with_consistency=intervals is not None)


def _consistency(claim: CardClaim, measured: Optional[float],
                 interval: Optional[Sequence[float]]) -> Optional[str]:
    """Whether the reference figure lies inside the measured interval, as a plain sentence."""
    if interval is None or measured is None or claim.reference is None:
        return None
    from unirepclip.eval.uncertainty import Interval, consistent_with_published

    digits = str(claim.reference).split(".")[1] if "." in str(claim.reference) else ""
    scale = 100.0 if claim.unit == "%" else 1.0  # percentages are compared as fractions
    iv = Interval(measured / scale, interval[0] / scale, interval[1] / scale, 0.95, "given", 0)
    return consistent_with_published(iv, claim.reference / scale,
                                     rounding=0.5 * 10.0 ** -len(digits) / scale)["verdict"]


# ------------------------------------------------------------------------------------------------
# The card's comparative claims, against open_clip's published rows (unirepclip.data.published)
# ------------------------------------------------------------------------------------------------
#: The card's comparative sentences, as worded on the card (``shared/seeds``).
CARD_RANGE_SENTENCE = ("Push the size of largest convolutional CLIP image tower into the "
                       "performance range of ViT-g to ViT-G")
CARD_FIRSTS_SENTENCE = "Largest released ConvNeXt model pretrained (847M params w/ 198 GMAC ...)"
CARD_EFFICIENCY_SENTENCE = "UniRepLKNet excels in the both training and inference efficiency."
#: open_clip's names of the card's "ViT-g" and "ViT-G".
VIT_G_LOW, VIT_G_HIGH = "ViT-g-14", "ViT-bigG-14"
_PUBLISHED_LABEL = "published (open_clip v3.3.0 tables)"
_CLAIM = {c.key: c for c in MODEL_CARD_CLAIMS}


def stated_value(text: str) -> tuple:
    """``(value, half a unit of its last stated digit)`` of a figure as the card words it, in
    millions for ``M``/``B`` counts: ``"1.2B params"`` -> ``(1200.0, 50.0)``, ``"198 GMAC"`` ->
    ``(198.0, 0.5)``. The half unit is how far the true figure may lie from the rounded one."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*([MB]?)", text)
    if m is None:
        raise ValueError(f"no figure in the card's wording {text!r}")
    scale = 1000.0 if m.group(2) == "B" else 1.0
    half = 0.5 * 10.0 ** -len(m.group(1).partition(".")[2])
    return float(m.group(1)) * scale, half * scale


def matching_profiles(params_text: str, gmacs_text: str, part: str = "image"
                      ) -> List[published.ModelProfile]:
    """Rows of open_clip's model profile whose parameters and GMACs (``part``: ``"image"`` tower
    or ``"whole"`` model) round to the card's figures, e.g. ``"847M params"``, ``"198 GMAC"``."""
    if part not in ("image", "whole"):
        raise ValueError(f"part={part!r}: expected 'image' or 'whole'")
    (p, dp), (g, dg) = stated_value(params_text), stated_value(gmacs_text)
    out = []
    for prof in published.read_profiles().values():
        params = prof.image_params_m if part == "image" else prof.params_m
        gmacs = prof.image_gmacs if part == "image" else prof.gmacs
        if abs(params - p) <= dp and abs(gmacs - g) <= dg:
            out.append(prof)
    return out


@dataclasses.dataclass(repr=False)
class ClaimTable(_Rendered):
    """Rows of text cells (``columns`` of each row dict, under ``header``); rows with a ``key``
    record their ``values`` (:meth:`to_results`)."""

    rows: List[Dict[str, Any]]
    header: List[str]
    columns: List[str]

    def _header(self) -> List[str]:
        return list(self.header)

    def _cells(self, row: Mapping[str, Any]) -> List[str]:
        return [str(row[c]) for c in self.columns]

    def to_results(self) -> Dict[str, Dict[str, Any]]:
        """``{key: {"verdict", ...values}}`` for ``results.record``."""
        return {r["key"]: {"verdict": r["verdict"], **r["values"]} for r in self.rows if "key" in r}


def _pct(fraction: float) -> str:
    return published.format_task(fraction)


def _percent(row: published.PublishedResult, fraction: float) -> float:
    """A published fraction in %, to the file's own decimals (0.8009 -> 80.09, not 80.0899...)."""
    return round(100 * fraction, max(row.decimals - 2, 0))


def _claim_row(key: str, claim: str, card: str, published_: str, shown: str, verdict: str,
               **values: Any) -> Dict[str, Any]:
    """A row: its cells (``shown`` is the measured cell's text) and the ``values`` recorded."""
    return {"key": key, "claim": claim, "card": card, "published": published_,
            "measured": shown, "verdict": verdict, "values": values}


def _top1_row(peers: Sequence[published.Peer], top1: Optional[float]) -> Dict[str, Any]:
    """ "ViT-g to ViT-G": the card's top-1 (or the measured one) against the ViT-g-14 and
    ViT-bigG-14 rows; an upstream failure (0) is no evidence."""
    low = [p.result for p in peers if p.result.name == VIT_G_LOW and p.result.imagenet_top1]
    high = [p.result for p in peers if p.result.name == VIT_G_HIGH and p.result.imagenet_top1]
    if not low or not high:
        raise ValueError(f"the peers need a {VIT_G_LOW} and a {VIT_G_HIGH} row with an ImageNet "
                         f"figure; got {[p.label for p in peers]}")
    lo = min(_percent(r, r.imagenet_top1) for r in low)
    hi = max(_percent(r, r.imagenet_top1) for r in high)
    figure, whose = ((top1, "measured") if top1 is not None
                     else (_ZS["model card"], "the card's"))
    if figure < lo:
        verdict = f"not supported: {whose} {figure:g}% is below every {VIT_G_LOW} row"
    elif figure > hi:
        verdict = f"not supported: {whose} {figure:g}% is above the {VIT_G_HIGH} row"
    else:
        verdict = f"supported: {whose} {figure:g}% lies within the range"
    below = [f"{v:g}% ({k})" for k, v in _ZS.items() if v < lo]
    if top1 is None and below:
        verdict += "; so is every published figure of this model: " + ", ".join(below)
    rows = ", ".join(f"{r.label} {_pct(r.imagenet_top1)}%" for r in low + high)
    return _claim_row(
        "vit_g_to_vit_G_imagenet_top1", f"\"{CARD_RANGE_SENTENCE}\" (ImageNet zero-shot top-1)",
        f"{_ZS['model card']:g}%", rows,
        "not measured here" if top1 is None else f"{top1:.2f}%", verdict,
        card_value=_ZS["model card"], measured=top1, range_low=lo, range_high=hi,
        published={r.label: _percent(r, r.imagenet_top1) for r in low + high})


def _largest_tower_row(tower_m: float) -> Dict[str, Any]:
    convs = [p for p in published.read_profiles().values() if published.is_convnet(p.model)]
    top = max(p.image_params_m for p in convs)
    names = sorted(p.model for p in convs if p.image_params_m == top)
    verdict = ("supported" if tower_m >= top else
               f"not supported: the image tower of {' and '.join(names)} has {top:.2f}M "
               f"parameters, {top / tower_m:.1f}x this one's")
    return _claim_row(
        "largest_convolutional_tower", f"\"{CARD_FIRSTS_SENTENCE}\" (image tower size)",
        "largest convolutional CLIP image tower",
        f"largest convolutional image tower: {', '.join(names)} {top:.2f}M",
        f"{tower_m:.1f}M", verdict, measured=tower_m, published={n: top for n in names})


def _cost_row(key: str, part: str, measured_m: float, gmacs_at: Mapping[int, float]
              ) -> Dict[str, Any]:
    """The card's "<params> w/ <GMAC>" against the profile rows it rounds to and the measured
    model at the matched row's image size (224 px when that size was not measured)."""
    image = part == "image_tower"
    pc, gc = ((_CLAIM["image_tower_params"], _CLAIM["image_gmacs_224"]) if image
              else (_CLAIM["total_params"], _CLAIM["total_gmacs_224"]))
    matches = matching_profiles(pc.card, gc.card, "image" if image else "whole")
    size = matches[0].image_size if matches and matches[0].image_size in gmacs_at else 224
    gm = gmacs_at.get(size)
    label = "image tower" if image else "whole CLIP (one image + one text)"

    def prof(p: published.ModelProfile):
        return (p.image_params_m, p.image_gmacs) if image else (p.params_m, p.gmacs)
    shown = "; ".join(f"{p.model}: {prof(p)[0]:.2f}M, {prof(p)[1]:.2f} GMAC at {p.image_size} px"
                      for p in matches) or "no published row rounds to these figures"
    if gm is None:
        verdict = "not measured here"
    elif (abs(measured_m - pc.card_value) <= stated_value(pc.card)[1]
          and abs(gm - gc.card_value) <= stated_value(gc.card)[1]):
        verdict = "agrees"
    else:
        verdict = "not supported" + (
            f": the figures are {', '.join(p.model for p in matches)}'s {label}" if matches else "")
        verdict += (f"; measured {_times(pc.card_value, measured_m, 'parameters')} and "
                    f"{_times(gc.card_value, gm, 'GMACs')}")
    return _claim_row(
        key, f"{label}: \"{pc.card} w/ {gc.card}\"", f"{pc.card} w/ {gc.card}", shown,
        f"{measured_m:.1f}M, " + ("—" if gm is None else f"{gm:.1f} GMAC at {size} px"), verdict,
        card_params=pc.card_value, card_gmacs=gc.card_value, measured_params=measured_m,
        measured_gmacs=gm, measured_size=size,
        matches=[p.model for p in matches])


def _non_vit_79_row(top1: Optional[float]) -> Dict[str, Any]:
    claim = _CLAIM["imagenet_zeroshot_top1"]
    above = [r for r in published.read_results().values()
             if published.is_convnet(r.name) and 100 * r.imagenet_top1 > claim.card_value]
    figure, whose = ((top1, "measured") if top1 is not None
                     else (_ZS["model card"], "the card's own"))
    holds = figure > claim.card_value
    verdict = ("supported" if holds else f"not supported: {whose} {figure:g}% is not above "
               f"{claim.card_value:g}%") + (
        f"; the convolutional rows above it are {', '.join(sorted({r.name for r in above}))}'s"
        if above and not holds else "")
    return _claim_row(
        "non_vit_above_79", "\"A non-ViT image tower CLIP model ... achieving > 79% ImageNet "
        "top-1 zero-shot\"", claim.card,
        "; ".join(f"{r.label} {_pct(r.imagenet_top1)}%" for r in above) or "none",
        "not measured here" if top1 is None else f"{top1:.2f}%", verdict,
        card_value=claim.card_value, measured=top1,
        published={r.label: _percent(r, r.imagenet_top1) for r in above})


def _times(card: float, measured: float, what: str) -> str:
    """How the measured figure stands to the card's, in the direction it goes ("2.5x fewer
    parameters", "1.3x more GMACs")."""
    if measured == card:
        return f"as many {what}"
    if measured < card:
        return f"{card / measured:.1f}x fewer {what}"
    return f"{measured / card:.1f}x more {what}"


def _rank_verdict(measured: float, peer_values: Sequence[tuple], what: str) -> str:
    """Fewer than the peers with more, more than those with fewer; a peer with exactly as many
    counts as neither and is named apart."""
    smaller = [f"{label} ({v:.2f})" for label, v in peer_values if v < measured]
    same = [label for label, v in peer_values if v == measured]
    n, bigger = len(peer_values), sum(v > measured for _, v in peer_values)
    head = (f"fewer {what} than all {n} peers" if bigger == n else
            f"fewer {what} than {bigger} of {n} peers")
    return (head + (f"; more than {', '.join(smaller)}" if smaller else "")
            + (f"; as many as {', '.join(same)}" if same else ""))


def _params_row(tower_m: float, peers: Sequence[published.Peer]) -> Dict[str, Any]:
    values = [(p.label, p.profile.image_params_m) for p in peers]
    return _claim_row(
        "image_tower_params_vs_peers", "image tower parameters against the peers (not a card "
        "claim)", "—", ", ".join(f"{label} {v:.2f}M" for label, v in values), f"{tower_m:.1f}M",
        _rank_verdict(tower_m, values, "parameters"), measured=tower_m,
        published={label: v for label, v in values})


def _gmacs_row(gmacs_at: Mapping[int, float], peers: Sequence[published.Peer]) -> Dict[str, Any]:
    """Image GMACs against each peer at the peer's own published image size (a peer whose size
    was not measured here is left out, and the verdict says so)."""
    same = [(p, gmacs_at[p.profile.image_size]) for p in peers if p.profile.image_size in gmacs_at]
    more = [p.label for p, g in same if p.profile.image_gmacs > g]
    less = [f"{p.label} ({p.profile.image_gmacs:.2f} at {p.profile.image_size} px)"
            for p, g in same if p.profile.image_gmacs <= g]
    left = [p.label for p in peers if p.profile.image_size not in gmacs_at]
    verdict = (f"fewer GMACs than {len(more)} of {len(same)} peers at their image sizes"
               + (f"; not fewer than {', '.join(less)}" if less else "")
               + (f"; not measured at the size of {', '.join(left)}" if left else ""))
    sizes = sorted({p.profile.image_size for p, _ in same})
    return _claim_row(
        "image_gmacs_vs_peers", "image tower GMACs against the peers, each at its image size "
        "(not a card claim)", "—",
        ", ".join(f"{p.label} {p.profile.image_gmacs:.2f} at {p.profile.image_size} px"
                  for p in peers),
        ", ".join(f"{gmacs_at[s]:.1f} at {s} px" for s in sizes), verdict,
        measured={str(s): gmacs_at[s] for s in sizes},
        published={p.label: p.profile.image_gmacs for p in peers})


def _efficiency_row(images_per_s: Optional[Mapping[str, float]], model: str) -> Dict[str, Any]:
    rates = dict(images_per_s or {})
    mine = rates.pop(model, None)
    if mine is None:
        verdict = "not measured here: images per second belong to the GPU profile"
    elif not rates:
        verdict = "not compared: no peer was measured on the same machine"
    else:
        faster = [k for k, v in rates.items() if v > mine]
        verdict = (f"fastest of the {len(rates) + 1} measured" if not faster
                   else f"slower than {', '.join(faster)}")
    return _claim_row(
        "inference_efficiency", f"\"{CARD_EFFICIENCY_SENTENCE}\" (images per second)", "—",
        "— (open_clip's tables give no speed)",
        "not measured" if mine is None else f"{mine:.1f} images/s", verdict,
        measured=mine, peers_measured=rates or None)


def comparative_claims(reference_training: ModelStats, reference_inference: ModelStats, *,
                       zeroshot_top1: Optional[float] = None,
                       images_per_s: Optional[Mapping[str, float]] = None,
                       peer_keys: Optional[Sequence[tuple]] = None,
                       measured_label: str = f"{REFERENCE_MODEL}, measured here") -> ClaimTable:
    """The card's comparative claims, each with a verdict computed from open_clip's published
    rows (:mod:`unirepclip.data.published`; ``peer_keys`` defaults to its ``PEERS``) and the
    measured model (parameters from ``reference_training``, GMACs from ``reference_inference``).

    ``zeroshot_top1`` (a fraction) replaces the card's 75.7% where it was measured;
    ``images_per_s`` maps :data:`REFERENCE_MODEL` and peers' labels to measured speeds (the GPU
    profile's); without them the rows say "not measured here"."""
    if zeroshot_top1 is not None and not 0 <= zeroshot_top1 <= 1:
        raise ValueError(f"zeroshot_top1={zeroshot_top1!r} must be a fraction in [0, 1]")
    top1 = None if zeroshot_top1 is None else 100.0 * zeroshot_top1
    peers = published.peers(peer_keys)
    tower_m = reference_training.params["image_tower"] / 1e6
    image_at = dict(reference_inference.image_gmacs)
    whole_at = {r: g + reference_inference.text_gmacs for r, g in image_at.items()
                if not math.isnan(reference_inference.text_gmacs)}
    rows = [_top1_row(peers, top1), _largest_tower_row(tower_m),
            _cost_row("image_tower_cost", "image_tower", tower_m, image_at),
            _cost_row("whole_model_cost", "total", reference_training.params["total"] / 1e6,
                      whole_at),
            _non_vit_79_row(top1), _params_row(tower_m, peers), _gmacs_row(image_at, peers),
            _efficiency_row(images_per_s, REFERENCE_MODEL)]
    return ClaimTable(rows, ["the card's claim", "card says", _PUBLISHED_LABEL, measured_label,
                             "verdict"],
                      ["claim", "card", "published", "measured", "verdict"])


def peer_table(reference_training: ModelStats, reference_inference: ModelStats,
               peer_keys: Optional[Sequence[tuple]] = None, size: int = 224) -> ClaimTable:
    """The peers' published rows (parameters, GMACs converted from GFLOPs, ImageNet top-1, the
    38-task average as published and the average without failed tasks apart, the failed tasks)
    under a first row for :data:`REFERENCE_MODEL` as measured here at ``size`` px."""
    p, inf = reference_training.params, reference_inference
    g = inf.image_gmacs.get(size)
    rows = [{"model": f"{REFERENCE_MODEL} (measured here)", "size": str(size),
             "image_params": f"{p['image_tower'] / 1e6:.2f}",
             "image_gmacs": "—" if g is None else f"{g:.2f}",
             "text_params": f"{p['text_tower'] / 1e6:.2f}",
             "text_gmacs": "—" if math.isnan(inf.text_gmacs) else f"{inf.text_gmacs:.2f}",
             "top1": f"{_ZS['model card']:g} (model card)", "average": "— (no open_clip row)",
             "average_ok": "—", "failed": "—"}]
    for peer in published.peers(peer_keys):
        r, prof = peer.result, peer.profile
        rows.append({"model": r.label, "size": str(prof.image_size),
                     "image_params": f"{prof.image_params_m:.2f}",
                     "image_gmacs": f"{prof.image_gmacs:.2f}",
                     "text_params": f"{prof.text_params_m:.2f}",
                     "text_gmacs": f"{prof.text_gmacs:.2f}", "top1": _pct(r.imagenet_top1),
                     "average": _pct(r.average), "average_ok": _pct(r.average_without_failed),
                     "failed": ", ".join(r.failed_tasks) or "none"})
    return ClaimTable(rows, ["model", "image px", "image tower params (M)", "image GMACs",
                             "text tower params (M)", "text GMACs", "ImageNet top-1 (%)",
                             "38-task average, published (%)",
                             f"{published.AVERAGE_WITHOUT_FAILED_LABEL} (%)", "failed tasks"],
                      ["model", "size", "image_params", "image_gmacs", "text_params", "text_gmacs",
                       "top1", "average", "average_ok", "failed"])


def task_table(peer_keys: Optional[Sequence[tuple]] = None) -> ClaimTable:
    """The peers' 38 published task values (%), one row per task, a failed evaluation shown as
    ``failed``; then the published average (it counts a failed task as 0) and the average
    without failed tasks, labelled apart."""
    results = [p.result for p in published.peers(peer_keys)]
    names = [t for t, _ in results[0].tasks]
    rows = [{"task": t, **{r.label: _pct(r.task(t)) for r in results}} for t in names]
    rows.append({"task": "38-task average, published",
                 **{r.label: _pct(r.average) for r in results}})
    rows.append({"task": published.AVERAGE_WITHOUT_FAILED_LABEL,
                 **{r.label: _pct(r.average_without_failed) for r in results}})
    return ClaimTable(rows, ["task"] + [r.label for r in results],
                      ["task"] + [r.label for r in results])


@dataclasses.dataclass
class CardErrata:
    """:func:`card_errata`'s result: the table, and the stats it was made from (``model_*`` for
    the notebook's model, ``reference_*`` for CLIP-UniRepLKNet-L; the same objects when the
    model is the reference architecture); the card's comparative claims against open_clip's
    published rows (``comparisons``), the peers' rows (``peers``) and their 38 tasks
    (``tasks``)."""

    table: ErrataTable
    model_training: ModelStats
    model_inference: ModelStats
    reference_training: ModelStats
    reference_inference: ModelStats
    comparisons: Optional[ClaimTable] = None
    peers: Optional[ClaimTable] = None
    tasks: Optional[ClaimTable] = None

    @property
    def is_reference(self) -> bool:
        return self.model_training is self.reference_training

    def mac_sizes(self, resolutions: Iterable[int]) -> List[int]:
        """The sizes among ``resolutions`` the model's GMACs were measured at; a tower that runs
        at one size only (a ViT) was measured at its own size instead of the others."""
        got = self.model_inference.image_gmacs
        res = [int(r) for r in resolutions]
        sizes = [r for r in res if r in got]
        own = self.model_inference.fixed_image_size
        if own is not None and own in got and own not in sizes:
            sizes.append(own)
        missing = [r for r in res if r not in got and r not in self.model_inference.not_measured]
        if missing or not sizes:
            raise KeyError(f"no GMACs measured at {missing or res}; pass them to card_errata")
        return sizes

    def size_notes(self, resolutions: Iterable[int]) -> Dict[int, str]:
        """Size -> the one-line reason the model has no GMACs there (empty when it has all)."""
        return {int(r): self.model_inference.not_measured[int(r)] for r in resolutions
                if int(r) in self.model_inference.not_measured}

    def model_results(self, resolutions: Iterable[int]) -> Dict[str, Any]:
        """What a notebook records under ``model`` for its model: ``params`` (training form, by
        part, plus ``image_tower_with_in1k_head``), ``params_inference_form``, ``gmacs`` (image
        encoder, inference form) and ``gmacs_training_form`` at ``resolutions`` (keys are the
        sizes as strings; at the tower's own size where it runs at one size only, with
        ``gmacs_not_measured``: size -> why not), and ``text_gmacs`` (one text)."""
        res = list(resolutions)
        sizes = self.mac_sizes(res)
        params = dict(self.model_training.params)
        params["image_tower_with_in1k_head"] = self.model_training.params_with_in1k_head
        out = {"params": params, "params_inference_form": dict(self.model_inference.params),
               "gmacs": {str(r): self.model_inference.image_gmacs[r] for r in sizes},
               "gmacs_training_form": {str(r): self.model_training.image_gmacs[r] for r in sizes},
               "text_gmacs": self.model_inference.text_gmacs}
        notes = self.size_notes(res)
        if notes:
            out["gmacs_not_measured"] = {str(r): n for r, n in notes.items()}
        return out


def card_errata(model_name: str, resolutions: Iterable[int] = (), *,
                zeroshot_top1: Optional[float] = None) -> CardErrata:
    """The model card's errata measured on meta-device builds: CLIP-UniRepLKNet-L's figures
    beside the card's, plus a column for ``model_name`` when it is another architecture (the demo
    model, for scale); and the card's comparative claims against open_clip's published rows,
    always judged on CLIP-UniRepLKNet-L's measured figures. ``resolutions`` add GMACs for the
    model at its own sizes (in its stats). ``zeroshot_top1`` fills the zero-shot rows (a
    fraction) when it has been measured on CLIP-UniRepLKNet-L."""
    res = sorted({int(r) for r in resolutions} | set(REFERENCE_RESOLUTIONS))
    m_train = model_stats(model_name, res)
    m_inf = model_stats(model_name, res, deploy=True)
    # The reference needs only its parameters in the training form and its MACs in the
    # inference form (what published figures count): one full-size count fewer.
    r_train = model_stats(REFERENCE_MODEL, text=False)
    if m_train.params == r_train.params:  # CLIP-UniRepLKNet-L at any resolution
        r_train, r_inf = m_train, m_inf
        extra = None
    else:
        r_inf = model_stats(REFERENCE_MODEL, REFERENCE_RESOLUTIONS, deploy=True)
        extra = card_measurements(m_train, m_inf)
    top1 = zeroshot_top1 if extra is None else None
    label = f"{REFERENCE_MODEL}, measured here"
    table = errata_table(
        card_measurements(r_train, r_inf, top1), extra, measured_label=label,
        extra_label=None if extra is None else f"{model_name} (this notebook's model)")
    return CardErrata(table, m_train, m_inf, r_train, r_inf,
                      comparisons=comparative_claims(r_train, r_inf, zeroshot_top1=top1,
                                                     measured_label=label),
                      peers=peer_table(r_train, r_inf), tasks=task_table())
