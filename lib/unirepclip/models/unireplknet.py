"""UniRepLKNet image tower.

Paper: "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition", Ding et al., CVPR 2024 (arXiv:2311.15599).

Written for this workbook from the paper and the published architecture facts (see
``shared/REFERENCE.md``); module and parameter names follow the authors' reference implementation
key for key, so checkpoints written by it (or by OpenCLIP runs built on it) load strictly.

Two forms of the same network:

* the *training form*: large depthwise kernels with parallel dilated small-kernel branches, each
  followed by BatchNorm, a GRN with a bias, a bias-free ``pwconv2`` followed by BatchNorm, and a
  layer scale ``gamma``;
* the *inference form* (``deploy=True``), produced by structural re-parameterization: every branch
  and BatchNorm folded into one depthwise conv with bias, GRN's bias and ``pwconv2``'s BatchNorm and
  the layer scale folded into one ``Linear`` with bias. The two compute the same function up to float
  round-off. ``timm.utils.reparameterize_model`` converts a model, as does
  :meth:`UniRepLKNet.reparameterize`.

The model speaks timm's vocabulary (``forward_features``, ``forward_head``, ``reset_classifier``,
``forward_intermediates``, ``set_grad_checkpointing``) and is registered in timm's registry as
``unireplknet_a`` ... ``unireplknet_xl`` when :mod:`unirepclip` is imported.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from unirepclip.models.loading import detect_layout, unwrap_state_dict

__all__ = [
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "DilatedReparamBlock",
    "GRNwithNHWC",
    "LayerNormChannelsFirst",
    "VARIANTS",
    "DEFAULT_KERNEL_SIZES",
    "DILATED_BRANCHES",
    "merge_bn_into_conv",
]

# Parallel dilated branches of a large kernel: kernel size -> (branch kernel sizes, dilations).
DILATED_BRANCHES: Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
}
# 0 = no token mixer; 3 and 5 = plain depthwise conv; >= 7 = dilated re-parameterizable block.
SUPPORTED_KERNEL_SIZES = (0, 3, 5, 7, 9, 11, 13, 15, 17)

DEFAULT_KERNEL_SIZES: Dict[Tuple[int, ...], Tuple[Tuple[int, ...], ...]] = {
    (2, 2, 6, 2): ((3, 3), (13, 13), (13,) * 6, (13, 13)),
    (2, 2, 8, 2): ((3, 3), (13, 13), (13,) * 8, (13, 13)),
    (3, 3, 18, 3): ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13)),
    (3, 3, 27, 3): ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13)),
}

VARIANTS: Dict[str, Dict[str, Tuple[int, ...]]] = {
    "a": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    "f": dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
    "p": dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
    "n": dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)),
    "t": dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640)),
    "s": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    "b": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    "l": dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
    "xl": dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
}


# ----------------------------------------------------------------------------------------------
# Re-parameterization arithmetic
# ----------------------------------------------------------------------------------------------

def merge_bn_into_conv(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.BatchNorm2d
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv (or per-channel affine map) into it.

    ``weight`` has the output channels in dim 0. Returns the new (weight, bias).
    """
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    shape = (-1,) + (1,) * (weight.dim() - 1)
    new_w = weight * scale.reshape(shape)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    new_b = bn.bias + (b - bn.running_mean) * scale
    return new_w, new_b


