"""What a CLIP-UniRepLKNet costs: parameters by part, multiply-accumulates, speed, and the errata
of the published model card measured against the code.

Parameters are counted by part of the open_clip ``CLIP``: the image tower without any head (what
UniRepLKNet's paper counts; Ding et al., CVPR 2024), the image projection (the trunk's head when
``timm_proj`` is ``""``, or ``visual.head`` for ``"linear"``), the text tower and the logit scale.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs of
matrix products and convolutions (2 per multiply-accumulate; normalizations and activations are
not counted, the usual convention of published GMAC figures). Counting needs only shapes, so a
full-size model is built on the ``meta`` device (:func:`meta_clip`): no memory, no initialization,
about a second for CLIP-UniRepLKNet-L. The structural re-parameterization (RepLKNet, Ding et al.
CVPR 2022) removes the parallel dilated branches and batch norms, so the inference form has fewer
parameters and MACs than the training form; published figures are those of the inference form.

The model card of ``CLIP-UniRepLKNet_large-laion5B-s11B-b75K`` repeats sentences of the
ConvNeXt-XXLarge card; :data:`MODEL_CARD_CLAIMS` lists them with the figures measured on the
reference code, and :func:`errata_table` sets them beside this package's measurements.
"""
from __future__ import annotations

import copy
import contextlib
import dataclasses
import html
import math
import statistics
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from unirepclip.models.inspection import is_inference_form

__all__ = [
    "PARTS", "parameter_counts", "classifier_head_parameters", "meta_clip", "count_flops",
    "image_macs", "text_macs", "ModelStats", "model_stats", "max_relative_difference",
    "embedding_agreement", "images_per_second", "encoder_forms",
    "compare_forms", "CardClaim", "MODEL_CARD_CLAIMS",
    "REFERENCE_MODEL", "REFERENCE_RESOLUTIONS", "card_measurements", "ErrataTable", "errata_table",
    "CardErrata", "card_errata", "checkpoint_results", "format_stats", "form_results",
]

#: The parts :func:`parameter_counts` reports (plus ``image`` = tower + projection, and ``total``).
PARTS = ("image_tower", "image_projection", "text_tower", "logit_scale")

