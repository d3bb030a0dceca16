"""Reference inputs for Integrated Gradients and occlusion: zero, grey, blurred.

Near the all-zero input (normalized space: the dataset mean colour) UniRepLKNet's stem can change
abruptly: with zero conv biases (as initialized) the LayerNorm after the first conv makes the
tower scale invariant there, so the whole change of the similarity sits near alpha = 0, where a
quadrature with few steps does not look, and IG is badly incomplete. Which baseline suits is
measured, not assumed (:mod:`.completeness`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

from unirepclip.analysis.params import BASELINES
from unirepclip.utils import normalization_stats

__all__ = ["BASELINES", "BaselineLike", "pixel_baseline", "blurred_baseline", "make_baseline"]


# a kind from BASELINES, a number, or a tensor broadcastable to the images (or one per image)
BaselineLike = Union[str, float, np.ndarray, torch.Tensor]


def pixel_baseline(value: float = 0.5, *, mean: Optional[Sequence[float]] = None,
                   std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The normalized input (1, 3, 1, 1) of a uniform image whose pixels are ``value`` in [0, 1].

    ``value=0.5`` is mid-grey. Normalization: ``(value - mean) / std`` with open_clip's OpenAI
    statistics by default (what every model here uses). Note that the normalized 0 is the
    dataset's mean colour, not grey.
    """
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"pixel_baseline: value must lie in [0, 1], got {value}")
    m, s = normalization_stats(mean, std)
    return (float(value) - m) / s


def blurred_baseline(images: Union[np.ndarray, torch.Tensor], sigma: float = 4.0) -> torch.Tensor:
    """A Gaussian-blurred copy of each image (same shape): a baseline that keeps the colours and
    the coarse layout but removes edges and shapes (Sturmfels et al., Distill 2020, discuss it).

    The kernel spans +-3 sigma (odd size); borders are reflected.
    """
    from torchvision.transforms.functional import gaussian_blur

    if float(sigma) <= 0:
        raise ValueError(f"blurred_baseline: sigma must be > 0, got {sigma}")
    x = torch.as_tensor(images).float()
    if x.dim() != 4:
        raise ValueError(f"blurred_baseline: images must be (N, C, H, W), got {tuple(x.shape)}")
    k = 2 * int(np.ceil(3 * float(sigma))) + 1
    k = min(k, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)  # reflection needs kernel <= image side
    return gaussian_blur(x, [k, k], [float(sigma), float(sigma)])


def make_baseline(kind: str, images: Union[np.ndarray, torch.Tensor], *, sigma: float = 4.0,
                  mean: Optional[Sequence[float]] = None,
                  std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """A named IG / occlusion baseline for ``images``: ``"zero"`` (all zeros in normalized space,
    i.e. the dataset mean colour), ``"grey"`` (:func:`pixel_baseline` 0.5) or ``"blur"``
    (:func:`blurred_baseline`, one per image: made for the very images attributed)."""
    if kind == "zero":
        return torch.zeros(1, 1, 1, 1)
    if kind == "grey":
        return pixel_baseline(0.5, mean=mean, std=std)
    if kind == "blur":
        return blurred_baseline(images, sigma)
    raise ValueError(f"make_baseline: kind must be one of {BASELINES}, got {kind!r}")


def resolve_baseline(baseline: BaselineLike, images: torch.Tensor) -> Union[float, torch.Tensor]:
    """A kind name becomes its tensor for ``images``; a number or tensor is kept as given."""
    if isinstance(baseline, str):
        return make_baseline(baseline, images)
    return baseline


def baseline_for_batch(baseline: Union[float, np.ndarray, torch.Tensor], x: torch.Tensor,
                       start: int) -> torch.Tensor:
    """The baseline of the batch ``x`` that starts at image ``start``, expanded to its shape (a
    per-image baseline (N, C, H, W) is sliced; anything else is broadcast)."""
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if b.dim() == 4 and b.shape[0] > 1:
        b = b[start:start + x.shape[0]]
    try:
        return b.expand_as(x).contiguous()
    except RuntimeError:
        raise ValueError(f"attribute: baseline of shape {tuple(b.shape)} does not broadcast to "
                         f"the images {tuple(x.shape)}") from None
