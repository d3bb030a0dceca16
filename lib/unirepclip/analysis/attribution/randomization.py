"""Do the maps depend on the model? Cascading model randomization (Adebayo et al. 2018).

Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): on a copy of the image tower the
weights are replaced by random ones cumulatively from the top; a method whose map still correlates
strongly with the original once every weight is random is flagged *insensitive*: it shows the
image, not the model.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from unirepclip.analysis.attribution.methods import METHODS, attribute
from unirepclip.models.towers import tower_of

__all__ = ["randomization_steps", "cascading_randomization", "cascading_randomization_all"]

ArrayLike = Union[np.ndarray, torch.Tensor]
class _ImageTowerOnly(nn.Module):
    """``encode_image`` of a CLIP without its text tower: what randomization needs to copy."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        z = self.visual(images)
        return F.normalize(z, dim=-1) if normalize else z


def randomization_steps(model: nn.Module) -> List[Tuple[str, List[nn.Module]]]:
    """The cascade, top down, as the image tower's seam gives it
    (:meth:`unirepclip.models.towers.Tower.randomization_steps`): ``head`` (final norm,
    projection, pooling), then the stages (UniRepLKNet: ``stage3`` ... ``stage0``, each with the
    downsampling layer before it) or a ViT's blocks (``block{L-1}`` ... ``block0``), then
    ``stem``. Returns ``[(name, modules or parameters), ...]``."""
    return tower_of(model).randomization_steps()


@torch.no_grad()
def _randomize(modules: Sequence[nn.Module], gen: torch.Generator) -> None:
    """Replace every parameter by Gaussian noise with that tensor's own mean and std.

    Matching each tensor's scale keeps the network in its numerical regime (a trained layer
    scale stays a layer scale, not 1e-6 nor 1), so a map that still does not change is not
    excused by dead layers. A tensor with no spread (a fresh BatchNorm weight, a zero bias)
    stays as it is: it is what the model's own initialization gives anyway.
    """
    seen = set()
    for mod in modules:
        for p in ([mod] if isinstance(mod, nn.Parameter) else mod.parameters()):
            if id(p) in seen:
                continue
            seen.add(id(p))
            ref = p.detach().double().cpu()
            std = float(ref.std()) if ref.numel() > 1 else 0.0
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.copy_((ref.mean() + std * noise).to(p.device, p.dtype))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        # a constant map has no ranks: its correlation is undefined (NaN), not an error
        warnings.simplefilter("ignore")
        return float(spearmanr(a.ravel(), b.ravel()).statistic)


def cascading_randomization(
        model: nn.Module,
        method: str,
        images: ArrayLike,
        text_embeddings: ArrayLike,
        *,
        seed: int = 0,
        threshold: float = 0.8,
        absolute: bool = False,
        progress: bool = True,
        **attribute_kwargs: Any,
) -> Dict[str, Any]:
    """Adebayo et al.'s cascading randomization: how much does the map depend on the weights?

    On a deep copy of the image tower, the weights are randomized cumulatively from the top down
    (:func:`randomization_steps`: head, stage3, ..., stage0, stem; each step with
    :func:`_randomize`'s scale-matched Gaussian, seeded by ``seed``); after each step the maps are
    recomputed with :func:`attribute` (same ``attribute_kwargs``: the shared arguments and the
    method's own, noise seed included, as for the original)
    and compared with the original maps by Spearman rank correlation per image, averaged over
    images. The caller's model is not changed.

    Args:
        absolute: correlate ``|map|`` instead of the map (Adebayo et al. report both: a sign flip
            alone then does not count as a change).
        threshold: a method whose correlation after the last step (every weight random) is still
            at least this is flagged ``insensitive``: its map shows the image, not the model.

    Returns:
        ``{"method", "steps": [names], "rank_corr": [mean per step], "rank_corr_per_image":
        (steps, N) array, "final": rank_corr[-1], "threshold", "insensitive": bool}``. An
        undefined correlation (a constant map) is NaN and left out of the mean.
    """
    if method not in METHODS:
        raise ValueError(f"cascading_randomization: method must be one of {METHODS}, got "
                         f"{method!r}")
    prep = (lambda m: np.abs(m)) if absolute else (lambda m: m)
    attribute_kwargs.setdefault("progress", False)
    original = prep(attribute(method, model, images, text_embeddings, **attribute_kwargs))
    tower = _ImageTowerOnly(copy.deepcopy(model.visual))
    gen = torch.Generator().manual_seed(int(seed))
    names, per_image = [], []
    steps = randomization_steps(tower)
    for name, modules in tqdm(steps, desc=f"randomization {method}", disable=not progress):
        _randomize(modules, gen)
        maps = prep(attribute(method, tower, images, text_embeddings, **attribute_kwargs))
        names.append(name)
        per_image.append([_spearman(o, r) for o, r in zip(original, maps)])
    per_image = np.asarray(per_image, dtype=np.float64)
    means = [float(np.nanmean(row)) if np.any(~np.isnan(row)) else float("nan")
             for row in per_image]
    final = means[-1]
    # "at least the threshold" up to round-off: Spearman's rho of exactly 0.8 comes out of
    # scipy as 0.7999999999999999 (as the ERF's area ratios allow for a share at t)
    return {
        "method": method,
        "steps": names,
        "rank_corr": means,
        "rank_corr_per_image": per_image,
        "final": final,
        "threshold": float(threshold),
        "insensitive": bool(final >= threshold - 1e-12),
    }

def cascading_randomization_all(
        model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
        methods: Union[Sequence[str], Mapping[str, Mapping[str, Any]]] = METHODS, *,
        seed: int = 0, threshold: float = 0.8, absolute: bool = False, progress: bool = False,
        **common: Any) -> Dict[str, Dict[str, Any]]:
    """:func:`cascading_randomization` of several methods on the same images, same seed.

    ``methods`` as for :func:`attribute_all` (names, or ``{name: {its own arguments}}``);
    ``common`` are :func:`attribute`'s shared arguments. Returns ``{method: result}``.
    """
    settings = methods if isinstance(methods, Mapping) else {m: {} for m in methods}
    return {m: cascading_randomization(model, m, images, text_embeddings, seed=seed,
                                       threshold=threshold, absolute=absolute, progress=progress,
                                       **common, **dict(args))
            for m, args in settings.items()}
