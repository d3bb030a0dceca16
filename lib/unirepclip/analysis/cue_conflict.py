"""Cue-conflict measurements on a model, and the sentences that report them.

For the demo, the cue conflict is synthetic (:mod:`unirepclip.data.navon`): the model answers by
zero-shot over the demo world's shapes, and "shape bias" is global answers / (global + local
answers), :func:`unirepclip.eval.shape_bias.shape_bias` with the global shape as "shape" and the
local elements' shape as "texture". :func:`navon_decisions` runs a model on a
:class:`~unirepclip.data.navon.NavonSet`; :func:`paired_difference` is the paired bootstrap of two
models' shape bias on the same figures. Notebook 07 scores the figures and both controls with
:mod:`unirepclip.analysis.shape_study` (Wilson intervals over the decided figures).

:func:`describe_difference` writes the sentence a notebook shows about two such results: which way
the difference went, by how much, and whether its bootstrap interval excludes zero. It is written
from the numbers, never for one outcome.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch

from unirepclip.data.navon import NavonSet
from unirepclip.data.synthetic import zeroshot_task
from unirepclip.eval.shape_bias import bootstrap_difference
from unirepclip.eval.uncertainty import Interval

__all__ = ["navon_classifier", "navon_decisions", "paired_difference",
           "describe_difference"]


def navon_classifier(model: torch.nn.Module, tokenizer: Callable, *,
                     device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """The demo world's zero-shot shape classifier (D, 8): its shapes with the held-out prompt
    ensemble over colours (:func:`unirepclip.data.synthetic.zeroshot_task`)."""
    from unirepclip.eval.zeroshot import build_classifier

    classnames, templates = zeroshot_task("shape")
    return build_classifier(model, tokenizer, classnames, templates, device=device)


def navon_decisions(model: torch.nn.Module, classifier: torch.Tensor, stimuli: NavonSet, *,
                    image_size: Optional[int] = None, batch_size: int = 64,
                    device: Union[str, torch.device] = "cpu") -> List[str]:
    """The shape each figure is classified as (zero-shot with ``classifier``), through the
    model's evaluation preprocessing at ``image_size`` (default: the figures' own size)."""
    from PIL import Image

    from unirepclip.data.sets import val_transform
    from unirepclip.eval.shape_bias import zero_shot_decisions
    from unirepclip.eval.zeroshot import encode_images

    transform = val_transform(model, image_size or stimuli.images.shape[1])
    tensors = torch.stack([transform(Image.fromarray(im)) for im in stimuli.images])
    loader = [tensors[i:i + batch_size] for i in range(0, len(tensors), batch_size)]
    features, _ = encode_images(model, loader, device=device, progress=False)
    classnames, _ = zeroshot_task("shape")
    return zero_shot_decisions(features, classifier, classnames)


def paired_difference(stimuli: NavonSet, decisions_a: Sequence[str], decisions_b: Sequence[str],
                      *, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Shape bias of ``a`` minus ``b`` on the same conflict figures (a paired bootstrap)."""
    idx = stimuli.select("conflict")
    g = np.asarray(stimuli.global_shape, dtype=object)[idx]
    loc = np.asarray(stimuli.local_shape, dtype=object)[idx]
    return bootstrap_difference(g, loc, np.asarray(list(decisions_a), dtype=object)[idx],
                                np.asarray(list(decisions_b), dtype=object)[idx],
                                n_boot=n_boot, seed=seed)


def _fmt(x: float, digits: int) -> str:
    return "undefined" if not math.isfinite(x) else f"{x:.{digits}f}"


def describe_difference(name_a: str, a: Interval, name_b: str, b: Interval,
                        difference: Optional[Interval] = None, *,
                        quantity: str = "shape bias", digits: int = 2) -> str:
    """One or two sentences: ``a``'s value against ``b``'s (each with its interval), which way
    and by how much they differ, and whether the interval of the difference (``a - b``, e.g.
    :func:`paired_difference`; without it, the two intervals) separates them."""
    level = f"{100 * a.confidence:g}%"

    def value(name: str, r: Interval) -> str:
        return (f"{name}'s {quantity} is {_fmt(r.estimate, digits)} ({level} interval "
                f"{_fmt(r.low, digits)}-{_fmt(r.high, digits)})")

    delta = a.estimate - b.estimate
    if not (math.isfinite(a.estimate) and math.isfinite(b.estimate)):
        return (f"{value(name_a, a)} and {value(name_b, b)}: the difference is undefined "
                f"(a model made no {quantity} decisions of either kind).")
    if round(delta, digits) == 0:
        way = f"the same as {name_b}'s to {digits} decimals"
    else:
        way = (f"{'higher' if delta > 0 else 'lower'} than {name_b}'s "
               f"({_fmt(b.estimate, digits)}) by {_fmt(abs(delta), digits)}")
    first = f"{value(name_a, a)}, {way}."
    if difference is not None:
        second = (f" The {level} interval of the difference, {_fmt(difference.low, digits)} to "
                  f"{_fmt(difference.high, digits)}, "
                  + ("is undefined: no verdict on whether these stimuli separate the two."
                     if not difference.defined else
                     "excludes 0: the stimuli distinguish the two." if difference.excludes(0.0)
                     else "includes 0: these stimuli do not distinguish the two."))
    else:
        separated = a.low > b.high or b.low > a.high
        second = (f" {name_b}'s interval is {_fmt(b.low, digits)}-{_fmt(b.high, digits)}; the "
                  "intervals " + ("cannot be compared (one is undefined)."
                                  if not (a.defined and b.defined) else
                                  "do not overlap: the stimuli distinguish the two." if separated
                                  else "overlap: these stimuli do not distinguish the two."))
    return first + second
