"""The weights shipped inside the package, and what ``checkpoint="demo"`` resolves to.

The demo recipe (:mod:`unirepclip.training.demo`) trains the checkpoints stored in ``weights/``:
the demo CLIP and its 3x3 control, each with a JSON of its recipe and figures beside it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["MODEL_NAME", "CONTROL_MODEL_NAME", "WEIGHTS_DIR", "checkpoint_name", "demo_model_names",
           "demo_checkpoint_path", "demo_metadata", "resolve_checkpoint"]

MODEL_NAME = "UniRepLKNet-Demo"
CONTROL_MODEL_NAME = "UniRepLKNet-Demo-SmallKernel"  # same depth and width, 3x3 kernels: the ERF control
WEIGHTS_DIR = Path(__file__).parent / "weights"
# file stems of the recipe's checkpoints: <stem>.safetensors, with <stem>.json beside it
_STEMS = {MODEL_NAME: "unireplknet_demo_clip", CONTROL_MODEL_NAME: "unireplknet_demo_small_kernel_clip"}


def demo_model_names() -> tuple:
    """The models the demo recipe trains (whose ``checkpoint="demo"`` is shipped)."""
    return tuple(sorted(_STEMS))


def checkpoint_name(model: str = MODEL_NAME) -> str:
    """File name (``.safetensors``) of the demo recipe's checkpoint for ``model``."""
    if model not in _STEMS:
        raise ValueError(f"model={model!r}: the demo recipe trains {sorted(_STEMS)} only")
    return _STEMS[model] + ".safetensors"


def demo_checkpoint_path(model: str = MODEL_NAME) -> Path:
    """A shipped checkpoint of the demo recipe (raises with a clear message if it is missing)."""
    path = WEIGHTS_DIR / checkpoint_name(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo checkpoint {path} is missing from the package; train it with "
            f"`python -m unirepclip train-demo --model {model} --out {WEIGHTS_DIR}`")
    return path


def demo_metadata(model: str = MODEL_NAME) -> Dict[str, Any]:
    """The JSON stored beside a shipped checkpoint (recipe, data seed, figures, sha256)."""
    return json.loads(demo_checkpoint_path(model).with_suffix(".json").read_text())


def resolve_checkpoint(checkpoint: Optional[str], model_name: Optional[str] = None) -> Optional[str]:
    """``"demo"`` -> the shipped checkpoint of the demo recipe for ``model_name`` (the demo CLIP
    when ``model_name`` is None; its 3x3 control for ``UniRepLKNet-Demo-SmallKernel``);
    ``""``/None -> None (random weights); else a path (checked) or ``hf-hub:...``."""
    if checkpoint in (None, "", "none", "random"):
        return None
    if checkpoint == "demo":
        return str(demo_checkpoint_path(model_name or MODEL_NAME))
    if not str(checkpoint).startswith("hf-hub:") and not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: no such file")
    return str(checkpoint)
