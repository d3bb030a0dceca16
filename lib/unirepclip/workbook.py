"""What every notebook does first: seed, pick the device, load the model named by its parameters.

Notebook parameters shared by all notebooks (the runner's profiles set them):

* ``model_name``: a registered config (``UniRepLKNet-Demo``, ``CLIP-UniRepLKNet-L`` ...) or a JSON path;
* ``checkpoint``: ``"demo"`` for the checkpoint shipped with the package, ``""`` for random weights,
  else a file path or ``hf-hub:<repo>[/<file>]``;
* ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``), ``precision`` (``"fp32"`` or ``"bf16"``, autocast);
* ``seed``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available here; "
                           f"use device='cpu' or 'auto'")
    return dev


def resolve_checkpoint(checkpoint: Optional[str], model_name: Optional[str] = None) -> Optional[str]:
    """``"demo"`` -> the shipped checkpoint of the demo recipe for ``model_name`` (the demo CLIP
    when ``model_name`` is None; its 3x3 control for ``UniRepLKNet-Demo-SmallKernel``);
    ``""``/None -> None (random weights); else a path (checked) or ``hf-hub:...``."""
    if checkpoint in (None, "", "none", "random"):
        return None
    if checkpoint == "demo":
        from .demo import MODEL_NAME, demo_checkpoint_path
        return str(demo_checkpoint_path(model_name or MODEL_NAME))
    if not str(checkpoint).startswith("hf-hub:") and not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: no such file")
    return str(checkpoint)


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for ``bf16``/``fp16`` precision, a no-op context for ``fp32``."""
    if precision in ("bf16", "amp_bf16", "amp_bfloat16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision in ("fp16", "amp"):
        return torch.autocast(device.type, dtype=torch.float16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")


@dataclasses.dataclass
class Loaded:
    model: Any
    preprocess: Any
    preprocess_train: Any
    tokenizer: Any
    device: torch.device
    precision: str
    checkpoint: Optional[str]
    model_name: str

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)


def load(model_name: str, checkpoint: Optional[str] = "demo", *, device: str = "auto",
         precision: str = "fp32", deploy: bool = False, channels_last: bool = False,
         force_image_size: Optional[int] = None) -> Loaded:
    """Load the model a notebook's parameters name; weights stay fp32, ``precision`` is autocast."""
    from .factory import create_model_and_transforms, get_tokenizer

    dev = resolve_device(device)
    ckpt = resolve_checkpoint(checkpoint, str(model_name))
    model, pre_train, pre_val = create_model_and_transforms(
        model_name, pretrained=ckpt, device=dev, force_image_size=force_image_size,
        deploy=deploy)
    if channels_last:
        model.visual.to(memory_format=torch.channels_last)
    autocast(dev, precision)  # validates the name early
    return Loaded(model, pre_val, pre_train, get_tokenizer(model_name), dev, precision, ckpt,
                  str(model_name))
