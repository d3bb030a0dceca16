"""Zero-shot classification with prompt ensembles (Radford et al. 2021, section 3.1.4).

The classifier is built by open_clip's ``build_zero_shot_classifier``: for each class every
template is filled with the class name, encoded, L2-normalized, averaged over templates and
re-normalized, giving a (D, C) matrix. Logits are ``100 * image_features @ classifier`` (CLIP's
learned temperature saturates at 100, and open_clip's evaluation uses this constant), so softmax
confidences match open_clip's.

``evaluate`` works from precomputed, cached image features as well as from a loader, so the
notebooks can encode a dataset once and score many prompt sets, resolutions and tasks.
Metrics follow CLIP_benchmark (see :mod:`unirepclip.metrics`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from tqdm.auto import tqdm

from unirepclip.eval.metrics import ArrayLike, classification_report, to_numpy

Template = Union[str, Callable[[str], str]]

__all__ = ["LOGIT_SCALE", "prepare_templates", "build_classifier", "encode_images",
           "zeroshot_logits", "most_confident_mistakes", "evaluate"]

LOGIT_SCALE = 100.0


def _fill(template: str) -> Callable[[str], str]:
    def fill(classname: str) -> str:
        return template.format(classname)
    fill.template = template  # keeps the text readable when a classifier is inspected
    return fill


def prepare_templates(templates: Sequence[Template], template_index: Optional[int] = None
                      ) -> List[Callable[[str], str]]:
    """Validate templates and return them as callables (a mix of both kinds is allowed).

    Args:
        templates: format strings with one ``{}`` or callables ``classname -> text``.
        template_index: None for the whole ensemble; an int to keep only that template (the
            single-template baseline a prompt ensemble is compared with).
    """
    if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence):
        raise TypeError("templates must be a sequence of format strings or callables, got "
                        f"{type(templates).__name__}")
    if len(templates) == 0:
        raise ValueError("templates is empty")
    out = []
    for i, t in enumerate(templates):
        if isinstance(t, str):
            # a string without exactly one '{}' would give every class the same prompt
            try:
                probe = t.format("\0")
            except (IndexError, KeyError, ValueError) as e:
                raise ValueError(f"templates[{i}] = {t!r} is not a format string with one "
                                 f"'{{}}' ({e})") from e
            if probe.count("\0") != 1:
                raise ValueError(f"templates[{i}] = {t!r} must contain the class-name slot "
                                 "'{}' exactly once")
            out.append(_fill(t))
        elif callable(t):
            out.append(t)
        else:
            raise TypeError(f"templates[{i}] must be a str or a callable, got {type(t).__name__}")
    if template_index is not None:
        if not -len(out) <= template_index < len(out):
            raise ValueError(f"template_index {template_index} is out of range for "
                             f"{len(out)} templates")
        out = [out[template_index]]
    return out


def build_classifier(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                     templates: Sequence[Template], *, template_index: Optional[int] = None,
                     device: Union[str, torch.device] = "cpu",
                     num_classes_per_batch: Optional[int] = 10, progress: bool = False
                     ) -> torch.Tensor:
    """(D, C) zero-shot weights from open_clip's ``build_zero_shot_classifier``.

    ``template_index`` selects one template instead of the ensemble (see
    :func:`prepare_templates`). The model is put in eval mode (dropout would make the weights
    random).
    """
    if isinstance(classnames, str) or not isinstance(classnames, Sequence) or not classnames:
        raise ValueError("classnames must be a non-empty sequence of strings")
    bad = [i for i, c in enumerate(classnames) if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"classnames[{bad[0]}] = {classnames[bad[0]]!r} is not a non-empty string")
    fns = prepare_templates(templates, template_index)
    model.eval()
    return build_zero_shot_classifier(model, tokenizer, list(classnames), fns,
                                      num_classes_per_batch=num_classes_per_batch,
                                      device=device, use_tqdm=progress)


def _split_batch(batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"loader yields dicts without an 'image' key (keys: {list(batch)})")
        return batch["image"], batch.get("label")
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(f"loader yields {type(batch).__name__}; expected a tensor, an "
                    "(images, labels) pair or a dict with 'image' and 'label'")


@torch.no_grad()
def encode_images(model: torch.nn.Module, loader: Iterable, *,
                  device: Union[str, torch.device] = "cpu",
                  autocast_dtype: Optional[torch.dtype] = None, progress: bool = True
                  ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Normalized image embeddings (N, D) float32, and the labels when the loader yields them.

    ``loader`` yields image tensors, ``(images, labels, ...)`` or ``{"image", "label"}`` dicts.
    ``autocast_dtype`` (e.g. ``torch.bfloat16`` on a GPU) runs the forward under autocast.
    """
    model.eval()
    device = torch.device(device)
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    feats, labels, have_labels = [], [], None
    for batch in tqdm(loader, desc="encode images", disable=not progress, leave=False):
        x, y = _split_batch(batch)
        if have_labels is None:
            have_labels = y is not None
        elif have_labels != (y is not None):
            raise ValueError("loader yields labels for some batches and not for others")
        with ctx:
            f = model.encode_image(x.to(device), normalize=True)
        feats.append(f.float().cpu())
        if y is not None:
            labels.append(torch.as_tensor(y).cpu())
    if not feats:
        raise ValueError("loader yielded no batches")
    return (torch.cat(feats).numpy(),
            torch.cat(labels).numpy().astype(np.int64) if have_labels else None)


