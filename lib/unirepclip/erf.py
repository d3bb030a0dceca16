"""Effective receptive field (ERF), measured the way RepLKNet measured it.

Luo et al., "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks"
(NeurIPS 2016) define the ERF of an output unit as the gradient of that unit with respect to the
input pixels. RepLKNet (Ding et al., CVPR 2022, appendix) turned it into a comparable number; this
module follows that procedure as stated in ``shared/REFERENCE.md``:

1. for each image, forward to a stage's feature map ``out`` (N, C, h, w);
2. take the centre position ``out[:, :, h // 2, w // 2]``, ReLU it and sum over channels;
3. the gradient of that scalar w.r.t. the input; keep its positive part and sum over the colour
   channels -> an H x W map;
4. average the maps over images, skipping (and counting) images whose map holds a NaN.

The analysis (:func:`area_ratios`) takes ``log10(map + 1)``, divides by its maximum, and grows a
centred square until it holds a share ``t`` of the total, for t = 20, 30, 50, 99 %. Note that
``log10(x + 1)`` is not scale invariant: maps are comparable only between models whose gradients
have similar magnitudes (which is how the published table was made, and why it is reproduced here
unchanged).

Batching: images are pushed through the network in batches and the per-image scalars are summed
before one backward pass. That gives each image its own gradient only when images do not interact
inside the network. In UniRepLKNet the only cross-image layer is BatchNorm in training mode, so
:func:`compute_erf` switches a module ``feature_fn`` to eval mode for the measurement (and restores
its modes afterwards). A plain callable cannot be inspected: its caller must make sure it is in
eval mode.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

__all__ = [
    "compute_erf",
    "stage_feature_fn",
    "StageFeatures",
    "normalize_erf",
    "area_ratios",
    "plot_erf",
    "PUBLISHED_AREA_RATIOS",
    "THRESHOLDS",
]

THRESHOLDS: Tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)

# RepLKNet arXiv v1, table 10: area ratios (fractions) at t = 20/30/50/99 %, measured on the last
# stage at 1024 x 1024 over 50 ImageNet validation images.
PUBLISHED_AREA_RATIOS: Dict[str, Dict[str, float]] = {
    "ResNet-101": {"t20": 0.010, "t30": 0.017, "t50": 0.035, "t99": 0.234},
    "ResNet-152": {"t20": 0.013, "t30": 0.021, "t50": 0.045, "t99": 0.349},
    "RepLKNet-13": {"t20": 0.102, "t30": 0.158, "t50": 0.285, "t99": 0.963},
    "RepLKNet-31": {"t20": 0.150, "t30": 0.234, "t50": 0.414, "t99": 0.986},
}

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32",) + tuple(_AUTOCAST_DTYPES)


# ----------------------------------------------------------------------------------------------
# Feature functions
# ----------------------------------------------------------------------------------------------

class StageFeatures(nn.Module):
    """``images -> trunk stage map`` (N, C, h, w) of a UniRepLKNet trunk, as an ``nn.Module``.

    Being a module (holding the trunk) lets :func:`compute_erf` see and manage its train / eval
    mode, and ``.to(device)`` moves the trunk.
    """

    def __init__(self, trunk: nn.Module, stage: int):
        super().__init__()
        n_stages = len(getattr(trunk, "stages", ()))
        if not hasattr(trunk, "forward_intermediates") or n_stages == 0:
            raise TypeError(f"stage_feature_fn: trunk must be a UniRepLKNet trunk (with "
                            f"forward_intermediates and stages), got {type(trunk).__name__}")
        if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) \
                or not 0 <= int(stage) < n_stages:
            raise ValueError(f"stage_feature_fn: stage must be an int in 0..{n_stages - 1}, "
                             f"got {stage!r}")
        self.trunk = trunk
        self.stage = int(stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_intermediates(x, indices=[self.stage], stop_early=True,
                                                intermediates_only=True)[0]


def _find_trunk(model: nn.Module) -> nn.Module:
    """The UniRepLKNet trunk of a trunk, an open_clip ``TimmModel`` or a ``CLIP`` model."""
    for path in ("", "trunk", "visual.trunk"):
        m = model
        for attr in filter(None, path.split(".")):
            m = getattr(m, attr, None)
        if m is not None and hasattr(m, "forward_intermediates") and hasattr(m, "stages"):
            return m
    raise TypeError(f"expected a UniRepLKNet trunk, or a model with .trunk / .visual.trunk, got "
                    f"{type(model).__name__}")


def stage_feature_fn(trunk: nn.Module, stage: int) -> StageFeatures:
    """The feature function for :func:`compute_erf`: the output of stage ``stage`` (0..3).

    ``trunk`` is a UniRepLKNet; a CLIP model or an open_clip ``TimmModel`` is accepted too (its
    ``visual.trunk`` / ``trunk`` is used). The map is taken before any final norm, as the
    reference procedure does.
    """
    return StageFeatures(_find_trunk(trunk), stage)


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------

def _iter_batches(images, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, C, H, W) batches from an array, or an iterable of tensors or (images, ...) tuples."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4:
            raise ValueError(f"compute_erf: images must have shape (N, C, H, W), got "
                             f"{tuple(images.shape)}")
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size]
        return
    for item in images:
        if isinstance(item, (tuple, list)):
            item = item[0]  # a DataLoader's (images, labels)
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"compute_erf: images must yield tensors, got {type(item).__name__}")
        if item.dim() == 3:
            item = item.unsqueeze(0)
        if item.dim() != 4:
            raise ValueError(f"compute_erf: each image batch must have shape (N, C, H, W), got "
                             f"{tuple(item.shape)}")
        for i in range(0, item.shape[0], batch_size):
            yield item[i:i + batch_size]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` (and all children) in eval mode, restoring each one's mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _module_device(fn) -> Optional[torch.device]:
    if isinstance(fn, nn.Module):
        p = next(fn.parameters(), None)
        if p is not None:
            return p.device
    return None


def compute_erf(
        feature_fn: Callable[[torch.Tensor], torch.Tensor],
        images: Union[torch.Tensor, np.ndarray, Iterable],
        *,
        batch_size: int = 8,
        device: Union[str, torch.device, None] = None,
        precision: str = "fp32",
        max_images: Optional[int] = None,
        progress: bool = True,
        return_counts: bool = False,
) -> Union[np.ndarray, Tuple[np.ndarray, int, int]]:
    """Mean effective receptive field map (H, W) of ``feature_fn`` over ``images``.

    Args:
        feature_fn: ``images (N, C, H, W) -> feature map (N, C', h, w)``; e.g.
            :func:`stage_feature_fn`. An ``nn.Module`` is switched to eval mode for the measurement
            (see the module docstring for why) and restored afterwards.
        images: a tensor / array (N, C, H, W), or an iterable (a DataLoader) yielding tensors or
            ``(images, labels)`` tuples. All images must share one size.
        batch_size: images per forward/backward pass (bounds memory; does not change the result).
        device: where to compute; default the device of ``feature_fn``'s parameters (or CPU).
            The module is not moved: move it yourself.
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` for autocast in that dtype (the gradient
            and the average stay float32 / float64).
        max_images: stop after this many images (counting skipped ones).
        progress: show a tqdm bar.
        return_counts: also return ``(n_used, n_nan)``.

    Returns:
        The float64 map (H, W), the mean over images of the per-image maps; with
        ``return_counts``, ``(map, n_used, n_nan)``.

    Raises:
        ValueError: bad arguments, a feature map that is not 4-D, or every image NaN.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"compute_erf: precision must be one of {PRECISIONS}, got {precision!r}")
    if int(batch_size) < 1:
        raise ValueError(f"compute_erf: batch_size must be >= 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"compute_erf: max_images must be >= 1, got {max_images}")
    dev = torch.device(device) if device is not None else (_module_device(feature_fn)
                                                           or torch.device("cpu"))
    total = None
    if isinstance(images, (torch.Tensor, np.ndarray)):
        total = images.shape[0] if images.ndim == 4 else 1
    elif hasattr(images, "__len__") and hasattr(images, "dataset"):
        total = len(images.dataset)
    if max_images is not None and total is not None:
        total = min(total, max_images)

    acc: Optional[torch.Tensor] = None
    n_used = n_nan = n_seen = 0
    ctx = _eval_mode(feature_fn) if isinstance(feature_fn, nn.Module) else contextlib.nullcontext()
    bar = tqdm(total=total, desc="ERF", unit="img", disable=not progress)
    with ctx, bar:
        for batch in _iter_batches(images, int(batch_size)):
            if max_images is not None:
                if n_seen >= max_images:
                    break
                batch = batch[:max_images - n_seen]
            x = batch.to(dev, torch.float32).detach().requires_grad_(True)
            if acc is not None and tuple(x.shape[-2:]) != tuple(acc.shape):
                raise ValueError(f"compute_erf: all images must share one size; got "
                                 f"{tuple(x.shape[-2:])} after {tuple(acc.shape)}")
            if precision == "fp32":
                autocast = contextlib.nullcontext()
            else:
                autocast = torch.autocast(dev.type, dtype=_AUTOCAST_DTYPES[precision])
            with torch.enable_grad(), autocast:
                out = feature_fn(x)
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise ValueError(f"compute_erf: feature_fn must return a (N, C, h, w) tensor, got "
                                 f"{getattr(out, 'shape', type(out).__name__)}")
            h, w = out.shape[-2:]
            # Sum of per-image scalars: each image's gradient is its own (images do not interact).
            centre = torch.relu(out[:, :, h // 2, w // 2].float()).sum()
            (grad,) = torch.autograd.grad(centre, x)
            maps = grad.clamp(min=0).sum(dim=1).double()  # NaN survives clamp, so it is detected
            bad = torch.isnan(maps).flatten(1).any(dim=1)
            n_nan += int(bad.sum())
            good = maps[~bad]
            n_used += good.shape[0]
            n_seen += x.shape[0]
            if good.shape[0]:
                s = good.sum(dim=0).cpu()
                acc = s if acc is None else acc + s
            elif acc is None:
                acc = torch.zeros(maps.shape[-2:], dtype=torch.float64)
            bar.update(x.shape[0])
            bar.set_postfix(nan=n_nan)
    if n_seen == 0:
        raise ValueError("compute_erf: images is empty")
    if n_used == 0:
        raise ValueError(f"compute_erf: every one of the {n_nan} images gave a NaN map")
    erf = (acc / n_used).numpy()
    return (erf, n_used, n_nan) if return_counts else erf


# ----------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------

def normalize_erf(erf: np.ndarray) -> np.ndarray:
    """``log10(erf + 1)`` divided by its maximum, as RepLKNet shows and analyses ERFs."""
    a = np.asarray(erf, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"erf must be a 2-D (H, W) map, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("erf holds NaN or infinite values")
    if np.any(a < 0):
        raise ValueError("erf must be non-negative (it is a sum of positive gradient parts)")
    a = np.log10(a + 1.0)
    peak = a.max()
    if peak <= 0:
        raise ValueError("erf is zero everywhere: nothing to normalize")
    return a / peak


def _key(t: float) -> str:
    pct = 100 * t
    return f"t{int(round(pct))}" if abs(pct - round(pct)) < 1e-9 else f"t{pct:g}"


def area_ratios(erf: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
                ) -> Dict[str, Dict[str, float]]:
    """Side and area ratio of the smallest centred square holding a share t of the ERF.

    The map is first normalized with :func:`normalize_erf`. The square is centred on pixel
    ``(H // 2, W // 2)`` (where the centre output unit looks when the network is
    translation-equivariant and padded symmetrically) and grows one pixel per side at a time:
    sides 1, 3, 5, ... The first square whose sum reaches ``t`` of the total (``>=``) wins.

    A square that reaches the border is clipped to the map; ``area_ratio`` is then the clipped area
    over ``H * W`` (so at most 1), while ``side`` stays the nominal ``2 i + 1``. For squares that
    fit, ``area_ratio = side**2 / (H * W)`` exactly as published.

    Returns:
        ``{"t20": {"side": 5, "area_ratio": 0.0061}, "t30": ..., ...}``; keys are ``t`` in percent.
    """
    a = normalize_erf(erf)
    thresholds = tuple(float(t) for t in thresholds)
    for t in thresholds:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"area_ratios: thresholds must lie in (0, 1], got {t}")
    h, w = a.shape
    cy, cx = h // 2, w // 2
    total = a.sum()
    # Summed-area table: the sum of any clipped square in O(1).
    sat = np.zeros((h + 1, w + 1))
    sat[1:, 1:] = a.cumsum(0).cumsum(1)
    r_max = max(cy, cx, h - 1 - cy, w - 1 - cx)
    shares, areas = [], []
    for r in range(r_max + 1):
        y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
        x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
        s = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
        shares.append(s / total)
        areas.append((y1 - y0) * (x1 - x0))
    # Guard the last (whole-map) square against round-off in the summed-area table.
    shares[-1] = 1.0
    shares = np.asarray(shares)
    out: Dict[str, Dict[str, float]] = {}
    for t in thresholds:
        # small tolerance: a share equal to t up to round-off counts as holding it
        r = int(np.argmax(shares >= t - 1e-12))
        out[_key(t)] = {"side": 2 * r + 1, "area_ratio": areas[r] / (h * w)}
    return out


def plot_erf(ax, erf: np.ndarray, title: Optional[str] = None, *, cmap: str = "RdYlGn",
             colorbar: bool = True):
    """Draw the normalized ERF (``log10(x + 1) / max``) on a matplotlib ``ax``.

    Axes are labelled in input pixels, with a colour bar; returns the image artist.
    """
    a = normalize_erf(erf)
    im = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xlabel("x (input px)")
    ax.set_ylabel("y (input px)")
    if title:
        ax.set_title(title)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("log10(ERF + 1) / max")
    return im
