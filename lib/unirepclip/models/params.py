"""The notebook parameters the models layer gives meaning to (see :mod:`unirepclip.vocab`):
which model, which weights, which precision. Torch-free: the workbook checks them before anything
loads, ``--dry-run`` included."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from unirepclip.models import CONFIG_DIR
from unirepclip.models.openclip_names import (HF_HUB, local_dir_problem, openclip_config,
                                              openclip_model_names, pretrained_tags, schema_of)
from unirepclip.models.pretrained import demo_model_names
from unirepclip.vocab import PRECISIONS, Param, Range

__all__ = ["PARAMETERS", "model_names", "stage_count", "check_checkpoint", "check_model_name",
           "MODEL_KEYS", "KEY_OF", "key_for", "follow_key", "other_model_entries",
           "check_other_models"]

#: Stages of each tower family with a fixed layout, by its timm name's prefix.
_FAMILY_STAGES = {"unireplknet": 4}


def model_names() -> Tuple[str, ...]:
    """The model configs shipped with the package (:func:`unirepclip.models.list_models`)."""
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


#: The results.json keys that name one model (its configs): a run of another model under one of
#: them would file its figures as that model's (:func:`follow_key`).
MODEL_KEYS: Mapping[str, Tuple[str, ...]] = {
    "demo": ("UniRepLKNet-Demo",),
    "demo_small_kernel": ("UniRepLKNet-Demo-SmallKernel",),
    "demo_vit": ("ViT-Demo",),
    "clip_unireplknet_l": ("CLIP-UniRepLKNet-L", "CLIP-UniRepLKNet-L-320"),
}
#: A key-naming parameter and the model parameter whose model it names.
KEY_OF: Tuple[Tuple[str, str], ...] = (("model_key", "model_name"),
                                       ("control_key", "control_model_name"),
                                       ("peer_key", "peer_model_name"))


def key_for(model_name: str) -> str:
    """A model's results.json key: its own from :data:`MODEL_KEYS`, else its name (the last part
    of a local-dir: or hf-hub: one) in lower case with every other character run as ``_``
    (``ViT-B-32`` -> ``vit_b_32``)."""
    for key, owners in MODEL_KEYS.items():
        if model_name in owners:
            return key
    name = re.split(r"[/:]", str(model_name).rstrip("/"))[-1]
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "model"


def follow_key(key: str, model_name: Any) -> str:
    """``key`` unless it is another known model's own key (:data:`MODEL_KEYS`), then
    :func:`key_for` the model: ``-p model_name=ViT-B-32`` on a profile whose ``model_key`` is
    ``demo`` records under ``vit_b_32``, not as the demo's figures. A key of the user's own, a
    model that is not a known name (a config .json, which may be a copy of the demo's) or no
    model ('') keep the key as given."""
    owners = MODEL_KEYS.get(key)
    known = isinstance(model_name, str) and (model_name in model_names()
                                             or _is_openclip_name(model_name))
    if owners is None or not known or model_name in owners:
        return key
    return key_for(model_name)


def _is_openclip_name(name: Any) -> bool:
    """An open_clip model the package does not ship: a built-in open_clip name or a schema."""
    return isinstance(name, str) and name not in model_names() and (
        bool(schema_of(name)) or name in openclip_model_names())


def _config(model_name: str) -> Optional[dict]:
    if _is_openclip_name(model_name):
        return openclip_config(model_name)  # None for hf-hub: (its config is read on load)
    path = CONFIG_DIR / f"{model_name}.json" if model_name in model_names() else Path(model_name)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else cfg


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
    if not tower:
        return None  # open_clip's own towers (ViT, ModifiedResNet): no timm stages to count
    try:  # another timm tower: build it on the meta device, without weights, and count
        from unirepclip.models.factory import create_model
        trunk = create_model(model_name, device="meta", load_weights=False).visual.trunk
        return len(trunk.stages)
    except Exception:
        return None


def check_model_name(value: Any, values: Mapping[str, Any]) -> Optional[str]:
    """An open_clip name is one open_clip ships; a ``local-dir:`` folder holds its config; an
    ``hf-hub:`` name has the form ``hf-hub:<org>/<repo>`` (its files are looked for on load)."""
    if not isinstance(value, str) or value in model_names() or value.endswith(".json"):
        return None
    schema = schema_of(value)
    if schema == "local-dir":
        return local_dir_problem(value)
    if schema == "hf-hub":
        repo = value[len(HF_HUB):].strip("/")
        return None if repo.count("/") == 1 else f"expected hf-hub:<org>/<repo>, got {value!r}"
    if value in openclip_model_names():
        return None
    return (f"must be a .json file, one of {', '.join(model_names())}, an open_clip model name "
            f"(open_clip.list_models()), local-dir:<folder> or hf-hub:<org>/<repo>; got "
            f"{value!r}")


def check_checkpoint(value: Any, values: Mapping[str, Any], model_key: str = "model_name"
                     ) -> Optional[str]:
    """``checkpoint="demo"`` names the demo recipe's weights for the notebook's model: a model the
    recipe does not train has none. A pretrained tag must be one of the notebook's open_clip
    model; a ``local-dir:`` / ``hf-hub:`` model brings its own weights (``''``) or takes a file."""
    model = values.get(model_key)
    if value == "demo" and (model in model_names() or _is_openclip_name(model)) \
            and model not in demo_model_names():
        return (f"'demo' names the shipped weights of {', '.join(demo_model_names())} only, not "
                f"of {model!r}: give a checkpoint file, or '' for random weights")
    if not (isinstance(value, str) and _CHECKPOINT.pattern
            and re.fullmatch(_CHECKPOINT.pattern, value)) or value == "demo":
        return None
    if os.path.isfile(value):
        return None  # a file that happens to be named like a tag
    tags = pretrained_tags(model) if _is_openclip_name(model) and not schema_of(model) else ()
    if tags is None or value in (tags or ()):
        return None  # (None: open_clip's table could not be read; the loader checks the tag)
    if isinstance(model, str) and schema_of(model):
        return (f"{value!r} is a pretrained tag, but {model} brings its own weights: give '' "
                f"for them, or a checkpoint file")
    return (f"{value!r} is not a pretrained tag of {model!r} (its tags: "
            f"{', '.join(tags) or 'none'}) and names no file")


def other_model_entries(entries: Any) -> List[Tuple[str, str, str]]:
    """A notebook's ``other_models`` list as ``[(model_name, checkpoint, results key)]``: each
    entry is ``"name"`` (the model's shipped demo weights when the demo recipe trains it, else
    ``''``: random weights, or a ``local-dir:`` / ``hf-hub:`` model's own) or
    ``"name=checkpoint"`` (a file, a pretrained tag, ``demo``; ``"name="`` for random weights);
    the key is :func:`key_for` the model (``ViT-Demo`` -> ``demo_vit``). Two entries with one
    key are refused."""
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"other_models: expected a list of 'name' or 'name=checkpoint', got "
                         f"{entries!r}")
    out = []
    for entry in entries:
        name, eq, checkpoint = str(entry).partition("=")
        name, checkpoint = name.strip(), checkpoint.strip()
        if not isinstance(entry, str) or not name:
            raise ValueError(f"other_models: {entry!r} is not 'name' or 'name=checkpoint'")
        if not eq:
            checkpoint = "demo" if name in demo_model_names() else ""
        out.append((name, checkpoint, key_for(name)))
    keys = [k for _, _, k in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"other_models: two entries share a results key ({', '.join(keys)})")
    return out


def check_other_models(value: Any, values: Mapping[str, Any]) -> Optional[str]:
    """Every ``other_models`` entry names a model and weights the notebook could load."""
    try:
        entries = other_model_entries(value)
    except ValueError as e:
        return str(e).partition(": ")[2]
    problems = []
    for name, checkpoint, _ in entries:
        problem = check_model_name(name, {}) or check_checkpoint(
            checkpoint, {"model_name": name})
        if problem:
            problems.append(f"{name}: {problem}")
    return "; ".join(problems) or None


def _pattern(names: Tuple[str, ...]) -> Optional[str]:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or None


def _all_tags() -> Tuple[str, ...]:
    tags = {t for m in openclip_model_names() for t in (pretrained_tags(m) or ())}
    return tuple(sorted(tags))


# open_clip's names and tags are read as names (no file is looked for), listed apart from the
# package's own in the messages (there are over a hundred); their checks are the relations above
_MODEL = Range(names=model_names, pattern=_pattern(openclip_model_names()), path="file",
               path_suffix=".json", empty=None)
_CHECKPOINT = Range(choices=("demo",), pattern=_pattern(_all_tags()), path="file",
                    empty="random weights")

PARAMETERS: Tuple[Param, ...] = (
    Param("model_name", "str",
          "a model config shipped with the package, an open_clip model name (ViT-B-32 ...), "
          "local-dir:<folder> or hf-hub:<org>/<repo> (open_clip's), or a config .json file",
          _MODEL, relation=check_model_name),
    Param("control_model_name", "str", "the control model's config ('' skips the control)",
          Range(names=model_names, path="file", path_suffix=".json", empty="no control")),
    Param("checkpoint", "str",
          "'demo' (the shipped weights), '' (random weights; a local-dir: or hf-hub: model's "
          "own), a file, hf-hub:<repo>[/<file>], or a pretrained tag of an open_clip model",
          _CHECKPOINT, relation=check_checkpoint),
    Param("control_checkpoint", "str", "the control's weights, as for checkpoint", _CHECKPOINT,
          relation=lambda v, values: check_checkpoint(v, values, "control_model_name")),
    Param("precision", "str", "compute precision of the forward passes (autocast)",
          Range(choices=PRECISIONS)),
    Param("peer_model_name", "str",
          "another architecture measured beside the model, named as model_name ('' skips it)",
          dataclasses.replace(_MODEL, empty="no peer"),
          relation=lambda v, values: None if v == "" else check_model_name(v, values)),
    Param("peer_checkpoint", "str", "the peer's weights, as for checkpoint", _CHECKPOINT,
          relation=lambda v, values: check_checkpoint(v, values, "peer_model_name")),
    Param("model_key", "str", "the model's name in results.json (another known model's own "
          "key given below model_name, such as the demo profile's 'demo', follows the model)"),
    Param("other_models", "list",
          "further towers scored beside the model and its control: 'name' (its shipped demo "
          "weights, else random or its own) or 'name=checkpoint'", relation=check_other_models),
    Param("control_key", "str", "the control's name in results.json"),
    Param("peer_key", "str", "the peer's name in results.json"),
    Param("deploy", "bool", "load the re-parameterized inference form"),
    Param("channels_last", "bool", "run the image tower in channels-last memory format"),
)
