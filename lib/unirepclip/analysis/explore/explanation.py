"""The explain panel's answer: the attribution map of one image for one caption, by any method of
:data:`unirepclip.analysis.attribution.METHODS` (:func:`explain`), scored against the object's
mask when there is one (:func:`score_explanation`: mass in mask, pointing game with its tied
maxima and a tolerance, chance level), and, given a second caption, the contrastive map
(:func:`explain_contrast`).

The contrastive map is the attribution of the difference of the two similarities,
``cos(image, caption) - cos(image, contrast)``: where the image speaks for the caption *rather
than* for the other one. A plain map can look the same whatever the caption (the object draws the
attribution whichever word names it); the contrastive map shows what the words change. It is
computed as the attribution of the similarity to the text direction ``t_a - t_b`` (which
:class:`~unirepclip.analysis.attribution.SimilarityForward` normalizes) times ``|t_a - t_b|``:
for the unit text embeddings ``t_a``, ``t_b`` that is exactly the difference of the two
similarities, and every method here is positively homogeneous in the function it explains (IG,
occlusion and the gradients linear, Grad-CAM and the absolute gradient scale with a positive
factor), so the map is that of the difference itself; for integrated gradients it equals the
difference of the two plain maps (IG is linear in the function).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis import attribution
from unirepclip.analysis.attribution import metrics
from unirepclip.analysis.explore.search import encode_queries

__all__ = ["explain", "explain_contrast", "score_explanation", "mask_scores"]


def mask_scores(amap: np.ndarray, mask: np.ndarray, tolerance: float = metrics.ZHANG_TOLERANCE
                ) -> Dict[str, Any]:
    """A map scored against the object's mask: ``mass_in_mask``, ``pointing_game`` (the share of
    the tied maxima on the object), ``n_maxima`` and ``n_maxima_in_mask`` (its two counts),
    ``pointing_game_tolerant`` (the same within ``tolerance`` pixels: ``tolerance``) and
    ``chance`` (the mask's area share)."""
    n_max, hits = metrics.pointing_game_counts(amap, mask)
    return {"mass_in_mask": metrics.mass_in_mask(amap, mask), "pointing_game": hits / n_max,
            "n_maxima": n_max, "n_maxima_in_mask": hits,
            "pointing_game_tolerant": metrics.pointing_game(amap, mask, tolerance),
            "tolerance": tolerance, "chance": metrics.chance_level(mask)}


def _model_input(model: nn.Module, image: Any, transform: Callable,
                 device: Union[str, torch.device, None]) -> Tuple[torch.Tensor, torch.device]:
    """The image as the model's (1, 3, H, W) input, and the device to compute on."""
    x = transform(image)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError("explain: the transform must turn the image into a (3, H, W) tensor")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    return x.unsqueeze(0), dev


def _image_embedding(model: nn.Module, x: torch.Tensor, dev: torch.device) -> np.ndarray:
    with torch.no_grad():
        return model.encode_image(x.to(dev), normalize=True).float().cpu().numpy()[0]


def explain(model: nn.Module, tokenizer: Callable, image: Any, caption: str, *,
            method: str = "integrated_gradients", transform: Callable,
            mask: Optional[np.ndarray] = None, device: Union[str, torch.device, None] = None,
            **method_args: Any) -> Dict[str, Any]:
    """The attribution map of one image for one caption.

    Args:
        image: a PIL image; ``transform`` (the model's preprocessing) makes the model's input.
        method: a name of :data:`unirepclip.analysis.attribution.METHODS` with its own
            ``method_args`` (``n_steps``, ``stage``, ``window`` ...; one it does not take is a
            ``TypeError``) and :func:`~unirepclip.analysis.attribution.attribute`'s
            ``internal_batch_size`` (32).
        mask: the object's (H, W) mask in input pixels, if known; then the map is scored
            (:func:`score_explanation`, Zhang et al.'s tolerance for the tolerant pointing game).

    Returns ``{"map" (H, W) float32, "input" (H, W, 3) uint8 (the image as the model saw
    it), "method", "caption", "similarity", "note"}`` and, with a mask that fits, the scores of
    :func:`mask_scores`. :func:`explain_contrast` adds the contrastive map to such an answer.
    """
    from unirepclip.utils import denormalize_images

    if method not in attribution.METHODS:
        raise ValueError(f"method {method!r} is not one of {attribution.METHODS}")
    q, notes = encode_queries(model, tokenizer, [caption], device=device or "cpu")
    x, dev = _model_input(model, image, transform, device)
    img_emb = _image_embedding(model, x, dev)
    amap = attribution.attribute(method, model, x, torch.from_numpy(q), batch_size=1,
                                 device=dev, **method_args)[0]
    mean = std = None
    norm = [t for t in getattr(transform, "transforms", []) if hasattr(t, "mean")]
    if norm:
        mean, std = norm[-1].mean, norm[-1].std
    shown = denormalize_images(x, mean=mean, std=std)[0]
    out: Dict[str, Any] = {"map": amap, "input": shown, "method": method,
                           "caption": caption, "similarity": float(img_emb @ q[0]),
                           "note": notes[0]}
    return score_explanation(out, mask) if mask is not None else out


def explain_contrast(model: nn.Module, tokenizer: Callable, image: Any, caption: str,
                     contrast: str, *, method: str = "integrated_gradients", transform: Callable,
                     device: Union[str, torch.device, None] = None, **method_args: Any
                     ) -> Dict[str, Any]:
    """The contrastive map of one image: the attribution of ``cos(image, caption) -
    cos(image, contrast)`` (see the module docstring), by the same ``method`` and
    ``method_args`` as :func:`explain`. Returns ``{"contrast" (the second caption, spaces
    tidied), "contrast_similarity", "contrast_map" (H, W) float32}``, to add to
    :func:`explain`'s answer; two captions with the same text embedding are refused."""
    contrast = " ".join(str(contrast).split())
    q, _ = encode_queries(model, tokenizer, [caption, contrast], device=device or "cpu")
    diff = q[0].astype(np.float64) - q[1].astype(np.float64)
    norm = float(np.linalg.norm(diff))
    if norm < 1e-6:
        raise ValueError("the two captions have the same text embedding: there is nothing to "
                         "contrast; type a different second caption")
    x, dev = _model_input(model, image, transform, device)
    direction = torch.from_numpy((diff / norm).astype(np.float32))
    cmap = attribution.attribute(method, model, x, direction, batch_size=1, device=dev,
                                 **method_args)[0] * np.float32(norm)
    return {"contrast": contrast,
            "contrast_similarity": float(_image_embedding(model, x, dev) @ q[1]),
            "contrast_map": cmap}


def score_explanation(answer: Dict[str, Any], mask: Optional[np.ndarray],
          tolerance: float = metrics.ZHANG_TOLERANCE) -> Dict[str, Any]:
    """Score an answer of :func:`explain` against the object's ``mask`` in place (and return
    it): :func:`mask_scores` of its map, and of its contrastive map under ``"contrast_scores"``;
    a mask of another shape than the map is noted, not scored; no mask, no scores."""
    if mask is None:
        return answer
    m, amap = np.asarray(mask, dtype=bool), answer["map"]
    if m.shape != amap.shape:
        answer["note"] = (answer["note"] + "; " if answer["note"] else "") + (
            f"the mask ({m.shape[0]}x{m.shape[1]}) does not match the input "
            f"({amap.shape[0]}x{amap.shape[1]}): not scored")
        return answer
    answer.update(mask_scores(amap, m, tolerance))
    if "contrast_map" in answer:
        answer["contrast_scores"] = mask_scores(answer["contrast_map"], m, tolerance)
    return answer
