"""Kernel surgery on a trained UniRepLKNet tower: what do its large kernels contribute?

The large-kernel papers (RepLKNet, CVPR 2022; UniRepLKNet, CVPR 2024) credit large depthwise kernels
with a ConvNet's shape bias and wide receptive field. Cutting the kernels of a *trained* tower and
measuring what changes asks the question causally. Per stage, :func:`cut_kernels` can

* keep only the central ``keep x keep`` taps of every large depthwise kernel (a
  :class:`~unirepclip.models.unireplknet.DilatedReparamBlock`; 3x3 and 5x5 mixers are not large and
  are left alone), in the inference form, where the block's kernel and its dilated branches are one
  ``K x K`` kernel. The taps outside are set to zero rather than the kernel cropped: the conv keeps
  its shape, so the same arithmetic runs in the same order and a cut that changes nothing gives
  bit-identical outputs;
* drop the dilated branches (in the training form, before they are merged): the block keeps its
  ``K x K`` kernel and that kernel's BatchNorm;
* or both (branches dropped first, then the kernel cut).

The tower is reached through :func:`unirepclip.models.towers.tower_of` (a tower of another family
is refused, one line naming it), and a branch is dropped by the block's own
:meth:`~unirepclip.models.unireplknet.DilatedReparamBlock.reparameterize` with ``dilated=False``
(the re-parameterization that merges them, without them).

Every cut works on a deep copy, returned in the inference form; the model passed in is never
modified. The reference a cut is compared with is :func:`inference_form` (the same copy, uncut): it
differs from a training-form model by float rounding only, and a cut at the full size equals it bit
for bit.

A cut is a no-op by construction (:func:`is_noop`) when the kept kernel still reaches across the
whole feature map: with zero padding, a tap further than ``width - 1`` from the centre only ever
multiplies padding, so keeping ``keep`` with ``keep // 2 >= width - 1`` removes nothing that
touches the image. At the demo's 64 px the stage maps are 16, 8, 4 and 2 wide (kernels 3, 13,
(13, 3), 13): on stage 2 only cuts to 5 or less change anything, on stage 3 only the cut to 1.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from unirepclip.models.towers import NotApplicable, UniRepLKNetTower, tower_of
from unirepclip.models.unireplknet import DilatedReparamBlock, UniRepLKNet, UniRepLKNetBlock

__all__ = ["Cut", "large_kernel_blocks", "stage_kernel_sizes", "stage_map_sizes",
           "is_noop", "cut_is_noop", "inference_form", "cut_kernels", "cut_plan"]

Size = Union[int, Tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Cut:
    """One cut on one stage: ``keep`` (odd kept kernel size, None for no kernel cut) and
    ``drop_dilated`` (drop the dilated branches)."""

    stage: int
    keep: Optional[int] = None
    drop_dilated: bool = False

    @property
    def label(self) -> str:
        parts = ([f"keep {self.keep}x{self.keep}"] if self.keep is not None else []) + \
            (["no dilated branches"] if self.drop_dilated else [])
        return f"stage {self.stage}: " + (", ".join(parts) or "uncut")


def _trunk(model: nn.Module) -> UniRepLKNet:
    """The UniRepLKNet module of ``model``'s tower (:func:`~unirepclip.models.towers.tower_of`:
    an open_clip CLIP, its ``.visual`` or the bare trunk); :class:`NotApplicable` (one line naming
    the tower) for any other family."""
    tower = tower_of(model)
    if not isinstance(tower, UniRepLKNetTower):
        raise NotApplicable(f"{tower.family} tower ({type(tower.module).__name__}): kernel "
                            f"surgery needs a UniRepLKNet image tower")
    return tower.module


def _check_stage(trunk: UniRepLKNet, stage: int) -> None:
    if int(stage) != stage or not 0 <= stage < len(trunk.stages):
        raise ValueError(f"stage={stage!r}: the tower has stages 0-{len(trunk.stages) - 1}")


def large_kernel_blocks(model: nn.Module, stage: int) -> List[UniRepLKNetBlock]:
    """The blocks of ``stage`` whose token mixer is a large kernel (a DilatedReparamBlock)."""
    trunk = _trunk(model)
    _check_stage(trunk, stage)
    return [b for b in trunk.stages[stage] if isinstance(b.dwconv, DilatedReparamBlock)]


def stage_kernel_sizes(model: nn.Module) -> List[Tuple[int, ...]]:
    """Each stage's depthwise kernel sizes, block by block (as configured)."""
    trunk = _trunk(model)
    return [tuple(int(k) for k in ks) for ks in trunk.kernel_sizes]


