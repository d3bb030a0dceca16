"""The notebook parameters the models layer gives meaning to (see :mod:`unirepclip.vocab`):
which model, which weights, which precision. Torch-free: the workbook checks them before anything
loads, ``--dry-run`` included."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from unirepclip.models import CONFIG_DIR
from unirepclip.models.pretrained import demo_model_names
from unirepclip.vocab import PRECISIONS, Param, Range

__all__ = ["PARAMETERS", "model_names", "stage_count", "check_checkpoint"]

#: Stages of each tower family with a fixed layout, by its timm name's prefix.
_FAMILY_STAGES = {"unireplknet": 4}


def model_names() -> Tuple[str, ...]:
    """The model configs shipped with the package (:func:`unirepclip.models.list_models`)."""
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


def _config(model_name: str) -> Optional[dict]:
    path = CONFIG_DIR / f"{model_name}.json" if model_name in model_names() else Path(model_name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stage_count(model_name: str) -> Optional[int]:
    """How many stages the image tower of ``model_name`` has, from its config (no weights): the
    family's fixed count, else the tower built on the meta device; None when it cannot tell."""
    cfg = _config(model_name)
    if not isinstance(cfg, dict):
        return None
    vision = cfg.get("vision_cfg") or {}
    depths = (vision.get("timm_model_kwargs") or {}).get("depths")
    if isinstance(depths, (list, tuple)) and depths:
        return len(depths)
    tower = str(vision.get("timm_model_name") or "")
    for prefix, n in _FAMILY_STAGES.items():
        if tower.startswith(prefix):
            return n
    try:  # another tower: build it without weights and count
        from unirepclip.models.factory import create_model
        trunk = create_model(model_name, device="meta").visual.trunk
        return len(trunk.stages)
    except Exception:
        return None


def check_checkpoint(value: Any, values: Mapping[str, Any], model_key: str = "model_name"
                     ) -> Optional[str]:
    """``checkpoint="demo"`` names the demo recipe's weights for the notebook's model: a model the
    recipe does not train has none."""
    model = values.get(model_key)
    if value == "demo" and model in model_names() and model not in demo_model_names():
        return (f"'demo' names the shipped weights of {', '.join(demo_model_names())} only, not "
                f"of {model!r}: give a checkpoint file, or '' for random weights")
    return None


_MODEL = Range(names=model_names, path="file", path_suffix=".json", empty=None)
_CHECKPOINT = Range(choices=("demo",), path="file", empty="random weights")

PARAMETERS: Tuple[Param, ...] = (
    Param("model_name", "str", "a model config shipped with the package, or a config .json file",
          _MODEL),
    Param("control_model_name", "str", "the control model's config ('' skips the control)",
          Range(names=model_names, path="file", path_suffix=".json", empty="no control")),
    Param("checkpoint", "str",
          "'demo' (the shipped weights), '' (random weights), a file, or hf-hub:<repo>[/<file>]",
          _CHECKPOINT, relation=check_checkpoint),
    Param("control_checkpoint", "str", "the control's weights, as for checkpoint", _CHECKPOINT,
          relation=lambda v, values: check_checkpoint(v, values, "control_model_name")),
    Param("precision", "str", "compute precision of the forward passes (autocast)",
          Range(choices=PRECISIONS)),
    Param("model_key", "str", "the model's name in results.json"),
    Param("control_key", "str", "the control's name in results.json"),
    Param("deploy", "bool", "load the re-parameterized inference form"),
    Param("channels_last", "bool", "run the image tower in channels-last memory format"),
)