def dilate_kernel(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """A dilated depthwise kernel written as the equivalent dense kernel (zeros between taps)."""
    if dilation == 1:
        return kernel
    c, one, k, _ = kernel.shape
    size = dilation * (k - 1) + 1
    dense = kernel.new_zeros(c, one, size, size)
    dense[:, :, ::dilation, ::dilation] = kernel
    return dense


def pad_kernel_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a centred square kernel to ``size`` x ``size``."""
    pad = (size - kernel.shape[-1]) // 2
    if pad < 0:
        raise ValueError(f"kernel of size {kernel.shape[-1]} does not fit in {size}")
    return F.pad(kernel, [pad] * 4) if pad else kernel


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------

class NCHWtoNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class LayerNormChannelsFirst(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor.

    Runs ``F.layer_norm`` on an NHWC view: free when the input is channels-last in memory, and the
    result comes back as an NCHW view of channels-last memory.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRNwithNHWC(nn.Module):
    """Global Response Normalization (ConvNeXt V2) on NHWC input.

    ``Nx = ||x||_2 over (H, W) / (mean over C of that + 1e-6)``; ``out = (gamma * Nx + 1) * x + beta``.
    The scale is computed on the small (N, 1, 1, C) tensor and applied in one fused pass.
    """

    def __init__(self, dim: int, use_bias: bool = True):
        super().__init__()
        self.use_bias = use_bias
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        if use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        scale = torch.addcmul(torch.ones_like(nx), self.gamma, nx)
        if self.use_bias:
            return torch.addcmul(self.beta, x, scale)
        return x * scale


class SEBlock(nn.Module):
    """Squeeze-and-excitation with 1x1 convs named ``down`` / ``up``."""

    def __init__(self, dim: int, internal_dim: int):
        super().__init__()
        self.down = nn.Conv2d(dim, internal_dim, 1, bias=True)
        self.up = nn.Conv2d(internal_dim, dim, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.up(F.relu(self.down(s), inplace=True)))
        return x * s


def _depthwise(dim: int, kernel_size: int, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    padding = (dilation * (kernel_size - 1) + 1) // 2
    return nn.Conv2d(dim, dim, kernel_size, stride=1, padding=padding, dilation=dilation,
                     groups=dim, bias=bias)


class DilatedReparamBlock(nn.Module):
    """A large depthwise kernel plus parallel dilated small kernels, each with its own BatchNorm.

    In the inference form the branches are merged into ``lk_origin`` (with bias).
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False):
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(
                f"DilatedReparamBlock: kernel_size={kernel_size} is not supported; "
                f"use one of {sorted(DILATED_BRANCHES)}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.kernel_sizes, self.dilates = DILATED_BRANCHES[kernel_size]
        self.lk_origin = _depthwise(channels, kernel_size, bias=deploy)
        if not deploy:
            self.origin_bn = nn.BatchNorm2d(channels)
            for k, r in zip(self.kernel_sizes, self.dilates):
                self.add_module(f"dil_conv_k{k}_{r}", _depthwise(channels, k, dilation=r))
                self.add_module(f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels))

    @property
    def deployed(self) -> bool:
        return not hasattr(self, "origin_bn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in zip(self.kernel_sizes, self.dilates):
            conv = getattr(self, f"dil_conv_k{k}_{r}")
            bn = getattr(self, f"dil_bn_k{k}_{r}")
            out = out + bn(conv(x))
        return out

    def merged_kernel(self, dilated: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """The single (weight, bias) that this block computes in eval mode; with
        ``dilated=False``, that of its large kernel alone (the dilated branches dropped)."""
        if self.deployed:
            if not dilated:
                raise ValueError("DilatedReparamBlock: the dilated branches are already merged "
                                 "into one kernel (inference form); they cannot be dropped")
            return self.lk_origin.weight, self.lk_origin.bias
        w, b = merge_bn_into_conv(self.lk_origin.weight, None, self.origin_bn)
        for k, r in zip(self.kernel_sizes, self.dilates) if dilated else ():
            bw, bb = merge_bn_into_conv(getattr(self, f"dil_conv_k{k}_{r}").weight, None,
                                        getattr(self, f"dil_bn_k{k}_{r}"))
            w = w + pad_kernel_to(dilate_kernel(bw, r), self.kernel_size)
            b = b + bb
        return w, b

    @torch.no_grad()
    def reparameterize(self, dilated: bool = True) -> None:
        """Into the inference form: one K x K conv with bias. ``dilated=False`` drops the
        dilated branches instead of merging them (kernel surgery: the large kernel alone)."""
        if self.deployed and dilated:
            return
        w, b = self.merged_kernel(dilated)
        conv = _depthwise(self.channels, self.kernel_size, bias=True).to(w.device, w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        self.lk_origin = conv
        del self.origin_bn
        for k, r in zip(self.kernel_sizes, self.dilates):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")


class UniRepLKNetBlock(nn.Module):
    """``x + gamma * pwconv2(act(pwconv1(se(norm(dwconv(x))))))``."""

    def __init__(self, dim: int, kernel_size: int, drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = 1e-6, deploy: bool = False,
                 ffn_factor: int = 4):
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        if kernel_size == 0:
            self.dwconv = nn.Identity()
            self.norm = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy)
            self.norm = nn.Identity() if deploy else nn.BatchNorm2d(dim)
        elif kernel_size in (3, 5):
            self.dwconv = _depthwise(dim, kernel_size, bias=deploy)
            self.norm = nn.Identity() if deploy else nn.BatchNorm2d(dim)
        else:
            raise ValueError(f"UniRepLKNetBlock: kernel_size={kernel_size} is not supported; "
                             f"use one of {SUPPORTED_KERNEL_SIZES}")
        self.se = SEBlock(dim, dim // 4)
        ffn_dim = int(ffn_factor * dim)
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, ffn_dim))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(ffn_dim, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim), NHWCtoNCHW(), nn.Identity())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim, bias=False), NHWCtoNCHW(),
                                         nn.BatchNorm2d(dim))
        use_ls = (not deploy) and layer_scale_init_value is not None and layer_scale_init_value > 0
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if use_ls else None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            if isinstance(self.drop_path, nn.Identity):
                return torch.addcmul(x, y, self.gamma.view(1, -1, 1, 1))
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)

    @property
    def deployed(self) -> bool:
        """No BatchNorm, GRN bias, layer scale or unmerged branch left: the inference form."""
        dw_fused = not isinstance(self.dwconv, DilatedReparamBlock) or self.dwconv.deployed
        return (dw_fused and not isinstance(self.norm, nn.BatchNorm2d)
                and not isinstance(self.pwconv2[2], nn.BatchNorm2d)
                and not self.act[1].use_bias and self.gamma is None)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every BatchNorm, the GRN bias and the layer scale into convs and linears."""
        if isinstance(self.norm, nn.BatchNorm2d):
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.reparameterize()
                conv = self.dwconv.lk_origin
            else:
                conv = self.dwconv
            w, b = merge_bn_into_conv(conv.weight, conv.bias, self.norm)
            fused = _depthwise(self.dim, conv.kernel_size[0], bias=True).to(w.device, w.dtype)
            fused.weight.copy_(w)
            fused.bias.copy_(b)
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.lk_origin = fused
            else:
                self.dwconv = fused
            self.norm = nn.Identity()
        elif isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.reparameterize()

        grn = self.act[1]
        linear = self.pwconv2[0]
        bn = self.pwconv2[2]
        if not isinstance(bn, nn.BatchNorm2d) and not grn.use_bias and self.gamma is None:
            return  # already in the inference form
        w = linear.weight
        b = linear.bias if linear.bias is not None else w.new_zeros(w.shape[0])
        if grn.use_bias:
            # W (z + beta) = W z + W beta
            b = b + w @ grn.beta.reshape(-1)
            del grn.beta
            grn.use_bias = False
        if isinstance(bn, nn.BatchNorm2d):
            w, b = merge_bn_into_conv(w, b, bn)
        if self.gamma is not None:
            w = w * self.gamma.unsqueeze(1)
            b = b * self.gamma
            self.gamma = None
        fused = nn.Linear(w.shape[1], w.shape[0]).to(w.device, w.dtype)
        fused.weight.copy_(w)
        fused.bias.copy_(b)
        self.pwconv2 = nn.Sequential(fused, NHWCtoNCHW(), nn.Identity())


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

def _check_kernel_sizes(kernel_sizes, depths) -> Tuple[Tuple[int, ...], ...]:
    if kernel_sizes is None:
        key = tuple(depths)
        if key not in DEFAULT_KERNEL_SIZES:
            raise ValueError(
                f"UniRepLKNet: no default kernel_sizes for depths={key}; pass kernel_sizes "
                f"(one tuple per stage, one kernel size per block). Defaults exist for "
                f"{sorted(DEFAULT_KERNEL_SIZES)}")
        return DEFAULT_KERNEL_SIZES[key]
    kernel_sizes = tuple(tuple(int(k) for k in stage) for stage in kernel_sizes)
    if len(kernel_sizes) != len(depths):
        raise ValueError(f"UniRepLKNet: kernel_sizes has {len(kernel_sizes)} stages but depths "
                         f"has {len(depths)}")
    for i, (ks, d) in enumerate(zip(kernel_sizes, depths)):
        if len(ks) != d:
            raise ValueError(f"UniRepLKNet: stage {i} has depth {d} but {len(ks)} kernel sizes "
                             f"{ks}")
        for j, k in enumerate(ks):
            if k not in SUPPORTED_KERNEL_SIZES:
                why = "even kernel sizes have no centre" if k % 2 == 0 and k > 0 else "unsupported"
                raise ValueError(
                    f"UniRepLKNet: stage {i} block {j} has kernel size {k} ({why}); use one of "
                    f"{SUPPORTED_KERNEL_SIZES}")
    return kernel_sizes


class UniRepLKNet(nn.Module):
    """UniRepLKNet for image classification (and as an OpenCLIP image trunk).

    Args:
        in_chans: input channels.
        num_classes: classifier width; 0 gives pooled, normalized features.
        depths: blocks per stage (4 stages).
        dims: channels per stage.
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        layer_scale_init_value: initial layer scale (``None`` or 0 disables it).
        head_init_scale: multiplies the classifier's initial weights and bias.
        kernel_sizes: per stage, per block depthwise kernel size; defaults by ``depths``.
        deploy: build the inference (re-parameterized) form directly.
        global_pool: ``"avg"`` or ``""`` (no pooling: the head is applied at every position).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            depths: Sequence[int] = (3, 3, 27, 3),
            dims: Sequence[int] = (96, 192, 384, 768),
            drop_path_rate: float = 0.,
            layer_scale_init_value: Optional[float] = 1e-6,
            head_init_scale: float = 1.,
            kernel_sizes: Optional[Sequence[Sequence[int]]] = None,
            deploy: bool = False,
            global_pool: str = "avg",
            drop_rate: float = 0.,
            **kwargs,
    ):
        super().__init__()
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        if kwargs:
            raise TypeError(f"UniRepLKNet: unexpected arguments {sorted(kwargs)}")
        depths = tuple(int(d) for d in depths)
        dims = tuple(int(d) for d in dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"UniRepLKNet: depths and dims need 4 stages, got depths={depths}, "
                             f"dims={dims}")
        if in_chans < 1:
            raise ValueError(f"UniRepLKNet: in_chans must be >= 1, got {in_chans}")
        self.kernel_sizes = _check_kernel_sizes(kernel_sizes, depths)
        self._check_pool(global_pool)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.depths = depths
        self.dims = dims
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1),
            LayerNormChannelsFirst(dims[0] // 2, eps=1e-6),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
            LayerNormChannelsFirst(dims[0], eps=1e-6),
        ))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=3, stride=2, padding=1),
                LayerNormChannelsFirst(dims[i + 1], eps=1e-6),
            ))

        n_blocks = sum(depths)
        dp_rates = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            self.stages.append(nn.Sequential(*[
                UniRepLKNetBlock(dims[i], self.kernel_sizes[i][j], drop_path=dp_rates[cur + j],
                                 layer_scale_init_value=layer_scale_init_value, deploy=deploy)
                for j in range(depths[i])
            ]))
            cur += depths[i]
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}") for i in range(4)]

        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()

        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            self.head.weight.data.mul_(head_init_scale)
            self.head.bias.data.mul_(head_init_scale)

    @staticmethod
    def _check_pool(global_pool: str) -> None:
        if global_pool not in ("avg", ""):
            raise ValueError(f"UniRepLKNet: global_pool={global_pool!r} is not supported; use "
                             f"'avg' or ''")

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if m.weight.device.type != "meta":
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # --- timm vocabulary ------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r"^downsample_layers\.0",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^downsample_layers\.(\d+)", None),
                (r"^stages\.(\d+)\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self._check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            self._init_weights(self.head)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"UniRepLKNet expects input of shape (N, {self.in_chans}, H, W), "
                             f"got {tuple(x.shape)}")

    def _run_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample_layers[i](x)
        if self.grad_checkpointing and not torch.jit.is_scripting() and x.requires_grad:
            return checkpoint_seq(self.stages[i], x)
        return self.stages[i](x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H/32, W/32), before the final norm."""
        self._check_input(x)
        for i in range(4):
            x = self._run_stage(i, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = self.norm(x.mean(dim=(-2, -1)))
            x = self.head_drop(x)
            return x if pre_logits else self.head(x)
        # no pooling: norm and head at every position, result stays NCHW
        x = self.norm(x.permute(0, 2, 3, 1))
        x = self.head_drop(x)
        if not pre_logits:
            x = self.head(x)
        return x.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (after ``downsample_layers[i]`` and ``stages[i]``), timm style.

        ``indices``: which stages (an int n takes the last n). ``norm`` is accepted for timm's
        interface; UniRepLKNet has no per-stage norm in its classification form, so it is a no-op.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        intermediates = []
        last = max_index if stop_early else len(self.stages) - 1
        for i in range(last + 1):
            x = self._run_stage(i, x)
            if i in take_indices:
                intermediates.append(x if output_fmt == "NCHW" else x.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        self.downsample_layers = self.downsample_layers[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    @torch.no_grad()
    def reparameterize(self) -> "UniRepLKNet":
        """Convert in place to the inference form; returns ``self``."""
        for m in self.modules():
            if isinstance(m, UniRepLKNetBlock):
                m.reparameterize()
        return self

    @property
    def deploy(self) -> bool:
        """Whether the tower is in the inference form, read from its blocks (so that a tower fused
        by ``timm.utils.reparameterize_model``, which calls each block, says so too)."""
        blocks = [m for m in self.modules() if isinstance(m, UniRepLKNetBlock)]
        return bool(blocks) and all(b.deployed for b in blocks)


# ----------------------------------------------------------------------------------------------
# Checkpoint filter, builders, registry
# ----------------------------------------------------------------------------------------------

def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: UniRepLKNet
                         ) -> Dict[str, torch.Tensor]:
    """Map foreign layouts onto the tower's own names, through the package's one checkpoint
    mapping (:mod:`unirepclip.models.loading`: wrapper dicts, ``module.`` prefixes, a whole
    open_clip CLIP or a bare tower); keys outside the trunk (a text tower, a bias-free CLIP
    projection) are left out."""
    sd, _ = unwrap_state_dict(state_dict)
    _, canonical = detect_layout(sd)
    prefix = "visual.trunk."
    return {k[len(prefix):]: v for k, v in canonical.items() if k.startswith(prefix)}


def _create_unireplknet(variant: str, pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return build_model_with_cfg(
        UniRepLKNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=False),
        **kwargs,
    )


def _cfg(**kwargs) -> Dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "downsample_layers.0.0", "classifier": "head",
        "license": "apache-2.0", "paper_ids": "arXiv:2311.15599", **kwargs,
    }


default_cfgs = generate_default_cfgs({f"unireplknet_{v}": _cfg() for v in VARIANTS})


def _variant_kwargs(v: str, kwargs: Dict) -> Dict:
    args = dict(VARIANTS[v])
    args.update(kwargs)
    return args


@register_model
def unireplknet_a(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_a", pretrained, **_variant_kwargs("a", kwargs))


@register_model
def unireplknet_f(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_f", pretrained, **_variant_kwargs("f", kwargs))


@register_model
def unireplknet_p(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_p", pretrained, **_variant_kwargs("p", kwargs))


@register_model
def unireplknet_n(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_n", pretrained, **_variant_kwargs("n", kwargs))


@register_model
def unireplknet_t(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_t", pretrained, **_variant_kwargs("t", kwargs))


@register_model
def unireplknet_s(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_s", pretrained, **_variant_kwargs("s", kwargs))


@register_model
def unireplknet_b(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_b", pretrained, **_variant_kwargs("b", kwargs))


@register_model
def unireplknet_l(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_l", pretrained, **_variant_kwargs("l", kwargs))


@register_model
def unireplknet_xl(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_xl", pretrained, **_variant_kwargs("xl", kwargs))


# The workbook's demo tower: small enough to train on two CPU cores, still with large dilated
# kernels (13) in stages 1-3. Its control twin has the same depth and width with every kernel 3x3.
DEMO_DEPTHS = (1, 1, 2, 1)
DEMO_DIMS = (24, 48, 96, 192)
DEMO_KERNEL_SIZES = ((3,), (13,), (13, 3), (13,))
DEMO_SMALL_KERNEL_SIZES = ((3,), (3,), (3, 3), (3,))
default_cfgs.update(generate_default_cfgs({
    "unireplknet_demo": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    "unireplknet_demo_small_kernel": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
}))


@register_model
def unireplknet_demo(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=DEMO_DEPTHS, dims=DEMO_DIMS, kernel_sizes=DEMO_KERNEL_SIZES)
    args.update(kwargs)
    return _create_unireplknet("unireplknet_demo", pretrained, **args)


@register_model
def unireplknet_demo_small_kernel(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=DEMO_DEPTHS, dims=DEMO_DIMS, kernel_sizes=DEMO_SMALL_KERNEL_SIZES)
    args.update(kwargs)
    return _create_unireplknet("unireplknet_demo_small_kernel", pretrained, **args)
