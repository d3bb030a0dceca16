"""The explain panel's answer: the attribution map of one image for one caption, by any method of
:data:`unirepclip.analysis.attribution.METHODS`, scored against the object's mask when there is
one (mass in mask, pointing game with its tied maxima and a tolerance, chance level), and, given a
second caption, the contrastive map beside it.

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

from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis import attribution
from unirepclip.analysis.attribution import metrics
from unirepclip.analysis.explore.search import encode_queries

__all__ = ["explain", "mask_scores"]


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


def _contrast_map(model: nn.Module, x: torch.Tensor, q: np.ndarray, method: str,
                  dev: torch.device, method_args: Dict[str, Any]) -> np.ndarray:
    """The attribution of ``cos(image, q[0]) - cos(image, q[1])`` (see the module docstring)."""
    diff = q[0].astype(np.float64) - q[1].astype(np.float64)
    norm = float(np.linalg.norm(diff))
    if norm < 1e-6:
        raise ValueError("the two captions have the same text embedding: there is nothing to "
                         "contrast; type a different second caption")
    direction = torch.from_numpy((diff / norm).astype(np.float32))
    return attribution.attribute(method, model, x, direction, batch_size=1, device=dev,
                                 **method_args)[0] * np.float32(norm)


def explain(model: nn.Module, tokenizer: Callable, image: Any, caption: str, *,
            method: str = "integrated_gradients", transform: Callable,
            mask: Optional[np.ndarray] = None, device: Union[str, torch.device, None] = None,
            contrast: Optional[str] = None, tolerance: float = metrics.ZHANG_TOLERANCE,
            **method_args: Any) -> Dict[str, Any]:
    """The attribution map of one image for one caption.

    Args:
        image: a PIL image; ``transform`` (the model's preprocessing) makes the model's input.
        method: a name of :data:`unirepclip.analysis.attribution.METHODS` with its own
            ``method_args`` (``n_steps``, ``stage``, ``window`` ...; one it does not take is a
            ``TypeError``) and :func:`~unirepclip.analysis.attribution.attribute`'s
            ``internal_batch_size`` (32).
        mask: the object's (H, W) mask in input pixels, if known; then the map is scored
            (:func:`mask_scores`, the tolerant pointing game within ``tolerance`` pixels).
        contrast: a second caption: the answer then holds the contrastive map too.

    Returns ``{"map" (H, W) float32, "input" (H, W, 3) uint8 (the image as the model saw
    it), "method", "caption", "similarity", "note"}``, with a mask that fits the scores of
    :func:`mask_scores`, and with ``contrast`` also ``"contrast"`` (the second caption),
    ``"contrast_similarity"``, ``"contrast_map"`` and its scores under ``"contrast_scores"``.
    """
    from unirepclip.utils import denormalize_images

    if method not in attribution.METHODS:
        raise ValueError(f"method {method!r} is not one of {attribution.METHODS}")
    contrast = " ".join(str(contrast).split()) if contrast is not None else ""
    texts = [caption, contrast] if contrast else [caption]
    q, notes = encode_queries(model, tokenizer, texts, device=device or "cpu")
    x = transform(image)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError("explain: the transform must turn the image into a (3, H, W) tensor")
    x = x.unsqueeze(0)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with torch.no_grad():
        img_emb = model.encode_image(x.to(dev), normalize=True).float().cpu().numpy()[0]
    amap = attribution.attribute(method, model, x, torch.from_numpy(q[:1]), batch_size=1,
                                 device=dev, **method_args)[0]
    mean = std = None
    norm = [t for t in getattr(transform, "transforms", []) if hasattr(t, "mean")]
    if norm:
        mean, std = norm[-1].mean, norm[-1].std
    shown = denormalize_images(x, mean=mean, std=std)[0]
    out: Dict[str, Any] = {"map": amap, "input": shown, "method": method,
                           "caption": caption, "similarity": float(img_emb @ q[0]),
                           "note": "; ".join(n for n in notes if n)}
    if contrast:
        out.update(contrast=contrast, contrast_similarity=float(img_emb @ q[1]),
                   contrast_map=_contrast_map(model, x, q, method, dev, method_args))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == amap.shape:
            out.update(mask_scores(amap, m, tolerance))
            if contrast:
                out["contrast_scores"] = mask_scores(out["contrast_map"], m, tolerance)
        else:
            out["note"] = (out["note"] + "; " if out["note"] else "") + (
                f"the mask ({m.shape[0]}x{m.shape[1]}) does not match the input "
                f"({amap.shape[0]}x{amap.shape[1]}): not scored")
    return out
