"""The errata of the published model card, measured against the code.

The model card of ``CLIP-UniRepLKNet_large-laion5B-s11B-b75K`` repeats sentences of the
ConvNeXt-XXLarge card; :data:`MODEL_CARD_CLAIMS` lists them with the figures measured on the
reference code (``shared/REFERENCE.md``), :func:`errata_table` sets them beside this package's
measurements (:mod:`unirepclip.analysis.cost`), and :func:`card_errata` does both on meta-device
builds, for notebook 01.
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from unirepclip.analysis.cost import ModelStats, model_stats

__all__ = [
    "CardClaim", "MODEL_CARD_CLAIMS", "REFERENCE_MODEL", "REFERENCE_RESOLUTIONS",
    "card_measurements", "ErrataTable", "errata_table", "CardErrata", "card_errata",
    "PUBLISHED_IMAGENET_ZEROSHOT_TOP1",
]

#: The model the card describes, and the resolutions its figures are checked at.
REFERENCE_MODEL = "CLIP-UniRepLKNet-L"
REFERENCE_RESOLUTIONS = (224, 320, 384)


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


@dataclasses.dataclass(repr=False)
class ErrataTable:
    """The card's claims beside measured values; shows as an HTML table in a notebook.

    ``rows`` are dicts with ``key``, ``quantity``, ``unit``, ``card``, ``reference``,
    ``measured``, ``extra`` (the optional extra column, e.g. the demo model), ``ratio`` (card /
    measured, None where either is missing), ``verdict`` and ``note``.
    """

    rows: List[Dict[str, Any]]
    measured_label: str = "measured here"
    extra_label: Optional[str] = None

    def _cells(self, row: Mapping[str, Any]) -> List[str]:
        cells = [row["quantity"], row["card"] or "—", _fmt(row["reference"], row["unit"]),
                 _fmt(row["measured"], row["unit"])]
        if self.extra_label is not None:
            cells.append(_fmt(row["extra"], row["unit"]))
        return cells + [row["verdict"], row["note"]]

    def _header(self) -> List[str]:
        head = ["quantity", "model card says", "reference code", self.measured_label]
        if self.extra_label is not None:
            head.append(self.extra_label)
        return head + ["verdict", "where the card's figure comes from"]

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
                 rel_tol: float = 0.05) -> ErrataTable:
    """Set each claim beside ``measured[claim.key]`` (see :func:`card_measurements`) and, when
    given, an ``extra`` column (e.g. the small demo model's own figures, for scale).

    A verdict says whether the card's number agrees with the measurement within ``rel_tol``;
    keys missing from ``measured`` show as not measured.
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
                     "verdict": _verdict(c, m, rel_tol), "note": c.note})
    if extra is not None and extra_label is None:
        extra_label = "other model"
    return ErrataTable(rows, measured_label, extra_label)


@dataclasses.dataclass
class CardErrata:
    """:func:`card_errata`'s result: the table, and the stats it was made from (``model_*`` for
    the notebook's model, ``reference_*`` for CLIP-UniRepLKNet-L; the same objects when the
    model is the reference architecture)."""

    table: ErrataTable
    model_training: ModelStats
    model_inference: ModelStats
    reference_training: ModelStats
    reference_inference: ModelStats

    @property
    def is_reference(self) -> bool:
        return self.model_training is self.reference_training

    def model_results(self, resolutions: Iterable[int]) -> Dict[str, Any]:
        """What a notebook records under ``model`` for its model: ``params`` (training form, by
        part, plus ``image_tower_with_in1k_head``), ``params_inference_form``, ``gmacs`` (image
        encoder, inference form) and ``gmacs_training_form`` at ``resolutions`` (keys are the
        sizes as strings), and ``text_gmacs`` (one text)."""
        res = [int(r) for r in resolutions]
        missing = [r for r in res if r not in self.model_inference.image_gmacs]
        if missing:
            raise KeyError(f"no GMACs measured at {missing}; pass them to card_errata")
        params = dict(self.model_training.params)
        params["image_tower_with_in1k_head"] = self.model_training.params_with_in1k_head
        return {"params": params, "params_inference_form": dict(self.model_inference.params),
                "gmacs": {str(r): self.model_inference.image_gmacs[r] for r in res},
                "gmacs_training_form": {str(r): self.model_training.image_gmacs[r] for r in res},
                "text_gmacs": self.model_inference.text_gmacs}


def card_errata(model_name: str, resolutions: Iterable[int] = (), *,
                zeroshot_top1: Optional[float] = None) -> CardErrata:
    """The model card's errata measured on meta-device builds: CLIP-UniRepLKNet-L's figures
    beside the card's, plus a column for ``model_name`` when it is another architecture (the demo
    model, for scale). ``resolutions`` add GMACs for the model at its own sizes (in its stats).
    ``zeroshot_top1`` fills the zero-shot row (a fraction) when it has been measured."""
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
    table = errata_table(
        card_measurements(r_train, r_inf, zeroshot_top1 if extra is None else None), extra,
        measured_label=f"{REFERENCE_MODEL}, measured here",
        extra_label=None if extra is None else f"{model_name} (this notebook's model)")
    return CardErrata(table, m_train, m_inf, r_train, r_inf)
