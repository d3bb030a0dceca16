"""The zero-shot playground's answers: the text boxes parsed, the prompt ensemble built, and the
probabilities of each gallery image for each class.

:func:`parse_classnames`, :func:`parse_templates` read the boxes; :data:`TEMPLATE_SETS` are the
built-in ensembles; :func:`text_classifier` is open_clip's prompt ensemble
(:func:`unirepclip.eval.zeroshot.build_classifiers`) and :func:`zeroshot_table` the softmax of
100 x the cosine similarities, as in notebook 02.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch.nn as nn
from numpy.typing import ArrayLike

from unirepclip.eval import zeroshot
from unirepclip.utils import softmax

__all__ = ["TEMPLATE_SETS", "template_set", "parse_classnames", "parse_templates",
           "text_classifier", "zeroshot_table"]


def _synthetic_templates() -> List[Any]:
    from unirepclip.data import zeroshot_task
    return list(zeroshot_task("shape")[1])


def _openai_templates() -> List[Any]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return list(OPENAI_IMAGENET_TEMPLATES)


def _simple_templates() -> List[Any]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
    return list(SIMPLE_IMAGENET_TEMPLATES)


#: Built-in prompt ensembles by name: ``name -> () -> templates``.
TEMPLATE_SETS: Dict[str, Callable[[], List[Any]]] = {
    "synthetic world (24 held-out phrasings, every colour)": _synthetic_templates,
    "CLIP ImageNet (80)": _openai_templates,
    "CLIP ImageNet, simple (7)": _simple_templates,
}


def template_set(name: str) -> List[Any]:
    """The templates of a built-in ensemble of :data:`TEMPLATE_SETS`."""
    if name not in TEMPLATE_SETS:
        raise ValueError(f"template set {name!r} is not one of {list(TEMPLATE_SETS)}")
    return TEMPLATE_SETS[name]()


def parse_classnames(text: str) -> List[str]:
    """Class names from a comma-separated box (blanks and repeats dropped, order kept)."""
    names: List[str] = []
    for part in str(text).replace("\n", ",").split(","):
        part = " ".join(part.split())
        if part and part not in names:
            names.append(part)
    if not names:
        raise ValueError("the class list is empty: type class names separated by commas")
    return names


def parse_templates(text: str) -> List[str]:
    """Templates from a box, one per line, each with one ``{}`` for the class name."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        raise ValueError("the template list is empty: type one template per line, with {} "
                         "where the class name goes")
    for i, line in enumerate(lines):
        try:
            zeroshot.prepare_templates([line])
        except ValueError:
            raise ValueError(f"template line {i + 1} {line!r} needs one {{}} where the class "
                             f"name goes, e.g. 'a photo of a {{}}.'") from None
    return lines


def text_classifier(model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                    templates: Sequence[Any], **text_kw: Any) -> np.ndarray:
    """(D, C) float32 zero-shot weights: open_clip's prompt ensemble of ``templates`` for each
    class (:func:`unirepclip.eval.zeroshot.build_classifiers`; ``text_kw`` go to
    :func:`unirepclip.features.extract_text_features`)."""
    text_kw.setdefault("progress", False)
    clf = zeroshot.build_classifiers(model, tokenizer, list(classnames), list(templates),
                                     **text_kw)
    return clf.ensemble.numpy().astype(np.float32)


def zeroshot_table(image_embeddings: ArrayLike, classifier: ArrayLike, classnames: Sequence[str],
                   *, names: Optional[Sequence[str]] = None,
                   labels: Optional[ArrayLike] = None) -> Dict[str, Any]:
    """The probabilities of each image for each class: ``softmax(100 * images @ classifier)``.

    Returns ``{"classnames", "names", "similarities" (N, C): the cosines ``images @
    classifier``, "probabilities" (N, C), "predicted" (N,), "confidence" (N,)}``, plus
    ``"accuracy"`` (top-1 against ``labels``, indices into ``classnames``) when labels are given.
    The similarities say what the probabilities cannot once the logit scale saturates them: with
    cosines 0.05 apart, 100 x their gap makes one class 99.3 %.
    """
    emb = np.asarray(image_embeddings, dtype=np.float32)
    w = np.asarray(classifier, dtype=np.float32)
    if emb.ndim != 2 or w.ndim != 2 or emb.shape[1] != w.shape[0]:
        raise ValueError(f"zeroshot_table: images (N, D) and classifier (D, C) do not fit: "
                         f"{emb.shape} and {w.shape}")
    if w.shape[1] != len(classnames):
        raise ValueError(f"zeroshot_table: {len(classnames)} class names for a classifier of "
                         f"{w.shape[1]} classes")
    sims = emb @ w
    probs = softmax(zeroshot.LOGIT_SCALE * sims, axis=1)
    pred = probs.argmax(1)
    out: Dict[str, Any] = {
        "classnames": list(classnames),
        "names": list(names) if names is not None else [f"#{i}" for i in range(len(emb))],
        "similarities": sims, "probabilities": probs, "predicted": pred, "confidence": probs.max(1),
    }
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != pred.shape:
            raise ValueError(f"zeroshot_table: {y.shape[0]} labels for {pred.shape[0]} images")
        out["accuracy"] = float(np.mean(pred == y))
    return out
