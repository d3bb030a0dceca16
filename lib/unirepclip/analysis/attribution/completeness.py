"""Is Integrated Gradients' path integral accurate? Completeness per baseline.

IG integrates the gradient from a baseline ``x'`` to the input ``x``; by construction its
attributions sum to ``f(x) - f(x')`` (Sundararajan et al. 2017). With a finite number of steps that
sum is only approximate, and how good the approximation is depends on the path, i.e. on the
baseline. :func:`compare_baselines` measures the relative completeness error
``|sum(map) - (f(x) - f(x'))| / |f(x) - f(x')|`` per baseline (captum's convergence delta over the
gap of the same batch, :func:`integrated_gradients_completeness`); :func:`completeness_summary`
says whether the error of the baseline in use is too large (:func:`completeness_is_large`). The
baseline itself stays the caller's choice: it decides the question the map answers, not a score.
:func:`completeness_error` checks any given maps against the same definition.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis.attribution.baselines import (BASELINES, BaselineLike,
                                                        baseline_for_batch, make_baseline)
from unirepclip.analysis.attribution.methods import (SimilarityForward, as_text,
                                                      integrated_gradients_completeness)
from unirepclip.utils import eval_mode

__all__ = ["COMPLETENESS_TOLERANCE", "completeness_error", "compare_baselines",
           "completeness_is_large", "completeness_summary"]

ArrayLike = Union[np.ndarray, torch.Tensor]

# A median relative error above 5 % means the quadrature misses a visible share of the gap:
# the map no longer explains f(x) - f(x') and ig_steps should grow.
COMPLETENESS_TOLERANCE = 0.05


@torch.no_grad()
def completeness_error(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                       maps: ArrayLike, baseline: BaselineLike = 0.0, *,
                       device: Union[str, torch.device, None] = None, return_gap: bool = False
                       ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Per image, ``|sum(map) - (f(x) - f(baseline))| / |f(x) - f(baseline)|`` for given maps.

    ``maps`` must keep the sign (IG's ``"sum"`` channel reduction); ``f`` is the image-text
    cosine similarity. ``return_gap`` also returns the per-image gaps ``f(x) - f(baseline)``.
    """
    x = torch.as_tensor(images).float()
    n = x.shape[0]
    a = np.asarray(maps, dtype=np.float64)
    if a.shape[0] != n:
        raise ValueError(f"completeness_error: {a.shape[0]} maps for {n} images")
    param = next(model.parameters())
    dev = torch.device(device) if device is not None else param.device
    text = as_text(text_embeddings).expand(n, -1).to(dev)
    forward = SimilarityForward(model)
    with eval_mode(model):
        xs = x.to(dev)
        base = baseline_for_batch(make_baseline(baseline, x) if isinstance(baseline, str)
                                  else baseline, xs, 0)
        gap = (forward(xs, text) - forward(base, text)).double().cpu().numpy()
    total = a.reshape(n, -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(total - gap) / np.abs(gap)
    return (err, gap) if return_gap else err


def compare_baselines(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                      kinds: Sequence[str] = BASELINES, *, n_steps: int = 32,
                      sigma: float = 4.0, **common: Any) -> Dict[str, Dict[str, Any]]:
    """IG with each named baseline (:func:`make_baseline`), checked for completeness.

    Returns ``{kind: {"maps": (N, H, W), "error": per-image relative completeness error,
    "median_error", "max_error", "gap": per-image f(x) - f(baseline), "mean_gap", "n_steps"}}``;
    ``common`` are :func:`attribute`'s shared arguments (``batch_size``,
    ``internal_batch_size``, ``device``). The gap says how much of the similarity a baseline
    leaves to explain: a baseline that already matches the caption (a blurred image keeps the
    colours) is easy to integrate from but explains little.
    """
    out: Dict[str, Dict[str, Any]] = {}
    x = torch.as_tensor(images)
    for kind in kinds:
        r = integrated_gradients_completeness(model, x, text_embeddings, n_steps=n_steps,
                                              baseline=make_baseline(kind, x, sigma=sigma),
                                              **common)
        err, gap = r["error"], r["gap"]
        out[kind] = {"maps": r["maps"], "error": err, "median_error": float(np.nanmedian(err)),
                     "max_error": float(np.nanmax(err)), "gap": gap,
                     "mean_gap": float(np.mean(gap)), "n_steps": int(n_steps)}
    return out


def completeness_is_large(error: float, tolerance: float = COMPLETENESS_TOLERANCE) -> bool:
    """Whether a relative completeness error is too large to trust the map's arithmetic: above
    ``tolerance``, or undefined (NaN: a zero gap leaves nothing to check)."""
    return not float(error) <= float(tolerance)


def completeness_summary(checks: Mapping[str, Mapping[str, Any]], used: str, *,
                         tolerance: float = COMPLETENESS_TOLERANCE) -> Dict[str, Any]:
    """The baseline comparison of :func:`compare_baselines` as a plain dict, with the verdict on
    the baseline ``used`` (the notebook's ``ig_baseline``).

    Returns ``{"used", "n_steps", "tolerance", "used_median_error", "large": bool,
    "baselines": {kind: {"mean_gap", "median_error", "max_error"}}}``.
    """
    if used not in checks:
        raise ValueError(f"completeness_summary: ig_baseline {used!r} was not measured; "
                         f"measured: {list(checks)}")
    error = float(checks[used]["median_error"])
    return {
        "used": used,
        "n_steps": checks[used].get("n_steps"),
        "tolerance": float(tolerance),
        "used_median_error": error,
        "large": completeness_is_large(error, tolerance),
        "baselines": {k: {f: float(v[f]) for f in ("mean_gap", "median_error", "max_error")}
                      for k, v in checks.items()},
    }
