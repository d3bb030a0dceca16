"""Are the maps right? Metrics of an attribution map against the object's mask.

The synthetic world keeps each object's exact pixel mask, so a map can be scored, not only drawn:
:func:`mass_in_mask` (the share of the positive attribution on the object), :func:`pointing_game`
(Zhang et al., 2016: is the maximum on the object?), and :func:`chance_level`, the mask's area
share, which is what both give for a map that knows nothing. :func:`mask_metrics` averages them
over images.

The pointing game's tie rule: when the maximum is reached at several pixels, the score is the
share of them on the object (:func:`pointing_game_counts` gives the two counts), so a constant map
scores the chance level instead of whatever pixel comes first. Zhang et al. count a maximum within
15 pixels of the object as a hit (:data:`ZHANG_TOLERANCE`, their images about 224 pixels wide);
``tolerance=0`` (the default) asks for the object itself.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import numpy as np
import torch

__all__ = ["mass_in_mask", "pointing_game", "pointing_game_counts", "chance_level",
           "mask_metrics", "ZHANG_TOLERANCE"]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The pointing game's usual tolerance in pixels (Zhang et al., 2016, "Top-down neural attention by
#: excitation backprop"): a maximum this close to the object counts as on it.
ZHANG_TOLERANCE = 15


def _check_pair(attr: ArrayLike, mask: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    a = np.asarray(attr.detach().cpu() if isinstance(attr, torch.Tensor) else attr,
                   dtype=np.float64)
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if a.shape != m.shape:
        raise ValueError(f"attribution map of shape {a.shape} and mask of shape {m.shape} differ")
    if not np.all(np.isfinite(a)):
        raise ValueError("attribution map holds NaN or infinite values")
    return a, m


def mass_in_mask(attr: ArrayLike, mask: ArrayLike) -> float:
    """Share of the positive attribution mass that lies inside the mask (NaN if there is none).

    Negative values (evidence against the caption) are left out: the question is where the
    evidence *for* the match sits. Chance level: :func:`chance_level`.
    """
    a, m = _check_pair(attr, mask)
    pos = np.clip(a, 0.0, None)
    total = pos.sum()
    return float(pos[m].sum() / total) if total > 0 else float("nan")


def _near(m: np.ndarray, tolerance: float) -> np.ndarray:
    """The pixels within ``tolerance`` (Euclidean, in pixels) of the mask, the mask included."""
    if isinstance(tolerance, bool) or not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"pointing game: tolerance must be a number of pixels >= 0, got "
                         f"{tolerance!r}")
    if tolerance == 0 or not m.any():
        return m
    from scipy.ndimage import distance_transform_edt
    return distance_transform_edt(~m) <= tolerance  # distance of each pixel to the object


def pointing_game_counts(attr: ArrayLike, mask: ArrayLike, tolerance: float = 0
                         ) -> Tuple[int, int]:
    """``(maxima, hits)``: how many pixels reach the map's maximum, and how many of them lie on
    the object (within ``tolerance`` pixels of the mask)."""
    a, m = _check_pair(attr, mask)
    top = a == a.max()
    return int(top.sum()), int(_near(m, tolerance)[top].sum())


def pointing_game(attr: ArrayLike, mask: ArrayLike, tolerance: float = 0) -> float:
    """1 if the map's maximum lies inside the mask (or within ``tolerance`` pixels of it), else 0.

    When the maximum is reached at several pixels, the score is the share of them inside the mask
    (so a constant map scores exactly the chance level instead of an arbitrary first pixel).
    """
    maxima, hits = pointing_game_counts(attr, mask, tolerance)
    return float(hits / maxima)


def chance_level(mask: ArrayLike) -> float:
    """The mask's area share: the expected score of both metrics for a map that knows nothing."""
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if m.size == 0:
        raise ValueError("mask is empty")
    return float(m.mean())


def mask_metrics(attrs: ArrayLike, masks: ArrayLike) -> Dict[str, float]:
    """Means over images of :func:`mass_in_mask`, :func:`pointing_game` and :func:`chance_level`.

    ``attrs`` and ``masks`` are (N, H, W). Images with no positive mass are left out of the mass
    mean and counted in ``n_no_positive_mass``.
    """
    a = np.asarray(attrs.detach().cpu() if isinstance(attrs, torch.Tensor) else attrs)
    m = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if a.ndim != 3 or a.shape != m.shape:
        raise ValueError(f"mask_metrics: attrs and masks must both be (N, H, W), got "
                         f"{a.shape} and {m.shape}")
    if a.shape[0] == 0:
        raise ValueError("mask_metrics: no images")
    mass = np.array([mass_in_mask(x, y) for x, y in zip(a, m)])
    point = np.array([pointing_game(x, y) for x, y in zip(a, m)])
    chance = np.array([chance_level(y) for y in m])
    defined = ~np.isnan(mass)
    return {
        "mass_in_mask": float(mass[defined].mean()) if defined.any() else float("nan"),
        "pointing_game": float(point.mean()),
        "chance": float(chance.mean()),
        "n": int(a.shape[0]),
        "n_no_positive_mass": int((~defined).sum()),
    }