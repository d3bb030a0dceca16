"""The small helpers every layer shares, each in one place.

This module is the bottom of the package: it imports no other ``unirepclip`` module, so that models,
data, features, eval, analysis, viz, training and workbook can all use it.

* precision: one vocabulary (:data:`PRECISIONS`), one check, one autocast context;
* modes and devices: :func:`eval_mode` (restores each submodule's own mode), :func:`module_device`,
  :func:`resolve_device`, :func:`set_seed`;
* arrays: :func:`l2_normalize`, :func:`softmax` (scipy's), :func:`max_relative_difference`;
* files: :func:`file_sha256`;
* pixels: :func:`normalize_images` / :func:`denormalize_images` with open_clip's OpenAI statistics.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.special import softmax as _scipy_softmax

# What a notebook's ``precision`` may say (fp32, or bf16 autocast; the weights stay fp32): the
# torch-free vocabulary, which the workbook's parameter check reads too.
from unirepclip.vocab import PRECISIONS
from torch import nn

__all__ = ["PRECISIONS", "check_precision", "autocast", "eval_mode", "module_device",
           "resolve_device", "set_seed", "l2_normalize", "softmax", "max_relative_difference",
           "file_sha256", "normalization_stats", "normalize_images", "denormalize_images"]



def check_precision(precision: Any, name: str = "precision") -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`; else raise a ``ValueError`` naming
    ``name`` and the allowed values."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name}={precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: Union[str, torch.device], precision: str):
    """``torch.autocast`` in bf16 for ``precision="bf16"``, a no-op context for ``fp32``."""
    check_precision(precision)
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` and all its children in eval mode for the block, then restore each one's own
    mode (BatchNorm must not mix the images of a batch; a caller's half-frozen model stays so)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


def module_device(module: Any, default: Optional[torch.device] = None) -> Optional[torch.device]:
    """The device of ``module``'s first parameter (or buffer); ``default`` when it has none or is
    not a module."""
    if isinstance(module, nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return default


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; else the named device (CUDA checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available here; "
                           f"use device='cpu' or 'auto'")
    return dev


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def l2_normalize(x: np.ndarray, name: str = "array", *, eps: Optional[float] = None) -> np.ndarray:
    """Rows of a 2-D array divided by their L2 norms.

    With ``eps=None`` an all-zero row is an error naming ``name`` and the row; with a number the
    norm is clamped from below by it (the zero row stays zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if eps is None:
        zero = np.flatnonzero(norm.reshape(-1) == 0)
        if zero.size:
            raise ValueError(f"{name}: row {int(zero[0])} is all zeros and cannot be L2-normalized")
        return x / norm
    return x / np.maximum(norm, eps)


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """scipy's numerically stable softmax over ``axis``."""
    return _scipy_softmax(np.asarray(logits), axis=axis)


def _as_float64(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def max_relative_difference(reference: Any, other: Any) -> float:
    """``max |other - reference| / max |reference|``: the largest deviation relative to the
    reference's scale, in float64."""
    a, b = _as_float64(reference, "reference"), _as_float64(other, "other")
    if a.shape != b.shape:
        raise ValueError(f"max_relative_difference: shapes differ: reference {a.shape} vs "
                         f"other {b.shape}")
    scale = np.abs(a).max() if a.size else 0.0
    if scale == 0:
        raise ValueError("max_relative_difference: the reference is all zeros: a relative "
                         "difference is undefined")
    return float(np.abs(b - a).max() / scale)


_sha_cache: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: Union[str, os.PathLike], *, memo: bool = True) -> str:
    """sha256 of a file, memoized per (path, size, mtime) within the process unless
    ``memo=False`` (an integrity check of a file that may have changed in place)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if not memo:
        _sha_cache.pop(key, None)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def normalization_stats(mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std tensors: open_clip's OpenAI statistics unless given."""
    import open_clip

    m = torch.tensor(open_clip.OPENAI_DATASET_MEAN if mean is None else mean,
                     dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(open_clip.OPENAI_DATASET_STD if std is None else std,
                     dtype=torch.float32).view(1, -1, 1, 1)
    return m, s


def normalize_images(images: np.ndarray, *, mean: Optional[Sequence[float]] = None,
                     std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """uint8 pictures (N, H, W, 3) -> normalized model inputs (N, 3, H, W), exactly as the val
    transform does (open_clip's OpenAI statistics by default)."""
    m, s = normalization_stats(mean, std)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - m) / s


def denormalize_images(images: Any, *, mean: Optional[Sequence[float]] = None,
                       std: Optional[Sequence[float]] = None) -> np.ndarray:
    """Normalized model inputs (N, 3, H, W) back to uint8 pictures (N, H, W, 3) for display."""
    m, s = normalization_stats(mean, std)
    x = torch.as_tensor(images).detach().float().cpu() * s + m
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@contextlib.contextmanager
def capture_input(module: Optional[torch.nn.Module], store: list) -> Iterator[bool]:
    """Append the first positional input of ``module`` (detached) to ``store`` on every call
    while the context is open; yields whether there is a module to watch (None: nothing)."""
    if module is None:
        yield False
        return
    handle = module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach()))
    try:
        yield True
    finally:
        handle.remove()