def zeroshot_logits(image_features: ArrayLike, classifier: ArrayLike,
                    logit_scale: float = LOGIT_SCALE, normalize: bool = True) -> np.ndarray:
    """``logit_scale * img @ classifier`` as float32 (N, C); rows of ``img`` L2-normalized first
    unless ``normalize=False`` (cached features usually are; renormalizing is harmless)."""
    img = to_numpy(image_features, "image_features").astype(np.float32, copy=False)
    clf = to_numpy(classifier, "classifier").astype(np.float32, copy=False)
    if img.ndim != 2 or clf.ndim != 2:
        raise ValueError(f"image_features (N, D) and classifier (D, C) must be 2-D, got shapes "
                         f"{img.shape} and {clf.shape}")
    if img.shape[1] != clf.shape[0]:
        raise ValueError(f"image_features have dim {img.shape[1]} but the classifier has "
                         f"{clf.shape[0]} rows; expected a (D, C) classifier")
    if normalize:
        norm = np.linalg.norm(img, axis=1, keepdims=True)
        if (norm == 0).any():
            raise ValueError("image_features: a row is all zeros and cannot be normalized")
        img = img / norm
    return logit_scale * (img @ clf)


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p.max(axis=1) / p.sum(axis=1)).astype(np.float32)


def most_confident_mistakes(logits: ArrayLike, labels: ArrayLike, n: int = 16) -> np.ndarray:
    """Indices of up to ``n`` wrong predictions, most confident (softmax max) first; ties keep
    sample order."""
    s = to_numpy(logits, "logits")
    y = to_numpy(labels, "labels")
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"logits (N, C) and labels (N,) disagree: {s.shape} vs {y.shape}")
    wrong = np.flatnonzero(s.argmax(axis=1) != y)
    conf = _softmax_max(s)[wrong]
    return wrong[np.argsort(-conf, kind="stable")[:max(int(n), 0)]]


def evaluate(model: Optional[torch.nn.Module], tokenizer: Optional[Callable],
             image_features_or_loader: Union[ArrayLike, Iterable],
             labels: Optional[ArrayLike] = None, classnames: Optional[Sequence[str]] = None,
             templates: Optional[Sequence[Template]] = None, *,
             classifier: Optional[ArrayLike] = None, template_index: Optional[int] = None,
             ks: Sequence[int] = (1, 5), n_mistakes: int = 16,
             logit_scale: float = LOGIT_SCALE, device: Union[str, torch.device] = "cpu",
             autocast_dtype: Optional[torch.dtype] = None, progress: bool = False
             ) -> Dict[str, Any]:
    """Zero-shot classification metrics.

    Args:
        model, tokenizer: the CLIP model and its tokenizer; only needed to build the classifier
            (when ``classifier`` is None) or to encode images (when a loader is given).
        image_features_or_loader: (N, D) image embeddings (NumPy or torch; cached features) or
            an iterable of batches (see :func:`encode_images`).
        labels: (N,) class indices; may be omitted when the loader yields them.
        classnames, templates: what the classifier is built from (see :func:`build_classifier`).
        classifier: a prebuilt (D, C) classifier; skips building.
        template_index: score with one template instead of the ensemble.
        ks: top-k cut-offs (``acc{k}``; k clipped to the number of classes).
        n_mistakes: how many of the most confident mistakes to return.

    Returns:
        A dict with ``acc1``, ``acc5`` (per ``ks``), ``mean_per_class_recall`` (floats in [0, 1]),
        ``per_class_accuracy`` ((C,) array, NaN for classes without samples),
        ``confusion_matrix`` ((C, C), rows = truth), ``logits`` ((N, C) float32),
        ``predictions`` ((N,)), ``confidence`` ((N,) softmax probability of the prediction),
        ``most_confident_mistakes`` (indices), ``classifier`` ((D, C) tensor), ``classnames``,
        ``n_templates`` and ``n_samples``.
    """
    feats = image_features_or_loader
    is_features = isinstance(feats, (np.ndarray, torch.Tensor)) and feats.ndim == 2
    if not is_features:
        if model is None:
            raise ValueError("model is needed to encode images from a loader")
        if isinstance(feats, (np.ndarray, torch.Tensor)):
            raise ValueError("image_features_or_loader: an array must be (N, D) features, got "
                             f"shape {tuple(feats.shape)}; pass images through a loader")
        feats, loader_labels = encode_images(model, feats, device=device,
                                             autocast_dtype=autocast_dtype, progress=progress)
        if labels is None:
            labels = loader_labels
    if labels is None:
        raise ValueError("labels are required (the loader did not yield any)")

    n_templates = None
    if classifier is None:
        if model is None or tokenizer is None or classnames is None or templates is None:
            raise ValueError("without a prebuilt classifier, model, tokenizer, classnames and "
                             "templates are all required")
        n_templates = 1 if template_index is not None else len(templates)
        classifier = build_classifier(model, tokenizer, classnames, templates,
                                      template_index=template_index, device=device,
                                      progress=progress)
    clf = classifier if isinstance(classifier, torch.Tensor) else torch.as_tensor(classifier)
    if classnames is not None and len(classnames) != clf.shape[1]:
        raise ValueError(f"classnames has {len(classnames)} entries but the classifier has "
                         f"{clf.shape[1]} columns")

    logits = zeroshot_logits(feats, clf, logit_scale=logit_scale)
    out: Dict[str, Any] = classification_report(logits, labels, ks)
    y = to_numpy(labels, "labels").astype(np.int64)
    out["logits"] = logits
    out["confidence"] = _softmax_max(logits)
    out["most_confident_mistakes"] = most_confident_mistakes(logits, y, n_mistakes)
    out["classifier"] = clf
    out["classnames"] = list(classnames) if classnames is not None else None
    out["n_templates"] = n_templates
    out["n_samples"] = int(len(y))
    return out
