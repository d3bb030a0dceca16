"""The explain panel's answer: the attribution map of one image for one caption, by any method of
:data:`unirepclip.analysis.attribution.METHODS`, scored against the object's mask when there is
one (mass in mask, pointing game, chance level)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis import attribution
from unirepclip.analysis.explore.search import encode_queries

__all__ = ["explain"]


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
        mask: the object's (H, W) mask in input pixels, if known; then the map is scored.

    Returns ``{"map" (H, W) float32, "input" (H, W, 3) uint8 (the image as the model saw
    it), "method", "caption", "similarity", "note"}`` and, with a mask that fits,
    ``"mass_in_mask"``, ``"pointing_game"``, ``"chance"``.
    """
    from unirepclip.utils import denormalize_images

    if method not in attribution.METHODS:
        raise ValueError(f"method {method!r} is not one of {attribution.METHODS}")
    q, notes = encode_queries(model, tokenizer, [caption], device=device or "cpu")
    x = transform(image)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError("explain: the transform must turn the image into a (3, H, W) tensor")
    x = x.unsqueeze(0)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with torch.no_grad():
        img_emb = model.encode_image(x.to(dev), normalize=True).float().cpu().numpy()[0]
    amap = attribution.attribute(method, model, x, torch.from_numpy(q), batch_size=1, device=dev,
                                 **method_args)[0]
    mean = std = None
    norm = [t for t in getattr(transform, "transforms", []) if hasattr(t, "mean")]
    if norm:
        mean, std = norm[-1].mean, norm[-1].std
    shown = denormalize_images(x, mean=mean, std=std)[0]
    out: Dict[str, Any] = {"map": amap, "input": shown, "method": method,
                           "caption": caption, "similarity": float(img_emb @ q[0]),
                           "note": notes[0]}
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == amap.shape:
            out["mass_in_mask"] = attribution.mass_in_mask(amap, m)
            out["pointing_game"] = attribution.pointing_game(amap, m)
            out["chance"] = attribution.chance_level(m)
        else:
            out["note"] = (out["note"] + "; " if out["note"] else "") + (
                f"the mask ({m.shape[0]}x{m.shape[1]}) does not match the input "
                f"({amap.shape[0]}x{amap.shape[1]}): not scored")
    return out
