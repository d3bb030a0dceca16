"""What a CLIP-UniRepLKNet costs: parameters by part, multiply-accumulates, speed, and whether
its two forms (training and re-parameterized inference) compute the same embeddings.

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

Speed is timed with ``torch.utils.benchmark.Timer`` (which synchronizes an accelerator around each
measurement). :func:`form_comparison` is notebook 01's whole check of the two forms; the model
card's claims are set beside these counts in :mod:`unirepclip.analysis.errata`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from unirepclip.models.inspection import is_inference_form
from unirepclip.models.towers import tower_of
from unirepclip.utils import autocast as autocast_context
from unirepclip.utils import check_precision, eval_mode, max_relative_difference, module_device

__all__ = [
    "PARTS", "parameter_counts", "classifier_head_parameters", "meta_clip", "count_flops",
    "image_macs", "text_macs", "ModelStats", "model_stats", "embedding_agreement",
    "images_per_second", "encoder_images_per_second", "encoder_forms", "compare_forms", "form_results", "form_comparison",
    "checkpoint_results",
]

#: The parts :func:`parameter_counts` reports (plus ``image`` = tower + projection, and ``total``).
PARTS = ("image_tower", "image_projection", "text_tower", "logit_scale")


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------
def _projection_prefixes(model: nn.Module) -> List[str]:
    """Name prefixes of the image projection's parameters (the tower seam's
    :meth:`~unirepclip.models.towers.Tower.projection_prefixes`)."""
    if getattr(model, "visual", None) is None:
        raise TypeError(f"{type(model).__name__} has no .visual: expected an open_clip CLIP")
    return tower_of(model).projection_prefixes("visual.")


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
    counted anywhere. ``deploy=True`` builds the re-parameterized inference form; a tower that
    does not re-parameterize (anything but UniRepLKNet: a ViT, a ResNet) has one form, built as
    it is.
    """
    from unirepclip.models.factory import build_model, get_model_config

    cfg = get_model_config(model_name)
    tower = str(cfg.get("vision_cfg", {}).get("timm_model_name") or "")
    deploy = deploy and tower.startswith("unireplknet_")
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


def image_macs(model: nn.Module, image_size: int) -> int:
    """MACs of ``model.encode_image`` for one square image of side ``image_size`` (tower and
    projection), on the model's own device (a meta model costs nothing; a real one runs one
    forward at batch 1)."""
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size={image_size!r}: expected an integer >= 32 (stride 32)")
    dev = module_device(model, torch.device("cpu"))
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
    tokens = torch.zeros(1, n, dtype=torch.long, device=module_device(model, torch.device("cpu")))
    return count_flops(lambda: model.encode_text(tokens)) // 2


@dataclasses.dataclass
class ModelStats:
    """Parameters and GMACs of one model in one form.

    Attributes: ``model_name``, ``form`` (``"training"`` or ``"inference"``), ``params`` (see
    :func:`parameter_counts`), ``num_features`` (width of the image tower's pooled features),
    ``image_gmacs`` (resolution -> GMACs of the image encoder), ``text_gmacs`` (one text);
    ``fixed_image_size``: the side a tower that runs at one size only is built for (a ViT's
    positional embedding; None when any size runs), and ``not_measured``: resolution -> the
    one-line reason it has no GMACs.
    """

    model_name: str
    form: str
    params: Dict[str, int]
    num_features: int
    image_gmacs: Dict[int, float]
    text_gmacs: float
    fixed_image_size: Optional[int] = None
    not_measured: Dict[int, str] = dataclasses.field(default_factory=dict)

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
                "text_gmacs": self.text_gmacs, "fixed_image_size": self.fixed_image_size,
                "not_measured": {str(k): v for k, v in self.not_measured.items()}}


def model_stats(model_name: Union[str, Dict[str, Any]], resolutions: Iterable[int] = (), *,
                deploy: bool = False, text: bool = True) -> ModelStats:
    """Parameters by part and image GMACs at each of ``resolutions`` (none: parameters only),
    counted on a meta-device build of ``model_name`` (training form, or inference form with
    ``deploy``); ``text`` also counts one text's GMACs (else NaN).

    A tower that runs at one input size only (an open_clip ViT: its positional embedding is for
    one patch grid) is measured at its own size, added to the resolutions (a square size; the
    tower's is kept in ``fixed_image_size``), and every other resolution goes to
    ``not_measured`` with the reason, never to a number."""
    model = meta_clip(model_name, deploy=deploy)
    tower = tower_of(model)
    fixed = tower.fixed_image_size
    own = fixed[0] if fixed is not None and fixed[0] == fixed[1] else None
    res = list(dict.fromkeys(int(r) for r in resolutions))
    if own is not None and res and own not in res:
        res.append(own)
    notes = {r: tower.size_note(r) for r in res}
    notes = {r: None if n is None else f"{model_name}: {n}" for r, n in notes.items()}
    return ModelStats(
        model_name=str(model_name), form="inference" if deploy else "training",
        params=parameter_counts(model), num_features=tower.num_features,
        image_gmacs={r: image_macs(model, r) / 1e9 for r in res if notes[r] is None},
        text_gmacs=text_macs(model) / 1e9 if text else math.nan,
        fixed_image_size=own, not_measured={r: n for r, n in notes.items() if n is not None})