def _conv_out(n: int, conv: nn.Conv2d, axis: int) -> int:
    k, s, p, d = (conv.kernel_size[axis], conv.stride[axis], conv.padding[axis],
                  conv.dilation[axis])
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def stage_map_sizes(model: nn.Module, image_size: Size) -> List[Tuple[int, int]]:
    """(height, width) of each stage's feature map for an input of ``image_size``, from the
    downsampling convs' arithmetic (no forward pass)."""
    trunk = _trunk(model)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    sizes = []
    for layer in trunk.downsample_layers:
        for conv in (m for m in layer.modules() if isinstance(m, nn.Conv2d)):
            h, w = _conv_out(h, conv, 0), _conv_out(w, conv, 1)
        sizes.append((int(h), int(w)))
    return sizes


def is_noop(kernel_size: int, keep: int, map_size: Tuple[int, int]) -> bool:
    """Whether keeping the central ``keep`` of a ``kernel_size`` kernel changes nothing on a map
    of ``map_size`` (h, w): ``keep >= kernel_size``, or ``keep // 2 >= max(h, w) - 1``."""
    return keep >= kernel_size or keep // 2 >= max(map_size) - 1


def cut_is_noop(model: nn.Module, cut: Cut, image_size: Size) -> bool:
    """Whether ``cut`` is a no-op by construction at ``image_size``: a kernel cut only (dropping
    branches always changes the kernel) that :func:`is_noop` on every large kernel of the stage."""
    trunk = _trunk(model)
    _check_cut(trunk, cut)
    if cut.drop_dilated:
        return False
    if cut.keep is None:
        return True
    size = stage_map_sizes(trunk, image_size)[cut.stage]
    return all(is_noop(b.dwconv.kernel_size, cut.keep, size)
               for b in large_kernel_blocks(trunk, cut.stage))


def _check_cut(trunk: UniRepLKNet, cut: Cut) -> None:
    blocks = large_kernel_blocks(trunk, cut.stage)
    if not blocks:
        raise ValueError(f"stage {cut.stage} has no large kernel to cut (kernels "
                         f"{stage_kernel_sizes(trunk)[cut.stage]}; large ones are >= 7)")
    if cut.keep is not None:
        full = max(b.dwconv.kernel_size for b in blocks)
        if int(cut.keep) != cut.keep or cut.keep < 1 or cut.keep % 2 == 0 or cut.keep > full:
            raise ValueError(f"keep={cut.keep!r}: expected an odd kernel size from 1 to {full} "
                             f"(stage {cut.stage}'s large kernels)")
    if cut.drop_dilated and any(b.dwconv.deployed for b in blocks):
        raise ValueError(f"drop_dilated on stage {cut.stage}: the tower is in the inference form "
                         f"(its dilated branches are merged into one kernel); load it in the "
                         f"training form (deploy=False)")


@torch.no_grad()
def _keep_centre(block: UniRepLKNetBlock, keep: int) -> None:
    weight = block.dwconv.lk_origin.weight
    k = weight.shape[-1]
    m = (k - min(keep, k)) // 2
    if m:
        mask = torch.zeros_like(weight)
        mask[..., m:k - m, m:k - m] = 1
        weight.mul_(mask)


def inference_form(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with its UniRepLKNet tower re-parameterized: the uncut reference."""
    out = copy.deepcopy(model)
    _trunk(out).reparameterize()
    return out.eval()


def cut_kernels(model: nn.Module, cuts: Union[Cut, Sequence[Cut]]) -> nn.Module:
    """A deep copy of ``model`` (a CLIP, its ``.visual`` or the trunk) with ``cuts`` applied,
    in the inference form and eval mode. ``model`` is not modified."""
    cuts = [cuts] if isinstance(cuts, Cut) else list(cuts)
    trunk = _trunk(model)
    for cut in cuts:
        _check_cut(trunk, cut)
    out = copy.deepcopy(model)
    out_trunk = _trunk(out)
    for cut in cuts:
        if cut.drop_dilated:
            for block in large_kernel_blocks(out_trunk, cut.stage):
                block.dwconv.reparameterize(dilated=False)
    out_trunk.reparameterize()
    for cut in cuts:
        if cut.keep is not None:
            for block in large_kernel_blocks(out_trunk, cut.stage):
                _keep_centre(block, cut.keep)
    return out.eval()


def cut_plan(model: nn.Module, stage: int, image_size: Size,
             keeps: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """The kernel cuts of one stage, smallest first (every odd size below the full one by
    default), each with whether it is a no-op at ``image_size``: what a surgery curve runs and
    how its figure marks the points."""
    trunk = _trunk(model)
    blocks = large_kernel_blocks(trunk, stage)
    if not blocks:
        _check_cut(trunk, Cut(stage))
    full = max(b.dwconv.kernel_size for b in blocks)
    keeps = list(range(1, full + 1, 2)) if keeps is None else sorted(keeps)
    size = stage_map_sizes(trunk, image_size)[stage]
    return [{"cut": Cut(stage, k), "keep": k, "full": full, "map_size": size,
             "noop": cut_is_noop(trunk, Cut(stage, k), image_size)} for k in keeps]
