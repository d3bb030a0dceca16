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

What notebook 03 measures, each step one call: :func:`erf_image_sets` (the images, at each
resolution), :func:`erfs_by_resolution` (several stages of one tower at each resolution, see
:func:`stage_erfs`), :func:`reparam_check` (training form vs inference form, see
:func:`inference_form`), :func:`comparison_towers` / :func:`tower_comparison` (towers at
initialization, with the residual branches optionally switched on, and the 3x3 control),
:func:`erf_records` / :func:`erf_records_by_resolution` (results keys), :func:`peer_erfs` and
:func:`side_by_side_summary` (another architecture beside the model: the demo ViT). The figures
and Markdown tables of these results are in :mod:`unirepclip.viz.erf`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from unirepclip.models.towers import UniRepLKNetTower, tower_of
from unirepclip.utils import (autocast, check_precision, eval_mode, max_relative_difference,
                             module_device)

__all__ = [
    "compute_erf",
    "stage_feature_fn",
    "StageFeatures",
    "normalize_erf",
    "threshold_key",
    "area_ratios",
    "square_shares",
    "stage_erfs",
    "erfs_by_resolution",
    "ErfPlan",
    "erf_plan",
    "erf_records",
    "erf_records_by_resolution",
    "comparison_towers",
    "tower_comparison",
    "control_records",
    "erf_images",
    "erf_image_sets",
    "initialized_trunk",
    "inference_form",
    "reparam_check",
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



# ----------------------------------------------------------------------------------------------
# Feature functions
# ----------------------------------------------------------------------------------------------

class StageFeatures(nn.Module):
    """``images -> stage map`` (N, C, h, w) of an image tower, as an ``nn.Module``.

    ``trunk`` is anything :func:`unirepclip.models.towers.tower_of` takes (a UniRepLKNet trunk, a
    CLIP, its ``.visual``, a timm trunk); the map is the tower's map at depth ``stage`` (a ViT's
    block: its patch tokens on the patch grid, so the centre unit is the centre patch token).
    Being a module (holding the tower) lets :func:`compute_erf` see and manage its train / eval
    mode, and ``.to(device)`` moves it.
    """

    def __init__(self, trunk: nn.Module, stage: int):
        super().__init__()
        tower = tower_of(trunk)
        self.stage = tower.check_depth(stage, "stage_feature_fn")
        self.trunk = tower.module
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower.feature_map(x, self.stage)


def stage_feature_fn(trunk: nn.Module, stage: int) -> StageFeatures:
    """The feature function for :func:`compute_erf`: the map of stage (or block) ``stage``.

    ``trunk`` is a UniRepLKNet trunk, a CLIP model, an open_clip image tower or a timm trunk
    (through the tower seam, :func:`unirepclip.models.towers.tower_of`). The map is taken before
    any final norm, as the reference procedure does.
    """
    return StageFeatures(trunk, stage)


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------

def _iter_batches(images, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, C, H, W) batches from an array, or an iterable of tensors or (images, ...) tuples."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        images = [images]  # one block, split below like any other
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
            raise ValueError(f"compute_erf: images must have shape (N, C, H, W), got "
                             f"{tuple(item.shape)}")
        for i in range(0, item.shape[0], batch_size):
            yield item[i:i + batch_size]


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
        precision: ``"fp32"``, or ``"bf16"`` for autocast (the gradient and the average stay
            float32 / float64); see :data:`unirepclip.utils.PRECISIONS`.
        max_images: stop after this many images (counting skipped ones).
        progress: show a tqdm bar.
        return_counts: also return ``(n_used, n_nan)``.

    Returns:
        The float64 map (H, W), the mean over images of the per-image maps; with
        ``return_counts``, ``(map, n_used, n_nan)``.

    Raises:
        ValueError: bad arguments, a feature map that is not 4-D, or every image NaN.
    """
    check_precision(precision, "compute_erf: precision")
    if int(batch_size) < 1:
        raise ValueError(f"compute_erf: batch_size must be >= 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"compute_erf: max_images must be >= 1, got {max_images}")
    dev = (torch.device(device) if device is not None
           else module_device(feature_fn, torch.device("cpu")))
    total = None
    if isinstance(images, (torch.Tensor, np.ndarray)):
        total = images.shape[0] if images.ndim == 4 else 1
    elif hasattr(images, "__len__") and hasattr(images, "dataset"):
        total = len(images.dataset)
    if max_images is not None and total is not None:
        total = min(total, max_images)

    acc: Optional[torch.Tensor] = None
    n_used = n_nan = n_seen = 0
    ctx = eval_mode(feature_fn) if isinstance(feature_fn, nn.Module) else contextlib.nullcontext()
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
            with torch.enable_grad(), autocast(dev, precision):
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


def threshold_key(t: float) -> str:
    """The results key of threshold ``t``: ``0.2 -> "t20"``, ``0.995 -> "t99.5"``."""
    pct = 100 * t
    return f"t{int(round(pct))}" if abs(pct - round(pct)) < 1e-9 else f"t{pct:g}"


def square_shares(erf: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share of the normalized ERF inside centred squares of growing side.

    The map is normalized with :func:`normalize_erf`; the squares are centred on pixel
    ``(H // 2, W // 2)`` (where the centre output unit looks when the network is
    translation-equivariant and padded symmetrically) and grow one pixel per side at a time:
    sides 1, 3, 5, ... until the square covers the whole map. A square that reaches the border is
    clipped to the map.

    Returns:
        ``(sides, shares, areas)``: the nominal sides ``2 i + 1``, the share of the total held by
        each square (non-decreasing, the last one exactly 1), and each clipped square's area in
        pixels.
    """
    a = normalize_erf(erf)
    h, w = a.shape
    cy, cx = h // 2, w // 2
    total = a.sum()
    # Summed-area table: the sum of any clipped square in O(1).
    sat = np.zeros((h + 1, w + 1))
    sat[1:, 1:] = a.cumsum(0).cumsum(1)
    r_max = max(cy, cx, h - 1 - cy, w - 1 - cx)
    r = np.arange(r_max + 1)
    y0, y1 = np.maximum(cy - r, 0), np.minimum(cy + r + 1, h)
    x0, x1 = np.maximum(cx - r, 0), np.minimum(cx + r + 1, w)
    sums = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    shares = sums / total
    # Guard the last (whole-map) square against round-off in the summed-area table.
    shares[-1] = 1.0
    return 2 * r + 1, shares, (y1 - y0) * (x1 - x0)


def area_ratios(erf: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
                ) -> Dict[str, Dict[str, float]]:
    """Side and area ratio of the smallest centred square holding a share t of the ERF.

    The squares are those of :func:`square_shares` (on the map normalized with
    :func:`normalize_erf`): sides 1, 3, 5, ... The first square whose share reaches ``t``
    (``>=``) wins.

    A square that reaches the border is clipped to the map; ``area_ratio`` is then the clipped area
    over ``H * W`` (so at most 1), while ``side`` stays the nominal ``2 i + 1``. For squares that
    fit, ``area_ratio = side**2 / (H * W)`` exactly as published.

    Returns:
        ``{"t20": {"side": 5, "area_ratio": 0.0061}, "t30": ..., ...}``; keys are ``t`` in percent.
    """
    thresholds = tuple(float(t) for t in thresholds)
    for t in thresholds:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"area_ratios: thresholds must lie in (0, 1], got {t}")
    sides, shares, areas = square_shares(erf)
    h, w = np.shape(erf)
    out: Dict[str, Dict[str, float]] = {}
    for t in thresholds:
        # small tolerance: a share equal to t up to round-off counts as holding it
        i = int(np.argmax(shares >= t - 1e-12))
        out[threshold_key(t)] = {"side": int(sides[i]), "area_ratio": float(areas[i]) / (h * w)}
    return out