# ------------------------------------------------------------------------------------------------
# Agreement and speed
# ------------------------------------------------------------------------------------------------
def _rows(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def embedding_agreement(reference: Any, other: Any) -> Dict[str, float]:
    """How two sets of (N, D) embeddings agree: ``max_rel_diff``
    (:func:`unirepclip.utils.max_relative_difference`, which also rejects NaN and inf) and
    ``min_cosine`` (the worst per-row cosine similarity)."""
    rel = max_relative_difference(reference, other)
    a, b = _rows(reference), _rows(other)
    if a.ndim != 2:
        raise ValueError(f"embedding_agreement: expected two (N, D) arrays, got shape {a.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("embedding_agreement: a row is all zeros: its cosine similarity is "
                         "undefined")
    cos = (a * b).sum(1) / (na * nb)
    return {"max_rel_diff": rel, "min_cosine": float(cos.min())}


def images_per_second(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, *,
                      repeats: int = 3, warmup: int = 1) -> float:
    """Throughput of ``fn(images)`` in images per second, from the median of ``repeats`` single
    calls timed by ``torch.utils.benchmark.Timer``, after ``warmup`` untimed calls (the first
    calls pay for allocation and kernel selection). The Timer synchronizes CUDA around each
    measurement and runs with the caller's number of torch threads (its own default is one)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"images_per_second: repeats={repeats} must be >= 1 and "
                         f"warmup={warmup} >= 0")
    if not isinstance(images, torch.Tensor) or images.ndim < 1 or len(images) == 0:
        raise ValueError("images_per_second: images must be a non-empty batch tensor")
    timer = benchmark.Timer(stmt="fn(images)", globals={"fn": fn, "images": images},
                            num_threads=torch.get_num_threads())
    with torch.no_grad():
        for _ in range(warmup):
            fn(images)
        runs = [timer.timeit(number=1) for _ in range(repeats)]
    median = benchmark.Measurement.merge(runs)[0].median
    return len(images) / median


def encoder_images_per_second(model: nn.Module, images: torch.Tensor, *, precision: str = "fp32",
                              repeats: int = 3, warmup: int = 1) -> float:
    """Images per second of ``model.encode_image`` as loaded (its form, its device), under
    ``precision``'s autocast (bf16, or none for fp32): the efficiency figure's measured speed
    (:func:`images_per_second`)."""
    check_precision(precision)
    device = images.device

    def run(x):
        with autocast_context(device, precision):
            return model.encode_image(x)

    return images_per_second(run, images, repeats=repeats, warmup=warmup)


def encoder_forms(model: nn.Module, channels_last: bool = True) -> Dict[str, nn.Module]:
    """The image encoder's forms, from a training-form CLIP: ``{"training": model,
    "inference": a re-parameterized copy[, "inference, channels-last": that copy in
    channels-last memory format]}`` (the copies, in eval mode, share nothing with ``model``,
    whose mode is left as it is: :func:`compare_forms` measures every form in eval mode)."""
    if is_inference_form(model):
        raise ValueError("the model is already in the inference form; load it with deploy=False "
                         "to compare the two forms")
    if not tower_of(model).reparameterizes:
        tower_of(model).reparameterize()   # NotApplicable: one line naming the tower
    inference = copy.deepcopy(model).eval()
    tower_of(inference).reparameterize()
    forms = {"training": model, "inference": inference}
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
    Channels-last inputs are made for models whose conv weights are channels-last. Each form is
    measured in eval mode (BatchNorm must use its running statistics) and left in its own mode.
    """
    if not forms:
        raise ValueError("forms is empty")
    ctx = autocast or contextlib.nullcontext
    labels = list(forms)
    with contextlib.ExitStack() as modes, torch.no_grad():
        for model in forms.values():
            modes.enter_context(eval_mode(model))
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


def form_comparison(model: nn.Module, images: torch.Tensor, *, precision: str = "fp32",
                    channels_last: bool = True, repeats: int = 3, warmup: int = 1
                    ) -> Dict[str, Any]:
    """Notebook 01's check of the two forms: does the re-parameterized encoder compute the same
    embeddings as the training form, and how much faster is it?

    ``model`` is a training-form CLIP (:func:`encoder_forms`); ``precision`` (``"fp32"`` or
    ``"bf16"``) is the precision the speed is measured in, and under bf16 the agreement of the
    low-precision fast path is measured too (see :func:`compare_forms`).

    Returns ``{"rows": compare_forms' rows by form, "results": form_results(rows)}``. A model
    stored in the inference form has no training form to compare, and a tower that does not
    re-parameterize (a ViT, a ConvNeXt) no inference form: then both are empty and
    ``"skipped"`` says why (``None`` otherwise).
    """
    check_precision(precision)
    if is_inference_form(model):
        return {"rows": {}, "results": {},
                "skipped": "the model is stored in the inference form: there is no training "
                           "form to compare"}
    tower = tower_of(model)
    if not tower.reparameterizes:
        return {"rows": {}, "results": {},
                "skipped": f"the {tower.family} tower has no re-parameterized inference form: "
                           f"there is no second form to compare"}
    device = images.device
    low = None if precision == "fp32" else (lambda: autocast_context(device, precision))
    rows = compare_forms(encoder_forms(model, channels_last=channels_last), images,
                         autocast=low, repeats=repeats, warmup=warmup)
    return {"rows": rows, "results": form_results(rows), "skipped": None}


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
