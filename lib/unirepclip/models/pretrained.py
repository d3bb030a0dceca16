"""The weights shipped inside the package, and what ``checkpoint="demo"`` resolves to.

The demo recipe (:mod:`unirepclip.training.demo`) trains the checkpoints stored in ``weights/``:
the demo CLIP and its 3x3 control, each with a JSON of its recipe, figures and sha256 beside it.

The recorded sha256 is what makes ``"demo"`` mean *these* weights: :func:`resolve_checkpoint`
refuses a file whose digest is not the recorded one (:class:`ModifiedDemoCheckpointError`), and
:func:`shipped_demo` tells inspection and the run's provenance which shipped checkpoint a file is,
or that it is a modified one. Torch-free: the workbook's parameter checks import this module.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

__all__ = ["MODEL_NAME", "CONTROL_MODEL_NAME", "VIT_MODEL_NAME", "WEIGHTS_DIR", "ModifiedDemoCheckpointError",
           "checkpoint_name", "demo_model_names", "demo_checkpoint_path", "demo_metadata",
           "demo_sha256", "shipped_demo", "verified_demo_path", "resolve_checkpoint"]

MODEL_NAME = "UniRepLKNet-Demo"
CONTROL_MODEL_NAME = "UniRepLKNet-Demo-SmallKernel"  # same depth and width, 3x3 kernels: the ERF control
VIT_MODEL_NAME = "ViT-Demo"  # open_clip's ViT tower, same text tower and recipe: the third architecture
WEIGHTS_DIR = Path(__file__).parent / "weights"
# file stems of the recipe's checkpoints: <stem>.safetensors, with <stem>.json beside it
_STEMS = {MODEL_NAME: "unireplknet_demo_clip", CONTROL_MODEL_NAME: "unireplknet_demo_small_kernel_clip",
          VIT_MODEL_NAME: "vit_demo_clip"}


class ModifiedDemoCheckpointError(ValueError):
    """A shipped demo checkpoint whose sha256 is not the one recorded beside it."""


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


def demo_sha256(model: str = MODEL_NAME) -> str:
    """The sha256 recorded for ``model``'s shipped checkpoint (its JSON's ``sha256``)."""
    meta = demo_metadata(model)
    if not isinstance(meta.get("sha256"), str):
        raise ValueError(f"{demo_checkpoint_path(model).with_suffix('.json')}: no 'sha256' "
                         f"recorded for the demo checkpoint of {model}")
    return meta["sha256"]


_digests: Dict[Tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, memoized per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def _recorded() -> Dict[str, Tuple[Path, str]]:
    """Each demo model's shipped file and recorded sha256, for those whose record is there."""
    out = {}
    for model in demo_model_names():
        path = WEIGHTS_DIR / checkpoint_name(model)
        try:
            out[model] = (path, demo_sha256(model))
        except (OSError, ValueError):
            continue
    return out


def shipped_demo(path: Union[str, os.PathLike], sha256: Optional[str] = None) -> Dict[str, Any]:
    """Which shipped demo checkpoint ``path`` is: ``{"model", "sha256", "recorded_sha256",
    "modified"}``. ``model`` is the demo model whose recorded digest the file has (``modified``
    False), else the one whose shipped file it is or whose file name it bears (``modified``
    True: not the weights recorded for it); ``{}`` when it is none of them. ``sha256``: the
    file's digest when the caller has it (a large file is then not read again)."""
    p = Path(path)
    sha, records = sha256 or _sha256(p), _recorded()
    for model, (_, recorded) in records.items():
        if sha == recorded:
            return {"model": model, "sha256": sha, "recorded_sha256": recorded, "modified": False}
    for model, (shipped, recorded) in records.items():
        if p.name == shipped.name or (shipped.is_file() and os.path.samefile(p, shipped)):
            return {"model": model, "sha256": sha, "recorded_sha256": recorded, "modified": True}
    return {}


def verified_demo_path(model: str = MODEL_NAME) -> Path:
    """The shipped checkpoint of ``model``, its sha256 checked against the recorded one: a file
    changed after it was recorded (a zeroed tensor still loads, and scores at chance) raises
    :class:`ModifiedDemoCheckpointError` naming the file and both digests."""
    path = demo_checkpoint_path(model)
    sha, recorded = _sha256(path), demo_sha256(model)
    if sha != recorded:
        raise ModifiedDemoCheckpointError(
            f"checkpoint='demo': {path} is not the shipped demo checkpoint of {model}: its sha256 "
            f"is {sha}, the one recorded in {path.with_suffix('.json').name} is {recorded} (the "
            f"file was modified or replaced). Restore it (reinstall the package or `git checkout` "
            f"the file), retrain it with `python -m unirepclip train-demo --model {model} --out "
            f"{WEIGHTS_DIR}` (which records its digest), or pass its path as the checkpoint to "
            f"load it as any other file")
    return path


def resolve_checkpoint(checkpoint: Optional[str], model_name: Optional[str] = None) -> Optional[str]:
    """``"demo"`` -> the shipped checkpoint of the demo recipe for ``model_name`` (the demo CLIP
    when ``model_name`` is None; its 3x3 control for ``UniRepLKNet-Demo-SmallKernel``), its
    sha256 checked (:func:`verified_demo_path`); ``""``/None -> None (random weights, or the own
    weights of a ``local-dir:`` / ``hf-hub:`` model); a pretrained tag of an open_clip
    ``model_name`` as it is (the factory finds its file); else a path (checked) or
    ``hf-hub:...``."""
    if checkpoint in (None, "", "none", "random"):
        return None
    if checkpoint == "demo":
        return str(verified_demo_path(model_name or MODEL_NAME))
    if not str(checkpoint).startswith("hf-hub:") and not Path(checkpoint).exists():
        tags = _openclip_tags(model_name)
        if tags is not None and checkpoint in tags:
            return str(checkpoint)
        known = f" nor a pretrained tag of {model_name} ({', '.join(tags)})" if tags else ""
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: no such file{known}")
    return str(checkpoint)


def _openclip_tags(model_name: Optional[str]) -> Optional[Tuple[str, ...]]:
    """The pretrained tags of an open_clip model name (not one of the package's configs)."""
    from unirepclip.models import CONFIG_DIR
    from unirepclip.models.openclip_names import openclip_model_names, pretrained_tags

    if not model_name or (CONFIG_DIR / f"{model_name}.json").is_file() \
            or model_name not in openclip_model_names():
        return None
    return pretrained_tags(model_name)
