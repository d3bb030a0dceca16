"""The tower seam: what the analyses need of an image tower, one interface over its families.

:func:`tower_of` takes an open_clip ``CLIP`` / ``CustomTextCLIP``, its ``.visual``, or a bare
timm trunk, and returns a :class:`Tower` that answers:

- its depths in order (UniRepLKNet's, ConvNeXt's and the ResNet's *stages*, a ViT's *blocks*),
  with their output grids for an input size (:meth:`Tower.grids`);
- the spatial map (N, C, h, w) at a depth, computed as far as needed
  (:meth:`Tower.feature_maps`, what the ERF differentiates), and the module whose output is that
  map during an ordinary forward (:meth:`Tower.spatial_layer`, what Grad-CAM hooks). A ViT's
  blocks output tokens: the map is its patch tokens laid out on the patch grid, class and
  register tokens dropped; for Grad-CAM a forward hook on the block routes the patch tokens
  through an identity module as such a map, so the layer captum watches outputs NCHW;
- whether the map at a depth reaches the embedding at all (:meth:`Tower.unused_map_note`: a
  ViT that pools its class token never reads its last block's patch tokens);
- whether it re-parameterizes, and doing it (:meth:`Tower.reparameterize`);
- the steps of the cascading randomization check, top down (:meth:`Tower.randomization_steps`);
- what its pooled features before the projection are (:meth:`Tower.capture_pre_projection`),
  which parameters project (:meth:`Tower.projection_prefixes`) and its pooled width;
- its family name, for errors.

The families: :class:`UniRepLKNetTower` (the package's own, today's behaviour), open_clip's
``VisionTransformer`` (:class:`OpenClipViTTower`), ``ModifiedResNet`` (:class:`ModifiedResNetTower`,
the RN family: its four residual layers are the stages), and the trunk of open_clip's
``TimmModel`` (:class:`TimmTower` through timm's ``feature_info``, e.g. ConvNeXt;
:class:`TimmViTTower` when that trunk is a timm ViT, as in the SigLIP models: the seam asks the
trunk, not the wrapper). A method that does not apply to a family raises :class:`NotApplicable`
(a ``TypeError``), one line naming the tower and the method.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ClassVar, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from unirepclip.utils import capture_input, eval_mode

__all__ = ["Tower", "NotApplicable", "tower_of", "UniRepLKNetTower", "OpenClipViTTower",
           "ModifiedResNetTower", "TimmTower", "TimmViTTower"]

Grid = Tuple[int, int]
Step = Tuple[str, List[Union[nn.Module, nn.Parameter]]]


class NotApplicable(TypeError):
    """A method of the seam that the tower's family does not have (one line: tower and method)."""


def _pair(size: Union[int, Sequence[int]]) -> Grid:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _present(*items) -> list:
    return [m for m in items if m is not None and not isinstance(m, nn.Identity)]