# ----------------------------------------------------------------------------------------------
# What the notebook measures: several stages, several models, images at a chosen resolution
# ----------------------------------------------------------------------------------------------

def stage_erfs(
        model: nn.Module,
        images: Union[torch.Tensor, np.ndarray, Iterable],
        stages: Sequence[int] = (0, 1, 2, 3),
        **compute_kwargs: Any,
) -> Dict[str, np.ndarray]:
    """ERF maps of several stages of one tower: ``{"stage0": (H, W) map, ...}``.

    ``model`` is an image tower or a model holding one (see :func:`stage_feature_fn`);
    ``compute_kwargs`` go to :func:`compute_erf` (``batch_size``, ``device``, ``precision``,
    ``max_images``, ``progress``). An iterable of images must be re-iterable (a tensor, an array,
    a list, a DataLoader): it is read once per stage. Keys are the tower's depth names: a ViT's
    are ``"block<i>"`` (:meth:`~unirepclip.models.towers.Tower.depth_names`).
    """
    stages = list(stages)
    if not stages:
        raise ValueError("stage_erfs: stages is empty")
    compute_kwargs.pop("return_counts", None)
    fns = [stage_feature_fn(model, s) for s in stages]
    names = fns[0].tower.depth_names()
    return {names[f.stage]: compute_erf(f, images, **compute_kwargs) for f in fns}


