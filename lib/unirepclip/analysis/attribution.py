"""Attribution of image-text similarity with captum, and checks of it against ground truth.

Where does the model look when it matches an image to a caption? :class:`SimilarityForward`
turns a CLIP model and a text embedding into a scalar function of the image (the cosine
similarity), so every captum method applies unchanged. :func:`attribute` runs one of five methods
over a batch of images and returns one 2-D map per image:

- ``integrated_gradients``: ``IntegratedGradients`` (Gauss-Legendre, ``internal_batch_size``);
  channels reduced by ``"sum"``.
- ``smoothgrad``: ``NoiseTunnel`` (smoothgrad) over ``Saliency`` with raw gradients (``"abs"``),
  or over ``IntegratedGradients`` (``"sum"``), by ``smoothgrad_base``.
- ``saliency``: ``Saliency``, raw gradients; ``"abs"``.
- ``gradcam``: ``LayerGradCam`` on ``model.visual.trunk.stages[stage]``, ReLU'd, upsampled
  bilinearly to the input size with ``LayerAttribution.interpolate`` (one channel already).
- ``occlusion``: ``Occlusion`` with windows spanning all three channels; ``"mean"``.

Channel reductions: ``"sum"`` keeps the sign (positive = the pixel raises the similarity, which
is what IG's completeness and the mask metrics speak about); ``"abs"`` sums absolute values, the
usual reading of a plain gradient, whose sign says little on its own; ``"mean"`` suits occlusion,
whose windows span all three channels so the three values are equal.

Metrics against object masks (:func:`mass_in_mask`, :func:`pointing_game`, :func:`chance_level`,
:func:`mask_metrics`) measure whether a map is right, not only draw it; the chance level of both
is the mask's area share. :func:`cascading_randomization` is the model-randomization sanity check
of Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): a map that survives the
randomization of the weights shows the image, not the model.

Memory is bounded by ``batch_size`` (images per call into captum) and ``internal_batch_size``
(images per forward pass inside a method: IG steps, noise samples, occlusion windows).

Baselines matter for IG and occlusion. Near the all-zero input (normalized space: the dataset
mean colour) UniRepLKNet's stem can change abruptly: with zero conv biases (as initialized) the
LayerNorm after the first conv makes the tower scale invariant there, so the whole change of the
similarity sits near alpha = 0, where a quadrature with few steps does not look, and IG is badly
incomplete. Measure it rather than assume it:

:func:`make_baseline` offers ``"zero"``, ``"grey"`` (:func:`pixel_baseline`) and ``"blur"``
(:func:`blurred_baseline`); :func:`completeness_error` / :func:`compare_baselines` measure how far
IG's attributions are from summing to ``f(x) - f(baseline)``.

Notebook helpers: :func:`encode_texts`, :func:`contrastive_prompts`, :func:`attribute_all`,
:func:`gradcam_stage_scores` / :func:`best_gradcam_stage`, :func:`attribution_records`,
:func:`metrics_table`, :func:`plot_attribution_grid`,
:func:`plot_randomization`.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from unirepclip.utils import eval_mode, normalization_stats

__all__ = [
    "METHODS",
    "SimilarityForward",
    "attribute",
    "mass_in_mask",
    "pointing_game",
    "chance_level",
    "mask_metrics",
    "randomization_steps",
    "cascading_randomization",
    "BASELINES",
    "pixel_baseline",
    "blurred_baseline",
    "make_baseline",
    "completeness_error",
    "compare_baselines",
    "encode_texts",
    "contrastive_prompts",
    "gradcam_stage_scores",
    "best_gradcam_stage",
    "attribution_records",
    "metrics_table",
    "plot_attribution_grid",
    "plot_randomization",
    "attribute_all",
]

METHODS: Tuple[str, ...] = ("integrated_gradients", "smoothgrad", "saliency", "gradcam",
                            "occlusion")
REDUCTIONS = ("sum", "abs", "mean")
_DEFAULT_REDUCE = {"integrated_gradients": "sum", "saliency": "abs", "occlusion": "mean",
                   "gradcam": "sum"}

ArrayLike = Union[np.ndarray, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# The scalar forward
# ----------------------------------------------------------------------------------------------

class SimilarityForward(nn.Module):
    """``images (N, 3, H, W) -> (N,)`` cosine similarity between image and text embeddings.

    Args:
        model: anything with ``encode_image(images, normalize=True)`` (an open_clip ``CLIP``).
        text_embedding: the default text embedding, (D,) or (1, D) for one text shared by every
            image, or (N, D) for one per image. It is L2-normalized here, so raw
            ``encode_text`` outputs are fine.

    ``forward(images, text_embeddings=None)`` takes per-call text embeddings as an optional
    second argument: pass them through captum's ``additional_forward_args`` so that captum
    expands them together with the images (IG steps, noise samples, occlusion windows) and each
    image keeps its own text.
    """

    def __init__(self, model: nn.Module, text_embedding: Optional[ArrayLike] = None):
        super().__init__()
        if not callable(getattr(model, "encode_image", None)):
            raise TypeError(f"SimilarityForward: model must have encode_image (an open_clip "
                            f"CLIP), got {type(model).__name__}")
        self.model = model
        if text_embedding is not None:
            self.register_buffer("text_embedding", _as_text(text_embedding), persistent=False)
        else:
            self.text_embedding = None

    def forward(self, images: torch.Tensor,
                text_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        text = text_embeddings if text_embeddings is not None else self.text_embedding
        if text is None:
            raise ValueError("SimilarityForward: no text embedding given (neither at "
                             "construction nor in the call)")
        image = self.model.encode_image(images, normalize=True)
        text = F.normalize(_as_text(text).to(image.device, image.dtype), dim=-1)
        if text.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"SimilarityForward: text_embeddings has {text.shape[0]} rows for "
                             f"{image.shape[0]} images; give 1 or one per image")
        if text.shape[-1] != image.shape[-1]:
            raise ValueError(f"SimilarityForward: text embedding dim {text.shape[-1]} does not "
                             f"match the image embedding dim {image.shape[-1]}")
        return (image * text).sum(dim=-1)


def _as_text(t: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"text_embeddings must have shape (D,), (1, D) or (N, D), got "
                         f"{tuple(t.shape)}")
    return t


# ----------------------------------------------------------------------------------------------
# Attribution
# ----------------------------------------------------------------------------------------------


def _trunk(model: nn.Module) -> nn.Module:
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if trunk is None or not hasattr(trunk, "stages"):
        raise TypeError(f"expected a CLIP model whose image tower has .visual.trunk.stages (a "
                        f"UniRepLKNet), got {type(model).__name__}")
    return trunk


def _reduce(attr: torch.Tensor, how: str) -> torch.Tensor:
    if how == "sum":
        return attr.sum(dim=1)
    if how == "abs":
        return attr.abs().sum(dim=1)
    return attr.mean(dim=1)


def _baseline_for(baseline, x: torch.Tensor, start: int) -> torch.Tensor:
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if b.dim() == 4 and b.shape[0] > 1:
        b = b[start:start + x.shape[0]]
    try:
        return b.expand_as(x).contiguous()
    except RuntimeError:
        raise ValueError(f"attribute: baseline of shape {tuple(b.shape)} does not broadcast to "
                         f"the images {tuple(x.shape)}") from None


def attribute(
        method: str,
        model: nn.Module,
        images: ArrayLike,
        text_embeddings: ArrayLike,
        *,
        stage: int = 3,
        batch_size: int = 8,
        internal_batch_size: int = 32,
        n_steps: int = 32,
        nt_samples: int = 16,
        stdevs: Optional[float] = None,
        smoothgrad_base: str = "saliency",
        occlusion_window: int = 8,
        occlusion_stride: int = 4,
        baseline: Union[float, ArrayLike] = 0.0,
        occlusion_baseline: Union[float, ArrayLike, None] = None,
        reduce: Optional[str] = None,
        device: Union[str, torch.device, None] = None,
        random_state: int = 0,
        progress: bool = False,
) -> np.ndarray:
    """Attribution maps (N, H, W) of the image-text similarity, one per image.

    Args:
        method: one of :data:`METHODS`.
        model: an open_clip ``CLIP`` (or anything with ``encode_image`` and, for Grad-CAM,
            ``visual.trunk.stages``). Put in eval mode for the call, then restored.
        images: (N, 3, H, W), preprocessed as the model expects.
        text_embeddings: (D,) / (1, D) for one caption for all images, or (N, D) one per image.
        stage: Grad-CAM layer, ``model.visual.trunk.stages[stage]``. The last stage is the
            textbook choice; at small image sizes it is tiny (2 x 2 at 64 px) and an earlier
            stage may localize better.
        batch_size: images per call into captum.
        internal_batch_size: at most about this many images per forward pass inside a method
            (IG's ``internal_batch_size``; noise samples and occlusion windows per pass are
            ``internal_batch_size // batch``, at least 1).
        n_steps: IG integration steps (Gauss-Legendre), also for SmoothGrad over IG.
        nt_samples: SmoothGrad noise samples.
        stdevs: SmoothGrad noise std in input units; default 15 % of the value range of all
            ``images`` (Smilkov et al. recommend 10-20 %), computed once so that it does not
            depend on the batching.
        smoothgrad_base: ``"saliency"`` (raw gradients averaged over noise: the original
            SmoothGrad) or ``"integrated_gradients"``.
        occlusion_window, occlusion_stride: square window side and stride in pixels; windows
            cover all three channels.
        baseline: IG / occlusion reference input: a number or a tensor broadcastable to the
            images. 0 in normalized input space is the dataset mean colour.
        occlusion_baseline: what fills an occlusion window, if not ``baseline``. The two are
            different choices: IG's baseline must also give an accurate path integral
            (:func:`completeness_error`), while an occlusion fill only has to remove the
            window's content.
        reduce: ``"sum"``, ``"abs"`` or ``"mean"`` over colour channels; default per method (see
            the module docstring).
        device: where to compute; default the model's device (the model is not moved).
        random_state: seeds SmoothGrad's noise (the global RNG is left as it was).
        progress: a tqdm bar over batches.

    Returns:
        float32 array (N, H, W).
    """
    if method not in METHODS:
        raise ValueError(f"attribute: method must be one of {METHODS}, got {method!r}")
    if smoothgrad_base not in ("saliency", "integrated_gradients"):
        raise ValueError(f"attribute: smoothgrad_base must be 'saliency' or "
                         f"'integrated_gradients', got {smoothgrad_base!r}")
    if reduce is None:
        reduce = _DEFAULT_REDUCE.get(method) or (
            "abs" if smoothgrad_base == "saliency" else "sum")
    if reduce not in REDUCTIONS:
        raise ValueError(f"attribute: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    for name, value in (("batch_size", batch_size), ("internal_batch_size", internal_batch_size),
                        ("n_steps", n_steps), ("nt_samples", nt_samples),
                        ("occlusion_window", occlusion_window),
                        ("occlusion_stride", occlusion_stride)):
        if int(value) < 1:
            raise ValueError(f"attribute: {name} must be >= 1, got {value}")
    if method == "gradcam":
        n_stages = len(_trunk(model).stages)
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < n_stages:
            raise ValueError(f"attribute: stage must be an int in 0..{n_stages - 1}, got "
                             f"{stage!r}")
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"attribute: images must have shape (N, C, H, W), got "
                         f"{tuple(images.shape)}")
    n, _, h, w = images.shape
    text = _as_text(text_embeddings)
    if text.shape[0] not in (1, n):
        raise ValueError(f"attribute: text_embeddings has {text.shape[0]} rows for {n} images; "
                         f"give 1 or one per image")
    text = text.expand(n, -1)

    param = next(model.parameters())
    dev = torch.device(device) if device is not None else param.device
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    if method == "smoothgrad" and stdevs is None:
        stdevs = 0.15 * float(images.max() - images.min())

    from captum.attr import (IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel,
                             Occlusion, Saliency)

    forward = SimilarityForward(model)
    out = np.empty((n, h, w), dtype=np.float32)
    # SmoothGrad draws from the global RNG: fork it so the caller's stream is untouched.
    devices = [dev] if dev.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        starts = range(0, n, int(batch_size))
        for start in tqdm(starts, desc=f"attribution {method}", disable=not progress):
            # a fresh leaf: captum then needs not flip requires_grad itself (and warn about it)
            x = images[start:start + batch_size].to(dev, dtype).detach()
            x.requires_grad_(method != "occlusion")
            t = text[start:start + batch_size].to(dev, dtype)
            per_pass = max(1, int(internal_batch_size) // x.shape[0])
            if method == "integrated_gradients":
                attr = IntegratedGradients(forward).attribute(
                    x, baselines=_baseline_for(baseline, x, start), additional_forward_args=(t,),
                    n_steps=int(n_steps), internal_batch_size=int(internal_batch_size))
            elif method == "saliency":
                attr = Saliency(forward).attribute(x, abs=False, additional_forward_args=(t,))
            elif method == "smoothgrad":
                if smoothgrad_base == "saliency":
                    base, kwargs = Saliency(forward), dict(abs=False)
                else:
                    base = IntegratedGradients(forward)
                    kwargs = dict(baselines=_baseline_for(baseline, x, start),
                                  n_steps=int(n_steps),
                                  internal_batch_size=int(internal_batch_size))
                attr = NoiseTunnel(base).attribute(
                    x, nt_type="smoothgrad", nt_samples=int(nt_samples),
                    nt_samples_batch_size=per_pass, stdevs=float(stdevs),
                    additional_forward_args=(t,), **kwargs)
            elif method == "gradcam":
                layer = _trunk(model).stages[stage]
                cam = LayerGradCam(forward, layer).attribute(
                    x, additional_forward_args=(t,), relu_attributions=True)
                attr = LayerAttribution.interpolate(cam, (h, w), interpolate_mode="bilinear")
            else:  # occlusion: forward passes only
                with torch.no_grad():
                    attr = Occlusion(forward).attribute(
                        x, sliding_window_shapes=(x.shape[1], occlusion_window, occlusion_window),
                        strides=(x.shape[1], occlusion_stride, occlusion_stride),
                        baselines=_baseline_for(baseline if occlusion_baseline is None
                                                else occlusion_baseline, x, start),
                        additional_forward_args=(t,), perturbations_per_eval=per_pass)
            out[start:start + x.shape[0]] = _reduce(attr.detach().float(), reduce).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------------
# Metrics against masks
# ----------------------------------------------------------------------------------------------

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


def pointing_game(attr: ArrayLike, mask: ArrayLike) -> float:
    """1 if the map's maximum lies inside the mask, else 0.

    When the maximum is reached at several pixels, the score is the share of them inside the mask
    (so a constant map scores exactly the chance level instead of an arbitrary first pixel).
    """
    a, m = _check_pair(attr, mask)
    top = a == a.max()
    return float(m[top].sum() / top.sum())


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


# ----------------------------------------------------------------------------------------------
# Sanity check: cascading model randomization (Adebayo et al. 2018)
# ----------------------------------------------------------------------------------------------

class _ImageTowerOnly(nn.Module):
    """``encode_image`` of a CLIP without its text tower: what randomization needs to copy."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        z = self.visual(images)
        return F.normalize(z, dim=-1) if normalize else z


def randomization_steps(model: nn.Module) -> List[Tuple[str, List[nn.Module]]]:
    """The cascade, top down: ``head`` (the trunk's final norm and projection and any tower
    head), ``stage3`` ... ``stage1`` (each with the downsampling layer before it), ``stage0``,
    ``stem``. Returns ``[(name, modules), ...]``."""
    trunk = _trunk(model)
    visual = model.visual
    head = [m for m in (getattr(trunk, "norm", None), getattr(trunk, "head", None),
                        getattr(visual, "head", None)) if m is not None]
    steps: List[Tuple[str, List[nn.Module]]] = [("head", head)]
    for i in reversed(range(len(trunk.stages))):
        mods = [trunk.stages[i]] + ([trunk.downsample_layers[i]] if i > 0 else [])
        steps.append((f"stage{i}", mods))
    steps.append(("stem", [trunk.downsample_layers[0]]))
    return steps


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
        for p in mod.parameters():
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
    recomputed with :func:`attribute` (same ``attribute_kwargs`` and noise seed as the original)
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
    return {
        "method": method,
        "steps": names,
        "rank_corr": means,
        "rank_corr_per_image": per_image,
        "final": final,
        "threshold": float(threshold),
        "insensitive": bool(final >= threshold),
    }


# ----------------------------------------------------------------------------------------------
# Baselines and the completeness check of Integrated Gradients
# ----------------------------------------------------------------------------------------------

BASELINES = ("zero", "grey", "blur")


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


def blurred_baseline(images: ArrayLike, sigma: float = 4.0) -> torch.Tensor:
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


def make_baseline(kind: str, images: ArrayLike, *, sigma: float = 4.0,
                  mean: Optional[Sequence[float]] = None,
                  std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """A named IG / occlusion baseline for ``images``: ``"zero"`` (all zeros in normalized space,
    i.e. the dataset mean colour), ``"grey"`` (:func:`pixel_baseline` 0.5) or ``"blur"``
    (:func:`blurred_baseline`)."""
    if kind == "zero":
        return torch.zeros(1, 1, 1, 1)
    if kind == "grey":
        return pixel_baseline(0.5, mean=mean, std=std)
    if kind == "blur":
        return blurred_baseline(images, sigma)
    raise ValueError(f"make_baseline: kind must be one of {BASELINES}, got {kind!r}")


@torch.no_grad()
def completeness_error(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                       maps: ArrayLike, baseline: Union[float, ArrayLike] = 0.0, *,
                       device: Union[str, torch.device, None] = None, return_gap: bool = False
                       ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Per image, ``|sum(map) - (f(x) - f(baseline))| / |f(x) - f(baseline)|``.

    Integrated Gradients is *complete* (Sundararajan et al. 2017): its attributions sum to the
    change of the output between the baseline and the input. How far a computed map is from that
    says how well the path integral was approximated (steps, baseline). ``maps`` must keep the
    sign (IG's ``"sum"`` channel reduction). ``f`` is the image-text cosine similarity.
    ``return_gap`` also returns the per-image gaps ``f(x) - f(baseline)``.
    """
    x = torch.as_tensor(images).float()
    n = x.shape[0]
    a = np.asarray(maps, dtype=np.float64)
    if a.shape[0] != n:
        raise ValueError(f"completeness_error: {a.shape[0]} maps for {n} images")
    param = next(model.parameters())
    dev = torch.device(device) if device is not None else param.device
    text = _as_text(text_embeddings).expand(n, -1).to(dev)
    forward = SimilarityForward(model)
    with eval_mode(model):
        xs = x.to(dev)
        base = _baseline_for(baseline, xs, 0)
        gap = (forward(xs, text) - forward(base, text)).double().cpu().numpy()
    total = a.reshape(n, -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(total - gap) / np.abs(gap)
    return (err, gap) if return_gap else err


def compare_baselines(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                      kinds: Sequence[str] = BASELINES, *, sigma: float = 4.0,
                      **attribute_kwargs: Any) -> Dict[str, Dict[str, Any]]:
    """IG with each named baseline (:func:`make_baseline`), checked for completeness.

    Returns ``{kind: {"maps": (N, H, W), "error": per-image relative completeness error,
    "median_error", "max_error", "gap": per-image f(x) - f(baseline), "mean_gap"}}``;
    ``attribute_kwargs`` go to :func:`attribute` (``n_steps``, ``internal_batch_size`` ...).
    The gap says how much of the similarity a baseline leaves to explain: a baseline that
    already matches the caption (a blurred image keeps the colours) is easy to integrate from
    but explains little.
    """
    out: Dict[str, Dict[str, Any]] = {}
    x = torch.as_tensor(images)
    for kind in kinds:
        base = make_baseline(kind, x, sigma=sigma)
        maps = attribute("integrated_gradients", model, x, text_embeddings, baseline=base,
                         **attribute_kwargs)
        err, gap = completeness_error(model, x, text_embeddings, maps, base,
                                      device=attribute_kwargs.get("device"), return_gap=True)
        out[kind] = {"maps": maps, "error": err, "median_error": float(np.nanmedian(err)),
                     "max_error": float(np.nanmax(err)), "gap": gap,
                     "mean_gap": float(np.mean(gap))}
    return out


# ----------------------------------------------------------------------------------------------
# What the notebook needs around the methods
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: Sequence[str], *,
                 device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """L2-normalized text embeddings (N, D) of ``texts`` (the model is put in eval mode)."""
    if isinstance(texts, str) or not len(texts):
        raise ValueError("encode_texts: texts must be a non-empty sequence of strings")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with eval_mode(model):
        return model.encode_text(tokenizer(list(texts)).to(dev), normalize=True).float()


def contrastive_prompts(shape: str, colour: str, *, other_colour: Optional[str] = None,
                        other_shape: Optional[str] = None, frame: str = "a picture of {obj}"
                        ) -> Dict[str, str]:
    """Captions for one synthetic image: the truth, the wrong colour, the wrong shape.

    ``{"true": "a picture of a red circle", "other colour": "a picture of a blue circle",
    "other shape": "a picture of a red square"}``. By default the other colour / shape is the
    next one in :data:`unirepclip.data.COLOURS` / ``SHAPES`` (cyclically). ``frame`` is a prompt
    frame with ``{obj}`` (the held-out frames of the synthetic world suit the demo model).
    """
    from unirepclip.data import COLOURS, SHAPES, PromptTemplate

    for name, value, choices in (("shape", shape, SHAPES), ("colour", colour, COLOURS),
                                 ("other_shape", other_shape or shape, SHAPES),
                                 ("other_colour", other_colour or colour, COLOURS)):
        if value not in choices:
            raise ValueError(f"contrastive_prompts: {name}={value!r} is not one of {choices}")
    other_colour = other_colour or COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)]
    other_shape = other_shape or SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
    if other_colour == colour or other_shape == shape:
        raise ValueError("contrastive_prompts: the other colour and shape must differ from the "
                         "true ones")
    by_colour = PromptTemplate(frame, shape=shape)
    by_shape = PromptTemplate(frame, colour=colour)
    return {"true": by_colour(colour), "other colour": by_colour(other_colour),
            "other shape": by_shape(other_shape)}


def gradcam_stage_scores(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                         masks: ArrayLike, stages: Optional[Sequence[int]] = None,
                         **attribute_kwargs: Any) -> Dict[int, Dict[str, float]]:
    """:func:`mask_metrics` of Grad-CAM on each stage, with ``score``: the mean of the two
    metrics over their chance level (what :func:`best_gradcam_stage` maximizes)."""
    if stages is None:
        stages = range(len(_trunk(model).stages))
    out: Dict[int, Dict[str, float]] = {}
    for s in stages:
        maps = attribute("gradcam", model, images, text_embeddings, stage=int(s),
                         **attribute_kwargs)
        r = mask_metrics(maps, masks)
        r["score"] = 0.5 * (r["mass_in_mask"] + r["pointing_game"]) / r["chance"]
        out[int(s)] = r
    return out


def best_gradcam_stage(scores: Mapping[int, Mapping[str, float]]) -> int:
    """The stage with the highest ``score`` (ties: the later stage, the textbook choice)."""
    if not scores:
        raise ValueError("best_gradcam_stage: no scores")
    return max(scores, key=lambda s: (np.nan_to_num(scores[s]["score"], nan=-np.inf), s))


def attribution_records(metrics: Mapping[str, Mapping[str, float]],
                        cascades: Optional[Mapping[str, Mapping[str, Any]]] = None,
                        prefix: str = "attribution") -> Dict[str, Any]:
    """Flat results for ``unirepclip.results.record_many``: per method ``mass_in_mask``,
    ``pointing_game``, ``chance`` and, from :func:`cascading_randomization`,
    ``randomization_rank_corr`` (the end of the cascade), ``randomization_curve`` and
    ``insensitive``. An undefined figure (NaN) is recorded as None (JSON null)."""
    def value(x) -> Optional[float]:
        # undefined (NaN) becomes null: e.g. mass in mask when no image had positive
        # attribution (a random tower can do that), a rank correlation of a constant map
        x = float(x)
        return x if np.isfinite(x) else None

    out: Dict[str, Any] = {}
    for method, m in metrics.items():
        for k in ("mass_in_mask", "pointing_game", "chance"):
            out[f"{prefix}.{method}.{k}"] = value(m[k])
        if "n_no_positive_mass" in m:
            out[f"{prefix}.{method}.n_no_positive_mass"] = int(m["n_no_positive_mass"])
    for method, c in (cascades or {}).items():
        out[f"{prefix}.{method}.randomization_rank_corr"] = value(c["final"])
        out[f"{prefix}.{method}.randomization_curve"] = dict(zip(c["steps"],
                                                                 map(value, c["rank_corr"])))
        out[f"{prefix}.{method}.insensitive"] = bool(c["insensitive"])
    return out


def metrics_table(metrics: Mapping[str, Mapping[str, float]],
                  cascades: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """A Markdown table: per method the two mask metrics (and their ratio to chance), the chance
    level and, when given, the rank correlation after full randomization and the flag."""
    head = "| method | mass in mask | pointing game | chance |"
    rule = "|---|---:|---:|---:|"
    if cascades:
        head += " rank corr., all random | insensitive? |"
        rule += "---:|:---:|"
    lines = [head, rule]
    for method, m in metrics.items():
        c = m["chance"]
        row = (f"| {method} | {m['mass_in_mask']:.3f} ({m['mass_in_mask'] / c:.1f}x) | "
               f"{m['pointing_game']:.3f} ({m['pointing_game'] / c:.1f}x) | {c:.3f} |")
        if cascades:
            r = cascades.get(method)
            row += (f" {r['final']:.2f} | {'**yes**' if r['insensitive'] else 'no'} |"
                    if r else " - | - |")
        lines.append(row)
    return "\n".join(lines)


def _display_map(amap: np.ndarray) -> np.ndarray:
    """Positive part, scaled to [0, 1] by its 99.5th percentile (one hot pixel must not wash out
    the rest)."""
    pos = np.clip(np.asarray(amap, dtype=np.float64), 0, None)
    top = np.percentile(pos, 99.5)
    top = top if top > 0 else (pos.max() if pos.max() > 0 else 1.0)
    return np.clip(pos / top, 0, 1)


def plot_attribution_grid(pictures: np.ndarray, maps: Mapping[str, np.ndarray],
                          captions: Sequence[str], *, masks: Optional[np.ndarray] = None,
                          width: Union[str, float] = "two", cmap: str = "inferno",
                          alpha: float = 0.6, suptitle: Optional[str] = None):
    """Image | caption | one overlay per method, one row per image.

    ``pictures`` uint8 (N, H, W, 3); ``maps`` ``{method: (N, H, W)}``; ``captions`` one per row;
    ``masks`` (N, H, W) bool draws the object's outline on every panel. Each overlay shows the
    positive attribution scaled to its own 99.5th percentile, over the greyed picture. Returns
    the figure.
    """
    from unirepclip.viz import style as figures

    pictures = np.asarray(pictures)
    n = len(pictures)
    if len(captions) != n or any(len(m) != n for m in maps.values()):
        raise ValueError(f"plot_attribution_grid: {n} pictures, {len(captions)} captions, maps of "
                         f"lengths {[len(m) for m in maps.values()]}")
    methods = list(maps)
    cols = 1 + len(methods)
    fig, axes = figures.subplots(n, cols, width=width, aspect=1.0 * n / cols + 0.1,
                                 squeeze=False)
    im = None
    for i in range(n):
        grey = pictures[i].mean(axis=-1)
        # "none": vector formats embed the pixels as they are instead of resampling them
        axes[i, 0].imshow(pictures[i], interpolation="none")
        axes[i, 0].set_ylabel("\n".join(_wrap(captions[i], 22)), fontsize=6)
        for j, method in enumerate(methods, start=1):
            ax = axes[i, j]
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="none")
            im = ax.imshow(_display_map(maps[method][i]), cmap=cmap, vmin=0, vmax=1, alpha=alpha,
                           interpolation="none")
            if masks is not None:
                ax.contour(np.asarray(masks[i], dtype=float), levels=[0.5], colors="#56B4E9",
                           linewidths=0.6)
            if i == 0:
                ax.set_title(method.replace("_", " "), fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    cb = fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
    cb.set_label("positive attribution / 99.5th pct")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _wrap(text: str, width: int) -> List[str]:
    import textwrap
    return textwrap.wrap(text, width) or [""]


def plot_randomization(ax, cascades: Mapping[str, Mapping[str, Any]], *,
                       title: Optional[str] = None):
    """Adebayo et al.'s cascade curves: mean Spearman rank correlation with the original map
    after each cumulative randomization step, one line per method, the flag threshold dotted."""
    threshold = None
    for method, c in cascades.items():
        steps = ["original"] + list(c["steps"])
        ax.plot(range(len(steps)), [1.0] + list(c["rank_corr"]), marker="o",
                label=method.replace("_", " "))
        threshold = c.get("threshold", threshold)
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels(steps, rotation=30, ha="right")
    if threshold is not None:
        ax.axhline(threshold, color="0.5", ls=":", lw=0.8)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xlabel("randomized so far (top down, cumulative)")
    ax.set_ylabel("Spearman rank corr. with original map")
    ax.set_ylim(-0.5, 1.05)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def attribute_all(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                  methods: Sequence[str] = METHODS, *, baseline_kind: Optional[str] = None,
                  occlusion_baseline_kind: Optional[str] = None, sigma: float = 4.0,
                  **attribute_kwargs: Any) -> Dict[str, np.ndarray]:
    """``{method: (N, H, W) maps}`` for several methods on the same images and texts.

    ``baseline_kind`` (``"zero"``, ``"grey"``, ``"blur"``) builds the IG / occlusion baseline for
    these images with :func:`make_baseline` (a blurred baseline is per image, so it must be
    made for the very images attributed); otherwise ``attribute_kwargs["baseline"]`` is used.
    ``occlusion_baseline_kind`` likewise builds ``occlusion_baseline`` (the occlusion fill).
    """
    if baseline_kind is not None:
        if "baseline" in attribute_kwargs:
            raise ValueError("attribute_all: give baseline_kind or baseline, not both")
        attribute_kwargs["baseline"] = make_baseline(baseline_kind, torch.as_tensor(images),
                                                     sigma=sigma)
    if occlusion_baseline_kind is not None:
        if "occlusion_baseline" in attribute_kwargs:
            raise ValueError("attribute_all: give occlusion_baseline_kind or occlusion_baseline, "
                             "not both")
        attribute_kwargs["occlusion_baseline"] = make_baseline(
            occlusion_baseline_kind, torch.as_tensor(images), sigma=sigma)
    return {m: attribute(m, model, images, text_embeddings, **attribute_kwargs) for m in methods}
