"""The demo world's binding test (:mod:`unirepclip.data.binding`) on a model, and what it says.

Each category's items are scored as CLIP_benchmark's ``image_caption_selection`` scores
SugarCrepe (:mod:`unirepclip.eval.caption_selection`: one image, the positive caption first, the
first caption winning an exact tie): ``text_acc`` per category with the number of exact ties, a
Wilson interval over items (:func:`unirepclip.eval.uncertainty.proportion_interval`), and between
two models on the same items the exact McNemar test
(:func:`~unirepclip.eval.uncertainty.paired_accuracy_test`). ``image_acc`` is 1 by construction
with one image per item, and ``acc`` equals ``text_acc``: neither is reported as a finding.

:func:`describe_binding` writes what a model does from its numbers, whichever way they fall.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from unirepclip.data.binding import BINDING_CATEGORIES, CHANCE, BindingSet
from unirepclip.eval.caption_selection import (image_caption_selection, selection_outcomes,
                                               selection_scores)
from unirepclip.eval.uncertainty import Interval, paired_accuracy_test, proportion_interval

__all__ = ["binding_embeddings", "binding_outcomes", "binding_summary", "binding_comparison",
           "describe_binding", "describe_comparison", "binding_records", "comparison_records",
           "selection_records"]


@torch.no_grad()
def binding_embeddings(model: torch.nn.Module, tokenizer: Callable, stimuli: BindingSet, *,
                       image_size: Optional[int] = None, batch_size: int = 64,
                       device: Union[str, torch.device] = "cpu", precision: str = "fp32"
                       ) -> Dict[str, Any]:
    """``{"images": (N, D), "texts": {caption: (D,)}}``: normalized embeddings of the stimuli,
    through the model's evaluation preprocessing at ``image_size`` (default: the model's own,
    which resizes the stimuli to it; the demo's is their size, 64 px)."""
    from PIL import Image

    from unirepclip.data.sets import val_transform
    from unirepclip.eval.zeroshot import encode_images
    from unirepclip.features.extract import extract_text_features

    transform = val_transform(model, image_size)
    tensors = torch.stack([transform(Image.fromarray(im)) for im in stimuli.images])
    loader = [tensors[i:i + batch_size] for i in range(0, len(tensors), batch_size)]
    images, _ = encode_images(model, loader, device=device, precision=precision, progress=False)
    texts = stimuli.texts()
    feats = extract_text_features(model, tokenizer, texts, batch_size=batch_size, device=device,
                                  precision=precision, progress=False)
    return {"images": images, "texts": dict(zip(texts, feats.embeddings))}


def binding_outcomes(stimuli: BindingSet, embeddings: Mapping[str, Any]
                     ) -> Dict[str, Dict[str, Any]]:
    """Per category: :func:`~unirepclip.eval.caption_selection.image_caption_selection`'s
    figures, the (N, 1, 2) ``scores`` and the per-item ``outcomes`` (``text_correct``, ``tie``)."""
    images = np.asarray(embeddings["images"])
    if len(images) != len(stimuli):
        raise ValueError(f"{len(images)} image embeddings for {len(stimuli)} stimuli")
    out: Dict[str, Dict[str, Any]] = {}
    for category, pairs in stimuli.captions.items():
        text = np.stack([[embeddings["texts"][t] for t in pair] for pair in pairs])
        scores = selection_scores(images[:, None, :], text)
        out[category] = dict(image_caption_selection(scores), scores=scores,
                             outcomes=selection_outcomes(scores))
    return out


def binding_summary(outcomes: Mapping[str, Mapping[str, Any]], confidence: float = 0.95
                    ) -> Dict[str, Dict[str, Any]]:
    """Per category: ``text_acc``, its Wilson ``interval`` (an :class:`Interval`), ``ties``,
    ``n`` and ``vs_chance``: ``"above"``, ``"below"`` or ``"indistinguishable"`` (the interval
    contains :data:`~unirepclip.data.binding.CHANCE`)."""
    out = {}
    for category, o in outcomes.items():
        iv = proportion_interval(o["outcomes"]["text_correct"], confidence)
        side = ("indistinguishable" if iv.contains(CHANCE) else
                "above" if iv.low > CHANCE else "below")
        out[category] = {"text_acc": iv.estimate, "interval": iv, "ties": int(o["ties"]),
                         "n": iv.n, "vs_chance": side}
    return out