@dataclasses.dataclass(frozen=True)
class ErfPlan:
    """What notebook 03 measures on one tower (:func:`erf_plan`): ``resolutions`` (px),
    ``depths`` (indices into the tower's stages or blocks) and their ``names``; ``notes`` (one
    line each: what was measured instead of what was asked); ``reparam_skipped`` and
    ``comparison_skipped``: the reason the re-parameterization check and the at-initialization /
    3x3-control comparison do not apply, or None when they do; ``unit``: ``"stage"`` or
    ``"block"``."""

    resolutions: List[int]
    depths: List[int]
    names: List[str]
    notes: List[str]
    reparam_skipped: Optional[str]
    comparison_skipped: Optional[str]
    unit: str = "stage"

    def name(self, depth: int) -> str:
        return self.names[self.depths.index(int(depth))]


def _block_depths(n_blocks: int, stages: Sequence[int], who: str) -> List[int]:
    """Stage s of 4 as the last block of the s-th quarter of a ViT's ``n_blocks``."""
    bad = [s for s in stages if isinstance(s, bool) or not isinstance(s, (int, np.integer))
           or not 0 <= int(s) < 4]
    if bad:
        raise ValueError(f"{who}: stages {list(stages)!r} must be in 0..3 (quarters of the "
                         f"tower's {n_blocks} blocks)")
    return [max(0, (int(s) + 1) * n_blocks // 4 - 1) for s in stages]


def erf_plan(model: nn.Module, model_name: str, resolutions: Sequence[int],
             stages: Sequence[int]) -> ErfPlan:
    """Notebook 03's ``resolutions`` and ``stages`` as this tower can take them, each change said.

    A tower that runs at one input size only (an open_clip ViT: its positional embedding is for
    one patch grid) is measured at that size instead of ``resolutions``. A tower of blocks (a
    ViT) has no stages: stage s (0..3) is measured at the last block of the s-th quarter of its
    depth (ViT-B-32's 12 blocks: block2, block5, block8, block11), the ERF of the centre patch
    token. The re-parameterization check applies to a tower that re-parameterizes, the
    at-initialization towers and the 3x3 control to UniRepLKNet (layer scale; same depth and
    width); anything else is skipped with the reason.
    """
    tower = tower_of(model)
    what = f"{model_name} ({tower.family} tower)"
    res = [int(r) for r in resolutions]
    notes: List[str] = []
    fixed = tower.fixed_image_size
    if fixed is not None and any((r, r) != fixed for r in res):
        notes.append(f"{what} runs at {fixed[0]}x{fixed[1]} px only (its positional embedding "
                     f"is for that patch grid): the ERF is measured at {fixed[0]} px, not at "
                     f"{res} px")
        res = [fixed[0]]
    if tower.unit == "block":
        depths = _block_depths(tower.depth_count, stages, "erf_plan")
        names = [tower.depth_names()[d] for d in depths]
        gh, gw = tower.grids(res[0])[depths[-1]]
        notes.append(f"{what} has {tower.depth_count} blocks and no stages: stages "
                     f"{list(stages)} are measured at the last block of each quarter of its "
                     f"depth, {', '.join(names)} (the ERF of the centre patch token, "
                     f"({gh // 2}, {gw // 2}) of its {gh}x{gw} patch grid at {res[0]} px)")
    else:
        depths = [tower.check_depth(s, "erf_plan") for s in stages]
        names = [tower.depth_names()[d] for d in depths]
    reparam = None if tower.reparameterizes else (
        f"no re-parameterization check: {what} has no re-parameterized form")
    comparison = None if isinstance(tower, UniRepLKNetTower) else (
        f"no at-initialization or 3x3-control comparison: those towers are UniRepLKNet "
        f"configs (layer scale, the control's depth and width), {what} is not one")
    return ErfPlan(res, depths, names, notes, reparam, comparison, tower.unit)


def erfs_by_resolution(model: nn.Module, images: Mapping[int, torch.Tensor],
                       stages: Sequence[int] = (0, 1, 2, 3), **compute_kwargs: Any
                       ) -> Dict[int, Dict[str, np.ndarray]]:
    """:func:`stage_erfs` of one tower on each image set: ``{resolution: {"stage0": map, ...}}``,
    in the order of ``images`` (see :func:`erf_image_sets`)."""
    if not images:
        raise ValueError("erfs_by_resolution: images holds no resolution")
    return {int(r): stage_erfs(model, x, stages, **compute_kwargs) for r, x in images.items()}


def erf_records(erfs: Mapping[str, np.ndarray], model_key: str, *,
                thresholds: Sequence[float] = THRESHOLDS, prefix: str = "erf"
                ) -> Dict[str, float]:
    """Flat results for ``unirepclip.workbook.results.record_many``, one entry per stage and threshold.

    ``{"erf.<model_key>.<stage>.area_ratio.t20": 0.012, "erf.<model_key>.<stage>.side.t20": 7,
    ...}``; ratios are fractions, sides are input pixels. ``model_key`` may hold dots to nest
    deeper (``"demo.at_init"``).
    """
    if not isinstance(model_key, str) or not model_key:
        raise ValueError(f"erf_records: model_key must be a non-empty string, got {model_key!r}")
    out: Dict[str, float] = {}
    for stage, erf in erfs.items():
        for t, v in area_ratios(erf, thresholds).items():
            out[f"{prefix}.{model_key}.{stage}.area_ratio.{t}"] = float(v["area_ratio"])
            out[f"{prefix}.{model_key}.{stage}.side.{t}"] = int(v["side"])
    return out


def erf_records_by_resolution(by_resolution: Mapping[int, Mapping[str, np.ndarray]],
                              model_key: str, **kwargs: Any) -> Dict[str, float]:
    """:func:`erf_records` for maps measured at several input sizes ``{resolution: {stage: map}}``.

    The first resolution (the trained one, by the notebook's convention) gives the main keys
    ``erf.<model_key>.<stage>...``; every other resolution R gets
    ``erf.<model_key>.resolutions.<R>.<stage>...``.
    """
    if not by_resolution:
        raise ValueError("erf_records_by_resolution: no resolutions")
    items = list(by_resolution.items())
    out = erf_records(items[0][1], model_key, **kwargs)
    for r, erfs in items[1:]:
        out.update(erf_records(erfs, f"{model_key}.resolutions.{int(r)}", **kwargs))
    return out


def comparison_towers(model_name: str, model_key: str, *, control_model_name: str = "",
                      control_key: str = "", control: Optional[nn.Module] = None,
                      seed: int = 0, device: Union[str, torch.device] = "cpu"
                      ) -> Dict[str, Tuple[str, nn.Module]]:
    """The towers that separate architecture from training: ``{label: (results key, tower)}``.

    In order: the model at initialization (``<model_key>.at_init``), the same with every layer
    scale set to 1 (``<model_key>.at_init_layer_scale_1``: the residual branches switched on);
    when ``control_model_name`` is given, the control, trained when ``control`` (a loaded model)
    is given (results key ``control_key``, then ``<control_key>.at_init`` for its initialization)
    and else at initialization (results key ``control_key``), and the control at
    initialization with layer scale 1. All initializations use ``seed``
    (see :func:`initialized_trunk`).
    """
    towers: Dict[str, Tuple[str, nn.Module]] = {}

    def init(name, ls):
        return initialized_trunk(name, seed=seed, layer_scale=ls, device=device)

    towers[f"{model_key} at init"] = (f"{model_key}.at_init", init(model_name, None))
    towers[f"{model_key} at init, layer scale 1"] = (f"{model_key}.at_init_layer_scale_1",
                                                     init(model_name, 1.0))
    if control_model_name:
        if not control_key:
            raise ValueError("comparison_towers: control_model_name given without control_key")
        if control is not None:
            towers[f"{control_key} (trained)"] = (control_key, control)
            towers[f"{control_key} at init"] = (f"{control_key}.at_init",
                                                init(control_model_name, None))
        else:
            towers[f"{control_key} at init"] = (control_key, init(control_model_name, None))
        towers[f"{control_key} at init, layer scale 1"] = (
            f"{control_key}.at_init_layer_scale_1", init(control_model_name, 1.0))
    elif control is not None:
        raise ValueError("comparison_towers: control given without control_model_name")
    return towers


def tower_comparison(towers: Mapping[str, Tuple[str, nn.Module]],
                     images: Mapping[int, torch.Tensor], stages: Sequence[int] = (0, 1, 2, 3), *,
                     leading: Optional[Mapping[str, Mapping[int, Mapping[str, np.ndarray]]]] = None,
                     **compute_kwargs: Any) -> Dict[str, Any]:
    """The ERFs of :func:`comparison_towers`' towers at every resolution of ``images``.

    ``leading`` holds rows measured already (``{label: {resolution: {stage: map}}}``, e.g. the
    model under study), which come first in each resolution's rows and are not recorded again.

    Returns ``{"rows": {resolution: {label: {stage: map}}}, "records": ...}``: the rows for
    the tables and figures, and :func:`erf_records_by_resolution` of every tower under its own
    results key.
    """
    rows: Dict[int, Dict[str, Dict[str, np.ndarray]]] = {int(r): {} for r in images}
    for label, by_res in (leading or {}).items():
        for r in rows:
            rows[r][label] = dict(by_res[r])
    records: Dict[str, Any] = {}
    for label, (key, tower) in towers.items():
        by_res = erfs_by_resolution(tower, images, stages, **compute_kwargs)
        records.update(erf_records_by_resolution(by_res, key))
        for r in rows:
            rows[r][label] = by_res[r]
    return {"rows": rows, "records": records}


def control_records(control_model_name: str, control_key: str, *, trained: bool
                    ) -> Dict[str, str]:
    """``{"erf.<control_key>.state": "trained" | "init"}``: whether the 3x3 control was measured
    trained or at initialization only; empty when there is no control (no model name)."""
    if not control_model_name:
        return {}
    if not control_key:
        raise ValueError("control_records: control_model_name given without control_key")
    return {f"erf.{control_key}.state": "trained" if trained else "init"}




def peer_erfs(peer: nn.Module, peer_name: str, peer_key: str, stages: Sequence[int],
              resolution: int, images: Callable[[int], Any], **compute_kwargs: Any
              ) -> Dict[str, Any]:
    """Another architecture measured beside the model under study (notebook 03's ``peer``: the
    demo ViT beside the large-kernel demo and its 3x3 control).

    ``stages`` are the model's stages; the peer is measured where :func:`erf_plan` puts them on
    its tower (a ViT: the last block of each quarter of its depth), at ``resolution`` or at the
    one size its tower runs at, on ``images(resolution)``. Returns ``{"plan", "resolution",
    "erfs" ({depth name: map}), "as_stages" ({"stage<s>": map}: the same maps under the stage
    each stands for, for a table or grid beside the model's rows), "records"}``, the records
    under ``erf.<peer_key>``: :func:`erf_records` of every measured depth, the resolution, and
    which depth stands for which stage."""
    if not peer_key:
        raise ValueError("peer_erfs: peer_key is empty")
    plan = erf_plan(peer, peer_name, [int(resolution)], stages)
    res = plan.resolutions[0]
    erfs = stage_erfs(peer, images(res), plan.depths, **compute_kwargs)
    stands_for = {f"stage{int(s)}": name for s, name in zip(stages, plan.names)}
    records: Dict[str, Any] = dict(erf_records(erfs, peer_key))
    records[f"erf.{peer_key}.resolution"] = int(res)
    records[f"erf.{peer_key}.stands_for"] = stands_for
    return {"plan": plan, "resolution": int(res), "erfs": erfs,
            "as_stages": {stage: erfs[name] for stage, name in stands_for.items()},
            "records": records}


def side_by_side_summary(rows: Mapping[str, Mapping[str, np.ndarray]], stage: str,
                         threshold: float = 0.2, *, close: float = 0.1) -> str:
    """One paragraph saying what a side-by-side of architectures shows at ``stage`` (each row:
    ``{label: {"stage<s>": map}}``): the rows ordered by their area ratio at ``threshold``,
    widest first, and how the widest compares with the narrowest. Ratios within ``close``
    (relative) of the next are called "about as wide": an ERF is one average map, with no
    interval to separate them. Written from the numbers, whichever way they come out."""
    key = threshold_key(float(threshold))
    ratios = {label: area_ratios(erfs[stage], (threshold,))[key]["area_ratio"]
              for label, erfs in rows.items() if stage in erfs}
    if len(ratios) < 2:
        raise ValueError(f"side_by_side_summary: fewer than two rows measured at {stage}")
    order = sorted(ratios, key=lambda label: -ratios[label])
    parts = [f"{label}: {100 * ratios[label]:.1f} %" for label in order]
    lead = f"At {stage}, the square holding t = {key[1:]} % of the ERF covers " + "; ".join(parts)
    hi, lo = ratios[order[0]], ratios[order[-1]]
    if lo > 0 and hi <= lo * (1 + close):
        return lead + f". All are about as wide (within {100 * close:.0f} % of each other)."
    factor = f"{hi / lo:.1f} times" if lo > 0 else "more than"
    second = ratios[order[1]]
    tie = (f" ({order[1]} about as wide)" if second > 0 and hi <= second * (1 + close)
           else "")
    return (lead + f". The widest is {order[0]}{tie}, {factor} the area of the narrowest, "
            f"{order[-1]}.")


def erf_images(dataset: str, n: int, resolution: int, *, data_dir: Optional[str] = None,
               seed: int = 0, mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """``n`` normalized images (n, 3, R, R) at ``resolution`` for an ERF measurement.

    Args:
        dataset: a registered dataset (:mod:`unirepclip.data.registry`), its evaluated split.
            An endless one (``"synthetic"``) is rendered at ``resolution``, so objects keep
            their size relative to the image; one read from files (``"imagefolder"``, a
            CLIP_benchmark name) gives ``n`` images drawn without replacement, seeded, resized
            on the short side and centre-cropped, as RepLKNet resized ImageNet validation
            images; one shipped in a package (``"skimage"``) its first ``n`` (at most as many as
            ship).
        n: number of images (RepLKNet used 50).
        resolution: image side in pixels.
        data_dir: where a dataset read from files has them.
        seed: picks the images.
        mean, std: normalization; default open_clip's OpenAI values (what every model here uses).

    Unreadable files in a folder are skipped and replaced by the next drawn image.
    """
    import open_clip
    from unirepclip.data.registry import dataset_spec, load_dataset

    spec = dataset_spec(dataset)  # one line naming the registered names when it is none
    for name, value, low in (("n", n, 1), ("resolution", resolution, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"erf_images: {name} must be an int >= {low}, got {value!r}")
    n, resolution = int(n), int(resolution)
    mean = tuple(open_clip.OPENAI_DATASET_MEAN if mean is None else mean)
    std = tuple(open_clip.OPENAI_DATASET_STD if std is None else std)
    if spec.endless:  # rendered at the resolution: objects keep their size relative to it
        world = load_dataset(dataset, n=n, image_size=resolution, seed=int(seed))
        pixels = np.stack([np.asarray(world[i][0]) for i in range(len(world))])
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    transform = open_clip.image_transform(resolution, is_train=False, mean=mean, std=std)
    # every image of the set, in its order; which n of them is this function's rule
    ds = load_dataset(dataset, data_dir=data_dir or "", image_size=resolution, seed=int(seed),
                      transform=transform)
    if not spec.layout:  # shipped in a package: every image readable, in the package's order
        return torch.stack([ds[i][0] for i in range(min(n, len(ds)))])
    from unirepclip.data import UnreadableImage
    order = np.random.default_rng(int(seed)).permutation(len(ds))
    out: List[torch.Tensor] = []
    for i in order:
        img, _ = ds[int(i)]
        if isinstance(img, UnreadableImage):
            continue
        out.append(img)
        if len(out) == n:
            break
    if not out:
        raise ValueError(f"erf_images: no readable image in {data_dir}")
    return torch.stack(out)


def erf_image_sets(dataset: str, n: int, resolutions: Sequence[int], **kwargs: Any
                   ) -> Dict[int, torch.Tensor]:
    """:func:`erf_images` at each of ``resolutions``: ``{resolution: (n, 3, R, R) images}`` (the
    same seed, so a folder gives the same pictures at every size); ``kwargs`` go to
    :func:`erf_images`."""
    if isinstance(resolutions, (str, bytes)) or not list(resolutions):
        raise ValueError(f"erf_image_sets: resolutions must be a non-empty list of ints, got "
                         f"{resolutions!r}")
    return {int(r): erf_images(dataset, n, r, **kwargs) for r in resolutions}


def initialized_trunk(model_name: str, *, seed: int = 0, layer_scale: Optional[float] = None,
                      device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The image trunk of a registered model config as initialized, in eval mode.

    Args:
        model_name: a config (``"UniRepLKNet-Demo"``, ``"UniRepLKNet-Demo-SmallKernel"``, ...).
        seed: the initialization seed (the global RNG is left as it was).
        layer_scale: ``None`` keeps UniRepLKNet's initial layer scale (1e-6: every residual
            branch starts almost silent, so the tower at initialization is nearly its stem and
            downsampling layers); a number sets every block's layer scale to it, which switches
            the branches on and shows what the kernels alone give.
        device: where to build it.
    """
    import timm

    from unirepclip.models.factory import get_model_config

    cfg = get_model_config(model_name)
    timm_name = cfg.get("vision_cfg", {}).get("timm_model_name")
    if not timm_name:
        raise ValueError(f"initialized_trunk: model {model_name!r} has no "
                         f"vision_cfg.timm_model_name (not a timm image tower)")
    kwargs = {} if layer_scale is None else {"layer_scale_init_value": float(layer_scale)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        trunk = timm.create_model(timm_name, num_classes=0, **kwargs)
    return trunk.to(device).eval()


def inference_form(model: nn.Module) -> nn.Module:
    """A re-parameterized (inference-form) deep copy of ``model``'s UniRepLKNet trunk (a tower
    that does not re-parameterize raises :class:`unirepclip.models.towers.NotApplicable`).

    ``model`` is a trunk or holds one (``.trunk``, ``.visual.trunk``); it is left unchanged.
    """
    tower = tower_of(copy.deepcopy(tower_of(model).module))
    tower.reparameterize()   # NotApplicable (one line) for a tower without the folding
    return tower.module.eval()


def reparam_check(model: nn.Module, images: Union[torch.Tensor, np.ndarray, Iterable],
                  stages: Sequence[int] = (0, 1, 2, 3), *, inference: Optional[nn.Module] = None,
                  **compute_kwargs: Any) -> Dict[str, Any]:
    """Do the training form and the inference form of a tower have the same ERF?

    The ERF of each stage is measured on ``images`` with ``model`` and with its inference form
    (``inference``, default :func:`inference_form` of ``model``); ``compute_kwargs`` go to
    :func:`compute_erf`. The fold is exact up to float round-off, so a difference beyond ~1e-5
    is a bug in the conversion.

    Returns ``{"per_stage": {"stage0": max |ERF_inference - ERF_train| / max ERF_train, ...},
    "max_rel_diff": the largest of them}`` (the worst stage is what a check must report).
    """
    deploy = inference_form(model) if inference is None else inference
    train = stage_erfs(model, images, stages, **compute_kwargs)
    infer = stage_erfs(deploy, images, stages, **compute_kwargs)
    per_stage = {s: max_relative_difference(train[s], infer[s]) for s in train}
    return {"per_stage": per_stage, "max_rel_diff": max(per_stage.values())}
