"""Shape bias by the model-vs-human protocol (Geirhos et al., ICLR 2019; bethgelab's toolbox).

Each cue-conflict stimulus has a shape class and a texture class. Stimuli whose shape equals their
texture are dropped (no conflict). Of the rest, a decision that names the shape class is a *shape*
decision, one that names the texture class a *texture* decision, and any other answer counts for
neither:

    shape bias = shape decisions / (shape decisions + texture decisions)

Per class, the same ratio over the stimuli of one *shape* class (the toolbox's ``category``
column, the folder an image sits in). The same function scores people and models: the human
reference (:func:`human_reference`) is computed from the toolbox's raw data shipped in
:mod:`unirepclip.data.modelvshuman`, never typed in.

A model decides by one of two rules, both here: zero-shot over the 16 class names with a prompt
ensemble (:func:`zero_shot_decisions`), and the toolbox's rule for ImageNet classifiers, 1,000-class
probabilities averaged over each category's ImageNet classes, then the best category
(:func:`aggregate_imagenet_16`, :func:`toolbox_decisions`). Ties go to the first class in order
(``numpy.argmax``).

The uncertainty is a bootstrap over stimuli (:func:`bootstrap_shape_bias`; for two models on the
same stimuli, :func:`bootstrap_difference` resamples the stimuli once for both), seeded, so a rerun
gives the same interval: :func:`unirepclip.eval.uncertainty.bootstrap_interval` (BCa, whose
coverage holds near 0 and 1 where the percentile interval's does not) returning its
:class:`~unirepclip.eval.uncertainty.Interval`, with the resamples that hold no shape and no
texture decision (no ratio) counted and refused when not negligible. The same metric reads Navon figures (:mod:`unirepclip.data.navon`) with the
global shape as "shape" and the local elements' shape as "texture".
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from unirepclip.data.modelvshuman import CATEGORIES, human_trials, imagenet_indices
from unirepclip.eval.metrics import ArrayLike, to_numpy
from unirepclip.eval.uncertainty import Interval, bootstrap_interval

__all__ = ["ShapeBias", "shape_bias", "human_reference", "aggregate_imagenet_16",
           "decide", "zero_shot_decisions", "toolbox_decisions", "cue_conflict_classifiers",
           "bootstrap_shape_bias", "bootstrap_difference"]


@dataclasses.dataclass(frozen=True)
class ShapeBias:
    """The counts and ratios of one set of decisions (``nan`` where a ratio has no decisions)."""

    shape_bias: float
    n_shape: int
    n_texture: int
    n_other: int
    n_dropped: int
    per_class: Mapping[str, float]

    @property
    def n_conflict(self) -> int:
        """Stimuli kept (shape != texture)."""
        return self.n_shape + self.n_texture + self.n_other

    @property
    def shape_rate(self) -> float:
        """Shape decisions over the stimuli kept (the toolbox's ``fraction_correct_shape``)."""
        return self.n_shape / self.n_conflict if self.n_conflict else math.nan

    @property
    def texture_rate(self) -> float:
        return self.n_texture / self.n_conflict if self.n_conflict else math.nan

    def as_dict(self) -> Dict[str, Any]:
        return {"shape_bias": self.shape_bias, "n_shape": self.n_shape,
                "n_texture": self.n_texture, "n_other": self.n_other,
                "n_dropped": self.n_dropped, "shape_rate": self.shape_rate,
                "texture_rate": self.texture_rate, "per_class": dict(self.per_class)}


def _ratio(s: int, t: int) -> float:
    return s / (s + t) if s + t else math.nan


def _columns(shape: Sequence[Any], texture: Sequence[Any], decisions: Sequence[Any]
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = [np.asarray(list(c), dtype=object) for c in (shape, texture, decisions)]
    if not len(cols[0]) == len(cols[1]) == len(cols[2]):
        raise ValueError(f"shape, texture and decisions must be aligned: lengths "
                         f"{len(cols[0])}, {len(cols[1])}, {len(cols[2])}")
    if len(cols[0]) == 0:
        raise ValueError("shape_bias: no stimuli")
    return cols[0], cols[1], cols[2]


def shape_bias(shape: Sequence[Any], texture: Sequence[Any], decisions: Sequence[Any],
               classes: Optional[Sequence[Any]] = None) -> ShapeBias:
    """The shape bias of aligned per-stimulus ``shape`` and ``texture`` classes and ``decisions``
    (class names or indices, compared with ``==``). ``per_class`` is keyed by ``classes`` (default:
    the shape classes present, sorted), by the stimuli of that shape class."""
    s, t, d = _columns(shape, texture, decisions)
    keep = s != t
    s, t, d = s[keep], t[keep], d[keep]
    is_shape, is_texture = d == s, d == t
    keys = sorted(set(s.tolist())) if classes is None else list(classes)
    per_class = {c: _ratio(int((is_shape & (s == c)).sum()), int((is_texture & (s == c)).sum()))
                 for c in keys}
    n_shape, n_texture = int(is_shape.sum()), int(is_texture.sum())
    return ShapeBias(_ratio(n_shape, n_texture), n_shape, n_texture,
                     int(len(s) - n_shape - n_texture), int((~keep).sum()), per_class)


def human_reference() -> Dict[str, Any]:
    """The ten subjects of the cue-conflict experiment scored by :func:`shape_bias`:
    ``{"subjects": {subject: ShapeBias}, "mean": mean shape bias, "min", "max"}``."""
    subjects = {h.subject: shape_bias(h.shape, h.texture, h.response, CATEGORIES)
                for h in human_trials()}
    values = [r.shape_bias for r in subjects.values()]
    return {"subjects": subjects, "mean": float(np.mean(values)), "min": float(min(values)),
            "max": float(max(values))}


# ------------------------------------------------------------------------------------------------
# Decision rules


def aggregate_imagenet_16(probabilities: ArrayLike,
                          indices: Optional[Mapping[str, Sequence[int]]] = None) -> np.ndarray:
    """(N, 16) category scores from (N, 1000) ImageNet probabilities: the mean over each
    category's ImageNet classes (the toolbox's ``ImageNetProbabilitiesTo16ClassesMapping``),
    columns in ``indices``' order (default: the shipped mapping, :data:`CATEGORIES` order)."""
    p = to_numpy(probabilities, "probabilities").astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] != 1000:
        raise ValueError(f"probabilities must be (N, 1000) ImageNet-1k probabilities, got shape "
                         f"{p.shape}")
    idx = imagenet_indices() if indices is None else indices
    return np.stack([p[:, list(map(int, ix))].mean(axis=1) for ix in idx.values()], axis=1)


def decide(scores: ArrayLike, classes: Sequence[str]) -> List[str]:
    """The best class of each row of (N, C) ``scores`` (ties: the first)."""
    s = to_numpy(scores, "scores")
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise ValueError(f"scores must be (N, {len(classes)}) for {len(classes)} classes, got "
                         f"shape {s.shape}")
    return [classes[i] for i in s.argmax(axis=1)]


def zero_shot_decisions(image_features: ArrayLike, classifier16: ArrayLike,
                        classes: Sequence[str] = CATEGORIES) -> List[str]:
    """Zero-shot over the class names: the class whose (D, C) prompt-ensemble weight is closest."""
    from unirepclip.eval.zeroshot import zeroshot_logits

    return decide(zeroshot_logits(image_features, classifier16), classes)


def toolbox_decisions(image_features: ArrayLike, classifier1000: ArrayLike,
                      indices: Optional[Mapping[str, Sequence[int]]] = None) -> List[str]:
    """The toolbox's rule on a zero-shot ImageNet classifier (D, 1000): softmax probabilities at
    the zero-shot logit scale, averaged per category (:func:`aggregate_imagenet_16`), the best."""
    from unirepclip.eval.zeroshot import zeroshot_logits
    from unirepclip.utils import softmax

    probs = softmax(zeroshot_logits(image_features, classifier1000), axis=1)
    idx = imagenet_indices() if indices is None else indices
    return decide(aggregate_imagenet_16(probs, idx), list(idx))


def cue_conflict_classifiers(model: Any, tokenizer: Callable, *, device: Any = "cpu",
                             max_templates: int = 0) -> Dict[str, Any]:
    """The two rules' zero-shot classifiers with CLIP's 80 ImageNet templates:
    ``{"zero_shot_16": (D, 16), "imagenet_1000": (D, 1000)}`` (``max_templates > 0`` keeps the
    first that many, for a dry run)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from unirepclip.eval.zeroshot import build_classifier

    templates = list(OPENAI_IMAGENET_TEMPLATES)
    templates = templates[:max_templates] if max_templates else templates
    return {"zero_shot_16": build_classifier(model, tokenizer, list(CATEGORIES), templates,
                                             device=device),
            "imagenet_1000": build_classifier(model, tokenizer, list(IMAGENET_CLASSNAMES),
                                              templates, device=device)}


# ------------------------------------------------------------------------------------------------
# Uncertainty: a bootstrap over stimuli


def _codes(shape, texture, decisions) -> np.ndarray:
    """+1 shape, -1 texture, 0 other decision for each conflict stimulus."""
    s, t, d = _columns(shape, texture, decisions)
    keep = s != t
    s, t, d = s[keep], t[keep], d[keep]
    if not len(s):
        raise ValueError("bootstrap: every stimulus has shape == texture; nothing to resample")
    return (d == s).astype(np.int8) - (d == t).astype(np.int8)


def _bias(codes: np.ndarray, axis: int = -1) -> np.ndarray:
    """The shape bias of ``codes`` along ``axis`` (vectorized for the bootstrap); ``nan`` where
    a resample holds no shape and no texture decision."""
    n_s, n_t = (codes == 1).sum(axis=axis), (codes == -1).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_s + n_t > 0, n_s / np.maximum(n_s + n_t, 1), np.nan)


def _bias_difference(codes_a: np.ndarray, codes_b: np.ndarray, axis: int = -1) -> np.ndarray:
    return _bias(codes_a, axis=axis) - _bias(codes_b, axis=axis)


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 100:
        raise ValueError(f"n_boot={n_boot!r}: expected an integer >= 100")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: expected a fraction in (0, 1)")


def bootstrap_shape_bias(shape: Sequence[Any], texture: Sequence[Any], decisions: Sequence[Any],
                         *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                         max_undefined: float = 0.01) -> Interval:
    """The shape bias with its bootstrap interval over the conflict stimuli (resampled with
    replacement; :func:`unirepclip.eval.uncertainty.bootstrap_interval`, BCa, seeded: the same
    ``seed`` gives the same interval). A resample with no shape and no texture decision has no
    shape bias: such resamples are counted (``n_undefined``) and left out, and more than
    ``max_undefined`` of them is a ValueError. With no shape or texture decision at all the
    interval is undefined (``nan``)."""
    _check_boot(n_boot, level)
    codes = _codes(shape, texture, decisions)
    return bootstrap_interval(_bias, codes, seed=seed, n_resamples=int(n_boot),
                              confidence=level, max_undefined=max_undefined)


def bootstrap_difference(shape: Sequence[Any], texture: Sequence[Any], decisions_a: Sequence[Any],
                         decisions_b: Sequence[Any], *, n_boot: int = 2000, level: float = 0.95,
                         seed: int = 0, max_undefined: float = 0.01) -> Interval:
    """Shape bias of ``a`` minus that of ``b`` on the same stimuli, each resample of stimuli
    shared by both (a paired bootstrap; undefined resamples as in
    :func:`bootstrap_shape_bias`)."""
    _check_boot(n_boot, level)
    codes_a = _codes(shape, texture, decisions_a)
    codes_b = _codes(shape, texture, decisions_b)
    return bootstrap_interval(_bias_difference, codes_a, codes_b, seed=seed,
                              n_resamples=int(n_boot), confidence=level,
                              max_undefined=max_undefined)
