"""Prompt ensembles, one template at a time: every single-template classifier and the ensemble
from one pass of the text encoder.

CLIP (Radford et al. 2021, section 3.1.4) builds a zero-shot classifier from many prompt
templates: each prompt's embedding is L2-normalized, the prompts of a class are averaged, and the
mean is re-normalized (open_clip's ``build_zero_shot_classifier``). Comparing the ensemble with
each template alone needs the same prompt embeddings once more per template; encoding all
``T x C`` prompts once and slicing gives every classifier for the price of the ensemble (1000
classes x 80 templates through a 354M-parameter text tower is the expensive part of an
ImageNet evaluation). The text features can come from
:func:`unirepclip.features.extract_text_features` (and its cache) over :func:`prompt_texts`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from unirepclip.eval.zeroshot import Template, prepare_templates

__all__ = ["prompt_texts", "template_label", "classifiers_from_embeddings", "PromptClassifiers",
           "build_classifiers", "top1_accuracy"]


def prompt_texts(classnames: Sequence[str], templates: Sequence[Template]) -> List[str]:
    """Every prompt, template-major: ``texts[t * C + c] = templates[t](classnames[c])``."""
    if isinstance(classnames, str) or not classnames:
        raise ValueError("classnames must be a non-empty sequence of strings")
    fns = prepare_templates(templates)
    return [fn(c) for fn in fns for c in classnames]


def template_label(template: Template) -> str:
    """A readable form of a template: the format string, or what a callable makes of ``{}``."""
    if isinstance(template, str):
        return template
    text = getattr(template, "template", None)
    if isinstance(text, str):
        return text
    return str(template("{}"))


def classifiers_from_embeddings(embeddings: Any, n_templates: int, n_classes: int
                                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ensemble (D, C), singles (T, D, C))`` zero-shot classifiers from the embeddings of
    :func:`prompt_texts` (rows template-major, normalized here in float32).

    ``singles[t]`` is the classifier of template ``t`` alone; ``ensemble`` averages the normalized
    prompt embeddings over templates and re-normalizes, as open_clip does.
    """
    emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings)
                          else embeddings).float()
    if emb.ndim != 2 or emb.shape[0] != n_templates * n_classes:
        raise ValueError(f"embeddings must be ({n_templates} templates x {n_classes} classes, D) "
                         f"= ({n_templates * n_classes}, D) rows, got shape {tuple(emb.shape)}")
    norm = emb.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("a prompt embedding is all zeros and cannot be normalized")
    emb = (emb / norm).reshape(n_templates, n_classes, -1)
    singles = emb.transpose(1, 2).contiguous()
    mean = emb.mean(0)
    ensemble = (mean / mean.norm(dim=1, keepdim=True)).T.contiguous()
    return ensemble, singles


@dataclasses.dataclass
class PromptClassifiers:
    """Zero-shot classifiers of one task: ``ensemble`` (D, C), ``singles`` (T, D, C) and the
    readable ``templates`` (T) and ``classnames`` (C) they were built from."""

    ensemble: torch.Tensor
    singles: torch.Tensor
    templates: List[str]
    classnames: List[str]

    @property
    def n_templates(self) -> int:
        return len(self.templates)


def build_classifiers(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                      templates: Sequence[Template], *, max_templates: int = 0,
                      batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                      precision: str = "fp32", cache: Optional[Any] = None,
                      model_ident: Optional[Dict[str, Any]] = None,
                      progress: bool = False) -> PromptClassifiers:
    """Encode every prompt of a task once (through
    :func:`unirepclip.features.extract_text_features`, so a ``cache`` can keep them) and return the
    ensemble and each single-template classifier.

    ``max_templates > 0`` keeps only the first that many templates (a count to shrink a dry run;
    ``0`` keeps all).
    """
    from unirepclip.features.extract import extract_text_features

    if int(max_templates) != max_templates or max_templates < 0:
        raise ValueError(f"max_templates={max_templates!r}: expected an integer >= 0 (0 = all)")
    templates = list(templates)[:max_templates] if max_templates else list(templates)
    texts = prompt_texts(classnames, templates)
    feats = extract_text_features(model, tokenizer, texts, batch_size=batch_size, device=device,
                                  precision=precision, cache=cache, model_ident=model_ident,
                                  progress=progress)
    ensemble, singles = classifiers_from_embeddings(feats.embeddings, len(templates),
                                                    len(classnames))
    return PromptClassifiers(ensemble, singles, [template_label(t) for t in templates],
                             list(classnames))


@torch.no_grad()
def top1_accuracy(image_features: Any, labels: Any, classifiers: torch.Tensor, *,
                  device: Union[str, torch.device] = "cpu", chunk: int = 8192) -> np.ndarray:
    """Top-1 accuracy of each classifier in ``classifiers`` ((D, C), or (T, D, C) for T of them)
    on normalized-or-not ``image_features`` (N, D), computed in chunks on ``device``.

    Ties go to the lower class index (``argmax``), as in :mod:`unirepclip.metrics`. Returns a
    float array of shape (T,) (a 0-d array for one (D, C) classifier).
    """
    clf = torch.as_tensor(classifiers).float().to(device)
    single = clf.ndim == 2
    if single:
        clf = clf[None]
    if clf.ndim != 3:
        raise ValueError(f"classifiers must be (D, C) or (T, D, C), got {tuple(clf.shape)}")
    feats = torch.as_tensor(np.asarray(image_features) if not torch.is_tensor(image_features)
                            else image_features).float()
    y = torch.as_tensor(np.asarray(labels)).long()
    if feats.ndim != 2 or feats.shape[1] != clf.shape[1] or len(y) != len(feats):
        raise ValueError(f"image_features {tuple(feats.shape)}, labels {tuple(y.shape)} and "
                         f"classifiers {tuple(clf.shape)} do not fit (N, D), (N,), (T, D, C)")
    correct = torch.zeros(clf.shape[0], dtype=torch.float64)
    for start in range(0, len(feats), chunk):
        f = feats[start:start + chunk].to(device)
        pred = torch.einsum("nd,tdc->tnc", f, clf).argmax(-1).cpu()
        correct += (pred == y[start:start + chunk]).sum(1).double()
    acc = (correct / max(len(feats), 1)).numpy()
    return acc[0] if single else acc