def binding_comparison(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]],
                       names: Sequence[str] = ("A", "B"), seed: int = 0) -> Dict[str, Any]:
    """Per category shared by two models' :func:`binding_outcomes` on the same items: the exact
    McNemar test and the paired difference (a :class:`~unirepclip.eval.uncertainty.PairedTest`)."""
    return {c: paired_accuracy_test(a[c]["outcomes"]["text_correct"],
                                    b[c]["outcomes"]["text_correct"], names=names, seed=seed)
            for c in a if c in b}


def _pct(iv: Interval) -> str:
    return f"{iv.estimate:.0%} [{iv.low:.0%}, {iv.high:.0%}]"


def _reading(summary: Mapping[str, Mapping[str, Any]]) -> str:
    above = [c for c, v in summary.items() if v["vs_chance"] == "above"]
    binding = [c for c in BINDING_CATEGORIES if c in summary]
    controls = [c for c in summary if c not in BINDING_CATEGORIES]
    if not binding:
        return ""
    bound = [c for c in binding if c in above]
    if len(bound) == len(binding):
        return f"It binds colours to shapes: {' and '.join(binding)} are above chance."
    if bound:
        return (f"Its binding is mixed: {', '.join(bound)} above chance, "
                f"{', '.join(c for c in binding if c not in bound)} not.")
    seen = [c for c in controls if c in above]
    if seen:
        return (f"It tells which colours or shapes are present ({', '.join(seen)} above "
                f"chance) but does not bind them: {' and '.join(binding)}, which keep every "
                f"word, are not above chance.")
    return "It is above chance in no category: it does not read these two-object captions."


def describe_binding(name: str, summary: Mapping[str, Mapping[str, Any]]) -> str:
    """A paragraph on one model's binding test: each category against chance, ties, and the
    reading (binding, bag of words, or neither), written from the numbers."""
    parts = []
    for c, s in summary.items():
        where = {"above": "above chance", "below": "below chance",
                 "indistinguishable": "not distinguishable from chance"}[s["vs_chance"]]
        ties = f", {s['ties']} exact ties" if s["ties"] else ""
        parts.append(f"{c} {_pct(s['interval'])} ({where}{ties})")
    return (f"**{name}** (n = {next(iter(summary.values()))['n']} per category; chance "
            f"{CHANCE:.0%}): " + "; ".join(parts) + ". " + _reading(summary))


def describe_comparison(comparison: Mapping[str, Any]) -> str:
    """One sentence per category from :func:`binding_comparison`'s tests: which model is
    higher, by how much, with McNemar's p, or "not distinguishable"."""
    return " ".join(f"{c}: {t.verdict}." for c, t in comparison.items())


def binding_records(prefix: str, summary: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """``{prefix}.<category>.text_acc|low|high|ties|n|vs_chance`` of :func:`binding_summary`."""
    out: Dict[str, Any] = {}
    for c, s in summary.items():
        iv = s["interval"]
        out.update({f"{prefix}.{c}.text_acc": iv.estimate, f"{prefix}.{c}.low": iv.low,
                    f"{prefix}.{c}.high": iv.high, f"{prefix}.{c}.ties": s["ties"],
                    f"{prefix}.{c}.n": s["n"], f"{prefix}.{c}.vs_chance": s["vs_chance"]})
    return out


def comparison_records(prefix: str, comparison: Mapping[str, Any]) -> Dict[str, Any]:
    """``{prefix}.<category>.p_value|a_only|b_only|difference|verdict`` of
    :func:`binding_comparison` (``a_only``: items the first model gets right and the second
    wrong; ``difference``: first minus second)."""
    out: Dict[str, Any] = {}
    for c, t in comparison.items():
        out.update({f"{prefix}.{c}.p_value": t.p_value, f"{prefix}.{c}.a_only": t.details["a_only"],
                    f"{prefix}.{c}.b_only": t.details["b_only"],
                    f"{prefix}.{c}.difference": t.difference.estimate,
                    f"{prefix}.{c}.verdict": t.verdict})
    return out


def selection_records(prefix: str, result: Mapping[str, Any], confidence: float = 0.95
                      ) -> Dict[str, Any]:
    """``{prefix}.text_acc|image_acc|acc|ties|n`` of
    :func:`~unirepclip.eval.caption_selection.evaluate_caption_selection`'s result and
    ``{prefix}.text_acc_low|text_acc_high``, Wilson's interval over its items."""
    iv = proportion_interval(result["outcomes"]["text_correct"], confidence)
    out = {f"{prefix}.{k}": result[k] for k in ("text_acc", "image_acc", "acc", "ties", "n")}
    out.update({f"{prefix}.text_acc_low": iv.low, f"{prefix}.text_acc_high": iv.high})
    return out

