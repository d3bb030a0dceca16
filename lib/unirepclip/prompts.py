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

from typing import Any, List, Sequence, Tuple

import numpy as np
import torch

from .zeroshot import Template, prepare_templates

__all__ = ["prompt_texts", "template_label", "classifiers_from_embeddings"]


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