#: The model the card describes, and the resolutions its figures are checked at.
REFERENCE_MODEL = "CLIP-UniRepLKNet-L"
REFERENCE_RESOLUTIONS = (224, 320, 384)


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------
def _projection_prefixes(model: nn.Module) -> List[str]:
    """Name prefixes of the image projection's parameters."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise TypeError(f"{type(model).__name__} has no .visual: expected an open_clip CLIP")
    prefixes = []
    if isinstance(getattr(visual, "head", None), nn.Module):
        prefixes.append("visual.head.")  # timm_proj "linear" / "mlp"
    trunk = getattr(visual, "trunk", None)
    if isinstance(getattr(trunk, "head", None), nn.Linear):
        prefixes.append("visual.trunk.head.")  # timm_proj "": the trunk's classifier projects
    if getattr(visual, "proj", None) is not None and isinstance(visual.proj, nn.Parameter):
        prefixes.append("visual.proj")  # open_clip's own ViT / ModifiedResNet
    return prefixes


def parameter_counts(model: nn.Module) -> Dict[str, int]:
    """Parameters of an open_clip ``CLIP`` by part (shared tensors counted once; works on meta).

    Returns a dict with ``image_tower`` (no head), ``image_projection``, ``text_tower``,
    ``logit_scale`` (the learned temperature, and ``logit_bias`` where there is one), ``image``
    (tower + projection) and ``total`` (= the sum of the four parts).
    """
    proj = _projection_prefixes(model)
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():  # named_parameters() already skips shared duplicates
        if name.startswith("visual."):
            part = "image_projection" if name.startswith(tuple(proj)) else "image_tower"
        elif name in ("logit_scale", "logit_bias"):
            part = "logit_scale"
        else:
            part = "text_tower"
        counts[part] += p.numel()
    counts["image"] = counts["image_tower"] + counts["image_projection"]
    counts["total"] = sum(counts[p] for p in PARTS)
    return counts


def classifier_head_parameters(num_features: int, num_classes: int = 1000) -> int:
    """Parameters of a linear classifier head with bias (UniRepLKNet's ImageNet head)."""
    if num_features <= 0 or num_classes <= 0:
        raise ValueError(f"num_features={num_features} and num_classes={num_classes} must be > 0")
    return num_features * num_classes + num_classes


# ------------------------------------------------------------------------------------------------
# MACs
# ------------------------------------------------------------------------------------------------
def meta_clip(model_name: Union[str, Dict[str, Any]], *, deploy: bool = False,
              image_size: Optional[int] = None) -> nn.Module:
    """A CLIP built on the ``meta`` device: every parameter and buffer has a shape and no data.

    Costs no memory and no initialization, so the full-size model's parameters and MACs can be
    counted anywhere. ``deploy=True`` builds the re-parameterized inference form.
    """
    from unirepclip.models.factory import build_model, get_model_config

    cfg = get_model_config(model_name)
    with torch.device("meta"):
        model = build_model(cfg, meta=True, deploy=deploy, force_image_size=image_size)
    return model.to("meta").eval()


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as counted by ``torch.utils.flop_counter.FlopCounterMode`` (no grad)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def image_macs(model: nn.Module, image_size: int) -> int:
    """MACs of ``model.encode_image`` for one square image of side ``image_size`` (tower and
    projection), on the model's own device (a meta model costs nothing; a real one runs one
    forward at batch 1)."""
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size={image_size!r}: expected an integer >= 32 (stride 32)")
    dev = _device_of(model)
    x = torch.zeros(1, 3, int(image_size), int(image_size), device=dev)
    return count_flops(lambda: model.encode_image(x)) // 2


def text_macs(model: nn.Module, context_length: Optional[int] = None) -> int:
    """MACs of ``model.encode_text`` for one text of ``context_length`` tokens (default: the
    model's full context, as the tokenizer pads every text to it).

    Count on a meta model (:func:`meta_clip`): there attention's score and value products go
    through ``scaled_dot_product_attention`` and are counted, while on a CPU PyTorch may pick a
    fused attention kernel that the flop counter does not know, and under-count.
    """
    n = int(context_length or getattr(model, "context_length", 0) or 0)
    if n <= 0:
        raise ValueError("context_length is unknown: pass it (the model has no .context_length)")
    tokens = torch.zeros(1, n, dtype=torch.long, device=_device_of(model))
    return count_flops(lambda: model.encode_text(tokens)) // 2


@dataclasses.dataclass
class ModelStats:
    """Parameters and GMACs of one model in one form.

    Attributes: ``model_name``, ``form`` (``"training"`` or ``"inference"``), ``params`` (see
    :func:`parameter_counts`), ``num_features`` (width of the image tower's pooled features),
    ``image_gmacs`` (resolution -> GMACs of the image encoder), ``text_gmacs`` (one text).
    """

    model_name: str
    form: str
    params: Dict[str, int]
    num_features: int
    image_gmacs: Dict[int, float]
    text_gmacs: float

    @property
    def params_with_in1k_head(self) -> int:
        """Image tower parameters with a 1000-class ImageNet head instead of the projection."""
        return self.params["image_tower"] + classifier_head_parameters(self.num_features, 1000)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready dict (parameter counts stay ints, not millions)."""
        return {"model_name": self.model_name, "form": self.form, "params": dict(self.params),
                "params_image_tower_with_in1k_head": self.params_with_in1k_head,
                "num_features": self.num_features,
                "image_gmacs": {str(k): v for k, v in self.image_gmacs.items()},
                "text_gmacs": self.text_gmacs}


def model_stats(model_name: Union[str, Dict[str, Any]], resolutions: Iterable[int] = (), *,
                deploy: bool = False, text: bool = True) -> ModelStats:
    """Parameters by part and image GMACs at each of ``resolutions`` (none: parameters only),
    counted on a meta-device build of the registered config ``model_name`` (training form, or
    inference form with ``deploy``); ``text`` also counts one text's GMACs (else NaN)."""
    res = [int(r) for r in resolutions]
    model = meta_clip(model_name, deploy=deploy)
    trunk = getattr(model.visual, "trunk", None)
    num_features = int(getattr(trunk, "num_features", 0) or 0)
    return ModelStats(
        model_name=str(model_name), form="inference" if deploy else "training",
        params=parameter_counts(model), num_features=num_features,
        image_gmacs={r: image_macs(model, r) / 1e9 for r in res},
        text_gmacs=text_macs(model) / 1e9 if text else math.nan)


# ------------------------------------------------------------------------------------------------
# Agreement and speed
# ------------------------------------------------------------------------------------------------
def _as_float64(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def max_relative_difference(reference: Any, other: Any) -> float:
    """``max |other - reference| / max |reference|``: the largest deviation relative to the
    reference's scale (the tolerance ``1e-5`` for the re-parameterized form uses this)."""
    a, b = _as_float64(reference, "reference"), _as_float64(other, "other")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {a.shape} vs other {b.shape}")
    scale = np.abs(a).max() if a.size else 0.0
    if scale == 0:
        raise ValueError("reference is all zeros: a relative difference is undefined")
    return float(np.abs(b - a).max() / scale)


def embedding_agreement(reference: Any, other: Any) -> Dict[str, float]:
    """How two sets of (N, D) embeddings agree: ``max_rel_diff`` (see
    :func:`max_relative_difference`) and ``min_cosine`` (worst per-row cosine similarity)."""
    a, b = _as_float64(reference, "reference"), _as_float64(other, "other")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("a row is all zeros: its cosine similarity is undefined")
    cos = (a * b).sum(1) / (na * nb)
    return {"max_rel_diff": max_relative_difference(a, b), "min_cosine": float(cos.min())}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, *,
                      repeats: int = 3, warmup: int = 1) -> float:
    """Throughput of ``fn(images)`` in images per second: the median of ``repeats`` timed calls
    after ``warmup`` untimed ones (the first calls pay for allocation and kernel selection).
    CUDA work is synchronized before each clock read."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    if not isinstance(images, torch.Tensor) or images.ndim < 1 or len(images) == 0:
        raise ValueError("images must be a non-empty batch tensor")
    device = images.device
    with torch.no_grad():
        for _ in range(warmup):
            fn(images)
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(images)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return len(images) / statistics.median(times)


def encoder_forms(model: nn.Module, channels_last: bool = True) -> Dict[str, nn.Module]:
    """The image encoder's forms, from a training-form CLIP: ``{"training": model,
    "inference": a re-parameterized copy[, "inference, channels-last": that copy in
    channels-last memory format]}`` (the copies share nothing with ``model``)."""
    if is_inference_form(model):
        raise ValueError("the model is already in the inference form; load it with deploy=False "
                         "to compare the two forms")
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if not hasattr(trunk, "reparameterize"):
        raise TypeError(f"{type(trunk).__name__} has no reparameterize(): not a UniRepLKNet tower")
    inference = copy.deepcopy(model).eval()
    inference.visual.trunk.reparameterize()
    forms = {"training": model.eval(), "inference": inference}
    if channels_last:
        forms["inference, channels-last"] = copy.deepcopy(inference).to(
            memory_format=torch.channels_last)
    return forms


def _encode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if any(p.is_contiguous(memory_format=torch.channels_last) and p.ndim == 4
           and not p.is_contiguous() for p in model.visual.parameters()):
        x = x.contiguous(memory_format=torch.channels_last)
    return model.encode_image(x, normalize=True)


def compare_forms(forms: Mapping[str, nn.Module], images: torch.Tensor, *,
                  autocast: Optional[Callable[[], Any]] = None, repeats: int = 3,
                  warmup: int = 1) -> Dict[str, Dict[str, float]]:
    """Embeddings and speed of each form against the first one (the training form).

    Agreement is measured in fp32 (``max_rel_diff``, ``min_cosine``, see
    :func:`embedding_agreement`); speed (``images_per_s``) under ``autocast()`` when given (the
    notebook's precision). With an ``autocast`` the agreement of each form run under it with the
    fp32 training form is reported too (``autocast_max_rel_diff``, ``autocast_min_cosine``).
    Channels-last inputs are made for models whose conv weights are channels-last.
    """
    if not forms:
        raise ValueError("forms is empty")
    ctx = autocast or contextlib.nullcontext
    labels = list(forms)
    with torch.no_grad():
        ref = _encode(forms[labels[0]], images).float()
        out: Dict[str, Dict[str, float]] = {}
        for label in labels:
            model = forms[label]
            emb = ref if label == labels[0] else _encode(model, images).float()
            agree = embedding_agreement(ref, emb)
            row = {"max_rel_diff": agree["max_rel_diff"], "min_cosine": agree["min_cosine"]}
            if autocast is not None:
                with ctx():
                    low = _encode(model, images).float()
                agree = embedding_agreement(ref, low)
                row.update(autocast_max_rel_diff=agree["max_rel_diff"],
                           autocast_min_cosine=agree["min_cosine"])

            def run(x, model=model):
                with ctx():
                    return _encode(model, x)
            row["images_per_s"] = images_per_second(run, images, repeats=repeats, warmup=warmup)
            out[label] = row
    return out


# ------------------------------------------------------------------------------------------------
# The model card's errata
# ------------------------------------------------------------------------------------------------
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
    CardClaim("imagenet_zeroshot_top1", "ImageNet-1k zero-shot top-1", "%", "> 79%", 79.0, 75.7,
              _COPIED + "; the checkpoint's file name says 75.72"),
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


def checkpoint_results(report: Any, model_name: Optional[str] = None) -> Dict[str, Any]:
    """What a notebook records under ``checkpoint``: sha256, layout, form, projection, file size,
    number of parameters and whether it matches ``model_name``, from
    :func:`unirepclip.inspect_checkpoint`'s report; for random weights (``report=None``) the
    layout is ``"random-init"`` and the sha256 null."""
    if report is None:
        return {"sha256": None, "layout": "random-init", "form": "training", "projection": None,
                "file_size": None, "n_params": None, "matches_model": None}
    out = {"sha256": report.sha256, "layout": report.layout, "form": report.form,
           "projection": report.projection, "file_size": int(report.file_size),
           "n_params": int(report.n_params), "matches_model": None}
    if model_name is not None:
        out["matches_model"] = model_name in report.matching_configs
    return out


def format_stats(training: ModelStats, inference: ModelStats, resolutions: Iterable[int]) -> str:
    """A plain-text table of parameters by part and image GMACs per resolution, both forms."""
    def m(n: int) -> str:
        return f"{n / 1e6:,.2f}M"
    lines = [f"{training.model_name}: parameters by part and MACs per image",
             f"{'':<34}{'training form':>16}{'inference form':>16}"]
    names = {"image_tower": "image tower (no head)", "image_projection": "image projection",
             "text_tower": "text tower", "logit_scale": "logit scale", "total": "whole CLIP"}
    for key, label in names.items():
        lines.append(f"{label:<34}{m(training.params[key]):>16}{m(inference.params[key]):>16}")
    lines.append(f"{'image tower + 1000-class head':<34}{m(training.params_with_in1k_head):>16}")
    for r in [int(r) for r in resolutions]:
        lines.append(f"{f'image encoder GMACs at {r} px':<34}{training.image_gmacs[r]:>16.3f}"
                     f"{inference.image_gmacs[r]:>16.3f}")
    lines.append(f"{'text encoder GMACs (one text)':<34}{training.text_gmacs:>16.3f}"
                 f"{inference.text_gmacs:>16.3f}")
    return "\n".join(lines)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_").replace("__", "_")


def form_results(comparison: Mapping[str, Mapping[str, float]]) -> Dict[str, Any]:
    """What a notebook records under ``model`` from :func:`compare_forms`: ``images_per_s`` per
    form, ``reparam_max_rel_diff`` (inference vs training form, fp32), and where present
    ``channels_last_max_rel_diff`` and, under autocast, ``fastpath_min_cosine`` /
    ``fastpath_max_rel_diff`` (the last form, run in low precision, vs the fp32 training form).
    Form labels become keys with ``_`` for punctuation."""
    labels = list(comparison)
    out: Dict[str, Any] = {"images_per_s": {_slug(k): float(v["images_per_s"])
                                            for k, v in comparison.items()}}
    if "inference" in comparison:
        out["reparam_max_rel_diff"] = float(comparison["inference"]["max_rel_diff"])
    if "inference, channels-last" in comparison:
        out["channels_last_max_rel_diff"] = float(
            comparison["inference, channels-last"]["max_rel_diff"])
    last = comparison[labels[-1]]
    if "autocast_min_cosine" in last:
        out["fastpath_min_cosine"] = float(last["autocast_min_cosine"])
        out["fastpath_max_rel_diff"] = float(last["autocast_max_rel_diff"])
    return out
