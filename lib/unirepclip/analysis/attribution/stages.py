"""Which stage of the image tower (a ViT: which block) for Grad-CAM? Score each against the
masks and take the best.

The last stage is the textbook choice, but at small inputs it is tiny (2 x 2 at 64 px), far
coarser than the objects. :func:`gradcam_stage_scores` scores every stage by the two mask metrics
(the mean of their ratios to chance), :func:`best_gradcam_stage` picks the best and
:func:`resolve_gradcam_stage` turns the notebook's ``gradcam_stage`` (``"auto"`` or a stage) into
the stage used.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis.attribution.metrics import mask_metrics
from unirepclip.analysis.attribution.methods import attribute
from unirepclip.models.towers import NotApplicable, tower_of

__all__ = ["gradcam_stage_scores", "gradcam_not_applicable", "best_gradcam_stage",
           "resolve_gradcam_stage"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _stage_map_sizes(model: nn.Module, image: torch.Tensor,
                     device: Union[str, torch.device, None]) -> Dict[int, Tuple[int, int]]:
    """(h, w) of each stage's map for one image of this size (the tower seam's grids)."""
    return dict(enumerate(tower_of(model).grids(tuple(image.shape[-2:]), device=device)))


def gradcam_stage_scores(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                         masks: ArrayLike, stages: Optional[Sequence[int]] = None,
                         **common: Any) -> Dict[int, Dict[str, Any]]:
    """:func:`mask_metrics` of Grad-CAM on each stage, with ``score``: the mean of the two
    metrics over their chance level (what :func:`best_gradcam_stage` maximizes), and
    ``map_size``: the stage's (h, w) at these images' size. ``common`` are :func:`attribute`'s
    shared arguments."""
    if stages is None:   # every depth whose map reaches the embedding
        stages = [d for d in range(tower_of(model).depth_count)
                  if d not in gradcam_not_applicable(model)]
    x = torch.as_tensor(images)
    sizes = _stage_map_sizes(model, x[:1], common.get("device"))
    out: Dict[int, Dict[str, Any]] = {}
    for s in stages:
        maps = attribute("gradcam", model, x, text_embeddings, stage=int(s), **common)
        r: Dict[str, Any] = mask_metrics(maps, masks)
        r["score"] = 0.5 * (r["mass_in_mask"] + r["pointing_game"]) / r["chance"]
        r["map_size"] = sizes[int(s)]
        out[int(s)] = r
    return out


def gradcam_not_applicable(model: nn.Module) -> Dict[int, str]:
    """The depths Grad-CAM does not apply to, each with its one line naming the tower and the
    method: those whose map never reaches the embedding (the tower seam's
    :meth:`~unirepclip.models.towers.Tower.unused_map_note`; a ViT that pools its class token,
    its last block). Empty for a ConvNet."""
    tower, out = tower_of(model), {}
    for d in range(tower.depth_count):
        try:
            tower.check_map_used(d, "Grad-CAM")
        except NotApplicable as e:
            out[d] = str(e)
    return out


def best_gradcam_stage(scores: Mapping[int, Mapping[str, float]]) -> int:
    """The stage with the highest ``score`` (ties: the later stage, the textbook choice)."""
    if not scores:
        raise ValueError("best_gradcam_stage: no scores")
    return max(scores, key=lambda s: (np.nan_to_num(scores[s]["score"], nan=-np.inf), s))


def resolve_gradcam_stage(gradcam_stage: Union[int, str],
                          scores: Mapping[int, Mapping[str, float]]) -> int:
    """The stage to use: ``"auto"`` is the measured best (:func:`best_gradcam_stage`), a stage
    number is taken as given (it must be one of the measured stages)."""
    if gradcam_stage == "auto":
        return best_gradcam_stage(scores)
    if isinstance(gradcam_stage, bool) or not isinstance(gradcam_stage, (int, np.integer)) \
            or int(gradcam_stage) not in scores:
        raise ValueError(f"gradcam_stage must be 'auto' or one of the stages {sorted(scores)}, "
                         f"got {gradcam_stage!r}")
    return int(gradcam_stage)