class Tower:
    """One image tower as the analyses see it (see the module docstring). Subclasses set
    ``family`` and ``unit`` and implement the depth methods."""

    family: ClassVar[str] = "image"
    unit: ClassVar[str] = "stage"          # what a depth is: "stage" or "block"
    reparameterizes: ClassVar[bool] = False

    def __init__(self, visual: nn.Module, module: nn.Module):
        self.visual = visual   # the image tower (open_clip's .visual, or the bare trunk)
        self.module = module   # what computes the maps: the trunk, or the tower itself

    def __repr__(self) -> str:
        return f"<{self.family} tower, {self.depth_count} {self.unit}s>"

    def _not(self, method: str, why: str = "") -> NotApplicable:
        return NotApplicable(f"{self.family} tower ({type(self.module).__name__}): {method} "
                             f"does not apply{why}")

    # --- depths -------------------------------------------------------------------------------
    def depth_modules(self) -> List[nn.Module]:
        """The stages or blocks, in order."""
        raise self._not("stages / blocks")

    @property
    def depth_count(self) -> int:
        return len(self.depth_modules())

    def depth_names(self) -> List[str]:
        return [f"{self.unit}{i}" for i in range(self.depth_count)]

    def check_depth(self, depth, who: str, name: str = "stage") -> int:
        """``depth`` as an int in range; else a one-line ValueError naming ``who``'s ``name``."""
        n = self.depth_count
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) \
                or not 0 <= int(depth) < n:
            what = "" if self.unit == name else f" (a {self.unit} of the {self.family} tower)"
            raise ValueError(f"{who}: {name} must be an int in 0..{n - 1}{what}, got {depth!r}")
        return int(depth)

    def feature_maps(self, x: torch.Tensor, depths: Sequence[int]) -> List[torch.Tensor]:
        """The (N, C, h, w) maps at ``depths`` (sorted, distinct), the forward stopped after the
        last one."""
        raise self._not("feature maps")

    def feature_map(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        return self.feature_maps(x, [depth])[0]

    @torch.no_grad()
    def grids(self, image_size: Union[int, Sequence[int]],
              device: Union[str, torch.device, None] = None) -> List[Grid]:
        """(h, w) of every depth's map for one input of ``image_size`` (one forward, batch 1)."""
        param = next(self.module.parameters())
        dev = torch.device(device) if device is not None else param.device
        dtype = param.dtype if param.dtype.is_floating_point else torch.float32
        x = torch.zeros(1, 3, *_pair(image_size), device=dev, dtype=dtype)
        with eval_mode(self.module):   # every submodule's mode restored as it was
            maps = self.feature_maps(x, list(range(self.depth_count)))
        return [tuple(int(v) for v in m.shape[-2:]) for m in maps]

    @contextlib.contextmanager
    def spatial_layer(self, depth: int) -> Iterator[nn.Module]:
        """Within the context, a module whose output is the (N, C, h, w) map at ``depth`` while
        the tower runs (Grad-CAM's layer)."""
        yield self.depth_modules()[depth]

    def unused_map_note(self, depth: int) -> Optional[str]:
        """None when the map at ``depth`` reaches the embedding; else one line saying why it
        does not (a ViT that pools its class token never reads its last block's patch tokens:
        their gradient is exactly zero, so Grad-CAM there is an empty map, not a finding)."""
        return None

    def check_map_used(self, depth: int, method: str) -> None:
        """:class:`NotApplicable` naming the tower and ``method`` when the map at ``depth``
        does not reach the embedding (:meth:`unused_map_note`)."""
        note = self.unused_map_note(depth)
        if note is not None:
            raise self._not(f"{method} on {self.unit} {depth}", f": {note}")

    @property
    def fixed_image_size(self) -> Optional[Grid]:
        """The (h, w) input size the tower is built for and only runs at (a ViT's positional
        embedding is for one patch grid), or None when any size (a multiple of its stride) runs."""
        return None

    def size_note(self, size: Union[int, Sequence[int]]) -> Optional[str]:
        """None when the tower runs at ``size``; else one line saying why not."""
        fixed = self.fixed_image_size
        if fixed is None or _pair(size) == fixed:
            return None
        shown = "x".join(str(v) for v in _pair(size))
        return (f"not measured at {shown} px: the {self.family} tower runs at "
                f"{fixed[0]}x{fixed[1]} px only (its positional embedding is for that patch grid)")

    # --- re-parameterization ------------------------------------------------------------------
    @property
    def is_inference_form(self) -> bool:
        return False

    def reparameterize(self) -> None:
        """Fold the tower into its inference form, in place."""
        raise self._not("re-parameterization")

    # --- randomization, projection ------------------------------------------------------------
    def randomization_steps(self) -> List[Step]:
        """Cascading randomization, top down: ``[(name, modules or parameters), ...]``."""
        raise self._not("cascading randomization")

    @property
    def num_features(self) -> int:
        """Width of the pooled features that enter the projection (0 when unknown)."""
        return int(getattr(self.module, "num_features", 0) or 0)

    def pre_projection_module(self) -> Optional[nn.Module]:
        """The module whose input is the pooled features before the projection, if one is."""
        return None

    @contextlib.contextmanager
    def capture_pre_projection(self, store: List[torch.Tensor]) -> Iterator[bool]:
        """Append the pooled pre-projection features of every forward to ``store``; yields
        whether the tower has them."""
        with capture_input(self.pre_projection_module(), store) as watched:
            yield watched

    def projection_prefixes(self, prefix: str = "visual.") -> List[str]:
        """Name prefixes (under ``prefix``) of the image projection's parameters."""
        return []


# ------------------------------------------------------------------------------------------------
# Token towers: a block's patch tokens as a map
# ------------------------------------------------------------------------------------------------
class _TokenMap(nn.Identity):
    """The identity through which a block's patch tokens pass as an (N, C, h, w) map."""


@contextlib.contextmanager
def _token_map_hook(tower_module: nn.Module, block: nn.Module, n_prefix: int,
                    grid_of: Callable[[Grid], Grid], batch_first: bool) -> Iterator[nn.Module]:
    """Route ``block``'s patch tokens through a :class:`_TokenMap` as a map (prefix tokens kept
    aside and put back): the map is in the graph, so its gradient is the tokens' gradient."""
    probe, size = _TokenMap(), {}

    def pre(_m, args):
        size["hw"] = tuple(int(v) for v in args[0].shape[-2:])

    def post(_m, _args, out):
        x = out if batch_first else out.transpose(0, 1)
        n, _, c = x.shape
        h, w = grid_of(size["hw"])
        fmap = probe(x[:, n_prefix:].reshape(n, h, w, c).permute(0, 3, 1, 2))
        x = torch.cat([x[:, :n_prefix], fmap.permute(0, 2, 3, 1).reshape(n, h * w, c)], dim=1)
        return x if batch_first else x.transpose(0, 1)

    handles = [tower_module.register_forward_pre_hook(pre), block.register_forward_hook(post)]
    try:
        yield probe
    finally:
        for h in handles:
            h.remove()


class OpenClipViTTower(Tower):
    """open_clip's ``VisionTransformer``: blocks ``transformer.resblocks``, maps of patch tokens
    (the class token dropped) through its ``forward_intermediates(output_fmt='NCHW')``."""

    family = "open_clip VisionTransformer"
    unit = "block"

    def depth_modules(self):
        return list(self.module.transformer.resblocks)

    @property
    def fixed_image_size(self):
        return _pair(self.module.image_size)

    def _check_size(self, x: torch.Tensor) -> None:
        want = self.fixed_image_size
        if tuple(x.shape[-2:]) != want:
            raise ValueError(f"{self.family} tower: input {tuple(x.shape[-2:])} but its positional "
                             f"embedding is for {want}; measure it at that size")

    def feature_maps(self, x, depths):
        self._check_size(x)
        return self.module.forward_intermediates(x, indices=list(depths), stop_early=True,
                                                 intermediates_only=True,
                                                 output_fmt="NCHW")["image_intermediates"]

    def unused_map_note(self, depth):
        v = self.module
        if int(depth) == self.depth_count - 1 and getattr(v, "attn_pool", None) is None \
                and v.pool_type == "tok":
            return (f"it pools its class token, so the last {self.unit}'s patch tokens never "
                    f"reach the embedding (their gradient is zero)")
        return None

    def spatial_layer(self, depth):
        ph, pw = _pair(self.module.patch_size)
        return _token_map_hook(self.module, self.depth_modules()[depth], 1,
                               lambda hw: (hw[0] // ph, hw[1] // pw),
                               getattr(self.module.transformer, "batch_first", True))

    def randomization_steps(self):
        v = self.module
        steps: List[Step] = [("head", _present(getattr(v, "attn_pool", None),
                                               getattr(v, "attn_pool_contrastive", None),
                                               v.ln_post, v.proj))]
        blocks = self.depth_modules()
        steps += [(f"block{i}", [blocks[i]]) for i in reversed(range(len(blocks)))]
        steps.append(("stem", _present(v.conv1, v.class_embedding, v.positional_embedding,
                                       v.ln_pre)))
        return steps

    @property
    def num_features(self):
        return int(self.module.proj.shape[0]) if self.module.proj is not None else \
            int(self.module.transformer.width)

    @contextlib.contextmanager
    def capture_pre_projection(self, store):
        v = self.module
        if getattr(v, "attn_pool", None) is not None or v.pool_type not in ("tok", "avg"):
            yield False
            return

        def post(_m, _args, out):
            if not v.final_ln_after_pool:   # ln_post ran on every token: pool as the tower does
                out = out[:, 0] if v.pool_type == "tok" else out[:, 1:].mean(dim=1)
            store.append(out.detach())

        handle = v.ln_post.register_forward_hook(post)
        try:
            yield True
        finally:
            handle.remove()

    def projection_prefixes(self, prefix="visual."):
        return [prefix + "proj"] if isinstance(self.module.proj, nn.Parameter) else []


class ModifiedResNetTower(Tower):
    """open_clip's ``ModifiedResNet`` (the RN family): stages ``layer1`` ... ``layer4`` (its
    ``forward_intermediates`` index 0 is the stem), an attention pool that also projects."""

    family = "open_clip ModifiedResNet"

    def depth_modules(self):
        v = self.module
        return [v.layer1, v.layer2, v.layer3, v.layer4]

    def feature_maps(self, x, depths):
        return self.module.forward_intermediates(x, indices=[int(d) + 1 for d in depths],
                                                 stop_early=True, intermediates_only=True,
                                                 output_fmt="NCHW")["image_intermediates"]

    def randomization_steps(self):
        v, stages = self.module, self.depth_modules()
        steps: List[Step] = [("head", [v.attnpool])]
        steps += [(f"stage{i}", [stages[i]]) for i in reversed(range(4))]
        steps.append(("stem", [v.conv1, v.bn1, v.conv2, v.bn2, v.conv3, v.bn3]))
        return steps

    @property
    def num_features(self):
        return int(self.module.attnpool.c_proj.in_features)

    def projection_prefixes(self, prefix="visual."):
        return [prefix + "attnpool.c_proj."]


# ------------------------------------------------------------------------------------------------
# timm trunks (open_clip's TimmModel), UniRepLKNet among them
# ------------------------------------------------------------------------------------------------
class TimmTower(Tower):
    """The timm trunk of an open_clip ``TimmModel`` (or a bare timm model): stages from timm's
    ``feature_info``, maps from the trunk's ``forward_intermediates``. A ConvNeXt's stages hold
    their downsampling layers; the stem is what comes before the first stage."""

    family = "timm"

    def __init__(self, visual, trunk):
        super().__init__(visual, trunk)
        self.family = f"timm {type(trunk).__name__}"

    def _feature_names(self) -> List[str]:
        info = getattr(self.module, "feature_info", None)
        if not info or not hasattr(self.module, "forward_intermediates"):
            raise self._not("stages (no feature_info / forward_intermediates)")
        return [f["module"] for f in info]

    def depth_modules(self):
        return [self.module.get_submodule(n) for n in self._feature_names()]

    def feature_maps(self, x, depths):
        return self.module.forward_intermediates(x, indices=list(depths), stop_early=True,
                                                 intermediates_only=True, output_fmt="NCHW")

    def _stem_and_head(self) -> Tuple[list, list]:
        names = self._feature_names()
        first, last = names[0].split(".")[0], names[-1].split(".")[0]
        children = [n for n, _ in self.module.named_children()]
        i, j = children.index(first), children.index(last)
        get = self.module.get_submodule
        stem = [get(n) for n in children[:i]] + [p for _, p in
                                                 self.module.named_parameters(recurse=False)]
        head = [get(n) for n in children[j + 1:]]
        return _present(*stem), _present(*head)

    def randomization_steps(self):
        stem, head = self._stem_and_head()
        own = getattr(self.visual, "head", None) if self.visual is not self.module else None
        steps: List[Step] = [("head", head + _present(own))]
        mods = self.depth_modules()
        steps += [(f"{self.unit}{i}", [mods[i]]) for i in reversed(range(len(mods)))]
        steps.append(("stem", stem))
        return steps

    def pre_projection_module(self):
        get = getattr(self.module, "get_classifier", None)
        head = get() if callable(get) else getattr(self.module, "head", None)
        return head if isinstance(head, nn.Module) else None

    def projection_prefixes(self, prefix="visual."):
        out = []
        own = getattr(self.visual, "head", None) if self.visual is not self.module else None
        if isinstance(own, nn.Module) and any(True for _ in own.parameters()):
            out.append(prefix + "head.")
        cls = self.pre_projection_module()
        if isinstance(cls, nn.Linear):
            inner = "trunk." if self.visual is not self.module else ""
            name = next(n for n, m in self.module.named_modules() if m is cls)
            out.append(f"{prefix}{inner}{name}.")
        return out


class TimmViTTower(TimmTower):
    """A timm ViT trunk (``TimmModel`` wraps them too, e.g. SigLIP's): blocks, maps of patch
    tokens with the class and register tokens dropped."""

    unit = "block"

    @property
    def fixed_image_size(self):
        t = self.module
        if getattr(t, "dynamic_img_size", False) or getattr(t.patch_embed, "img_size", None) is None:
            return None
        return _pair(t.patch_embed.img_size)

    def unused_map_note(self, depth):
        t = self.module
        if int(depth) == self.depth_count - 1 and getattr(t, "attn_pool", None) is None \
                and getattr(t, "global_pool", "") == "token":
            return (f"it pools its class token, so the last {self.unit}'s patch tokens never "
                    f"reach the embedding (their gradient is zero)")
        return None

    def spatial_layer(self, depth):
        t = self.module
        return _token_map_hook(t, self.depth_modules()[depth], int(t.num_prefix_tokens),
                               lambda hw: tuple(t.patch_embed.dynamic_feat_size(hw)), True)


class UniRepLKNetTower(TimmTower):
    """The package's UniRepLKNet trunk: stages ``stages[i]`` with the downsampling layer before
    each (``downsample_layers[0]`` is the stem), maps through its ``forward_intermediates``,
    structural re-parameterization into the inference form."""

    reparameterizes = True

    def __init__(self, visual, trunk):
        super().__init__(visual, trunk)
        self.family = "UniRepLKNet"

    def depth_modules(self):
        return list(self.module.stages)

    def feature_maps(self, x, depths):
        return self.module.forward_intermediates(x, indices=list(depths), stop_early=True,
                                                 intermediates_only=True)

    @property
    def is_inference_form(self):
        return bool(getattr(self.module, "deploy", False))

    def reparameterize(self):
        if not hasattr(self.module, "reparameterize"):
            raise self._not("re-parameterization")
        self.module.reparameterize()

    def randomization_steps(self):
        t = self.module
        own = getattr(self.visual, "head", None) if self.visual is not t else None
        steps: List[Step] = [("head", [m for m in (getattr(t, "norm", None),
                                                   getattr(t, "head", None), own)
                                       if m is not None])]
        for i in reversed(range(len(t.stages))):
            steps.append((f"stage{i}", [t.stages[i]] + ([t.downsample_layers[i]] if i else [])))
        steps.append(("stem", [t.downsample_layers[0]]))
        return steps

    def pre_projection_module(self):
        head = getattr(self.module, "head", None)
        return head if isinstance(head, nn.Module) else None


def _timm_tower(visual: nn.Module, trunk: nn.Module) -> Tower:
    if hasattr(trunk, "stages") and hasattr(trunk, "downsample_layers"):
        return UniRepLKNetTower(visual, trunk)
    if hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed") \
            and hasattr(trunk, "num_prefix_tokens"):
        return TimmViTTower(visual, trunk)
    return TimmTower(visual, trunk)


def tower_of(model: nn.Module) -> Tower:
    """The :class:`Tower` of ``model``: an open_clip ``CLIP`` / ``CustomTextCLIP`` (its
    ``.visual``), an image tower itself, or a bare timm trunk (a UniRepLKNet, a ConvNeXt ...).
    :class:`NotApplicable` (a TypeError) names anything else."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    visual = model if visual is None else visual
    if isinstance(visual, VisionTransformer):
        return OpenClipViTTower(visual, visual)
    if isinstance(visual, ModifiedResNet):
        return ModifiedResNetTower(visual, visual)
    trunk = getattr(visual, "trunk", None)
    if isinstance(trunk, nn.Module):
        return _timm_tower(visual, trunk)
    if hasattr(visual, "forward_intermediates") and (hasattr(visual, "feature_info")
                                                     or hasattr(visual, "downsample_layers")):
        return _timm_tower(visual, visual)   # a bare trunk
    raise NotApplicable(f"tower_of: {type(model).__name__} is not an image tower the seam knows "
                        f"(an open_clip CLIP or its .visual: VisionTransformer, ModifiedResNet, "
                        f"TimmModel; or a timm trunk such as UniRepLKNet)")
