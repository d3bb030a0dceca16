"""Model creation: configs as data, one factory, open_clip's conventions.

``create_model_and_transforms(name_or_config, pretrained=...)`` builds an open_clip ``CLIP`` whose
image tower is a UniRepLKNet trunk (open_clip's ``TimmModel``), loads a checkpoint of any layout
that :mod:`unirepclip.models.loading` recognizes, and returns open_clip's train / val transforms.
Any other open_clip model (a built-in name such as ``ViT-B-32``, ``local-dir:``, ``hf-hub:``, or a
config with another image tower) is built by open_clip itself and loaded by the same loader:
:mod:`unirepclip.models.openclip_models`.

When a checkpoint is given, parameters are created on the meta device and the file's tensors are
assigned in place (memory-mapped where the format allows), so a 2.3 GB checkpoint is never held
twice and no random initialization is spent on weights about to be overwritten.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import open_clip
from open_clip.model import CLIP
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

from unirepclip.models import CONFIG_DIR
from unirepclip.models.loading import (attach_report, fit_report, load_prepared,
                                       prepare_checkpoint, refuse_or_warn)
from unirepclip.models.openclip_models import (create_openclip, is_openclip_model,
                                               mismatch_message, openclip_config,
                                               openclip_tokenizer)

_logger = logging.getLogger(__name__)

#: What ``create_model(precision=...)`` may cast the weights to (open_clip's meaning of the word):
#: not the notebooks' compute precision (:data:`unirepclip.vocab.PRECISIONS`, autocast).
WEIGHT_CASTS = ("fp32", "bf16", "fp16", "amp", "amp_bf16", "amp_bfloat16")

_REQUIRED_FIELDS = {
    "": ("embed_dim", "vision_cfg", "text_cfg"),
    "vision_cfg": ("timm_model_name", "image_size"),
    "text_cfg": ("context_length", "vocab_size", "width", "heads", "layers"),
}


def list_models() -> list:
    """The UniRepLKNet CLIP configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _validate_config(cfg: Dict[str, Any], source: str) -> Dict[str, Any]:
    import timm

    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: a model config must be a JSON object, got {type(cfg).__name__}")
    if "model_cfg" in cfg and "embed_dim" not in cfg:  # open_clip_config.json style
        cfg = cfg["model_cfg"]
    for section, fields in _REQUIRED_FIELDS.items():
        where = cfg if not section else cfg.get(section)
        if not isinstance(where, dict):
            raise ValueError(f"{source}: missing field '{section}'")
        for f in fields:
            if f not in where:
                name = f"{section}.{f}" if section else f
                raise ValueError(f"{source}: missing field '{name}'")
    tower = cfg["vision_cfg"]["timm_model_name"]
    if not str(tower).startswith("unireplknet_") or not timm.is_model(tower):
        known = ", ".join(n for n in timm.list_models("unireplknet_*"))
        raise ValueError(f"{source}: field 'vision_cfg.timm_model_name' names an unknown tower "
                         f"{tower!r}; known UniRepLKNet towers: {known}")
    proj = cfg["vision_cfg"].get("timm_proj", "linear")
    if proj not in ("", "linear"):
        raise ValueError(f"{source}: field 'vision_cfg.timm_proj' must be '' or 'linear', got "
                         f"{proj!r}")
    pool = cfg["vision_cfg"].get("timm_pool", "avg")
    # timm_proj '': the trunk is built with global_pool=timm_pool and its head projects; with
    # 'linear' a non-empty pool resets the trunk's and '' keeps its default (average). The tower
    # pools by 'avg' or not at all, and only a pooled trunk gives one embedding per image.
    if pool not in ("", "avg"):
        raise ValueError(f"{source}: field 'vision_cfg.timm_pool' is {pool!r}, with "
                         f"vision_cfg.timm_proj {proj!r}: encode_image would not return one "
                         f"vector per image (UniRepLKNet pools by 'avg'); use 'avg' or ''")
    return cfg


def resolve_pooling(cfg: Dict[str, Any]) -> Tuple[Dict[str, Any], list]:
    """``(cfg, notes)``: a config written for the reference tower, ``timm_pool: ""`` with the
    trunk's head as the projection (``timm_proj: ""``), average-pools as the reference does
    (it ignores ``global_pool``), instead of timm's meaning of ``""`` (no pooling: a feature map
    per image). The tower itself keeps timm's meaning."""
    vision = cfg["vision_cfg"]
    if vision.get("timm_pool", "avg") == "" and vision.get("timm_proj", "linear") == "":
        cfg = copy.deepcopy(cfg)
        cfg["vision_cfg"]["timm_pool"] = "avg"
        return cfg, ["vision_cfg.timm_pool '' with timm_proj '' (a config written for the "
                     "reference UniRepLKNet, which ignores the pool argument) resolved to 'avg', "
                     "as the reference pools: one embedding per image"]
    return cfg, []


def get_model_config(name_or_config: Union[str, os.PathLike, Dict[str, Any]]) -> Dict[str, Any]:
    """A deep copy of a config: a registered name, a JSON file path, or a dict; for an open_clip
    model (:func:`~unirepclip.models.openclip_models.is_openclip_model`), open_clip's config."""
    if is_openclip_model(name_or_config):
        return openclip_config(name_or_config)
    if isinstance(name_or_config, dict):
        return copy.deepcopy(_validate_config(name_or_config, "model config"))
    s = str(name_or_config)
    if s in list_models():
        path = CONFIG_DIR / f"{s}.json"
    elif s.endswith(".json") or os.path.sep in s:
        path = Path(s)
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} does not exist")
    else:
        raise ValueError(f"unknown model {s!r}: not one of {list_models()}, an open_clip model "
                         f"name (open_clip.list_models()), local-dir:<folder>, hf-hub:<org>/<repo> "
                         f"or a config JSON path")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model config {path} is not valid JSON: {e}") from None
    return _validate_config(cfg, f"model config {path}")


def config_name(name_or_config: Union[str, os.PathLike, Dict[str, Any]]) -> str:
    if isinstance(name_or_config, dict):
        return "custom"
    s = str(name_or_config)
    if not s.endswith(".json") and (":" in s or os.path.sep not in s):
        return s  # a registered or open_clip name, local-dir: or hf-hub: as given
    return Path(s).stem


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create module *parameters* on the meta device; buffers stay real.

    Non-persistent buffers (open_clip's causal attention mask, say) are computed at construction
    and never stored in a checkpoint, so they must exist for real; parameters are about to be
    replaced by the checkpoint's tensors and need no memory or initialization.
    """
    original = nn.Module.register_parameter

    def register(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def _to_inference_form(model: CLIP, cfg: Dict[str, Any], meta: bool) -> None:
    trunk = model.visual.trunk
    if meta or next(trunk.parameters()).is_meta:
        # nothing to preserve: build the inference form directly
        import timm
        model.visual.trunk = timm.create_model(
            cfg["vision_cfg"]["timm_model_name"], num_classes=trunk.num_classes,
            global_pool=trunk.global_pool, deploy=True)
    else:
        trunk.reparameterize()


def build_model(cfg: Dict[str, Any], *, meta: bool = False, force_image_size=None,
                deploy: bool = False) -> CLIP:
    """Build the (randomly initialized, or parameter-less with ``meta=True``) CLIP from a config."""
    cfg = copy.deepcopy(resolve_pooling(cfg)[0])
    if force_image_size is not None:
        cfg["vision_cfg"]["image_size"] = force_image_size
    ctx = parameters_on_meta() if meta else contextlib.nullcontext()
    with ctx:
        model = CLIP(**cfg)
        if deploy:
            _to_inference_form(model, cfg, meta)
    model.unirepclip_config = cfg
    return model


def _cast(model: nn.Module, precision: str) -> None:
    if precision in ("fp32", "amp", "amp_bf16", "amp_bfloat16"):
        model.float()  # a no-op for fp32 weights; widens an fp16 checkpoint
    elif precision == "bf16":
        model.to(torch.bfloat16)
    elif precision == "fp16":
        model.to(torch.float16)


def _finish(model: CLIP, name_or_config: Any, device: Union[str, torch.device],
            precision: str) -> CLIP:
    """What every built model gets last, whoever built it: its name, eval mode, the device and
    the weight cast."""
    model.unirepclip_name = config_name(name_or_config)
    model.eval()
    model.to(device)
    _cast(model, precision)
    return model


def get_preprocess_cfg(model: CLIP) -> Dict[str, Any]:
    cfg = {"size": model.visual.image_size}
    cfg["mean"] = open_clip.OPENAI_DATASET_MEAN
    cfg["std"] = open_clip.OPENAI_DATASET_STD
    return merge_preprocess_dict(PreprocessCfg(), cfg)


def _build_and_load(cfg: Dict[str, Any], pretrained: Union[str, os.PathLike], *, strict: bool,
                    force_image_size, deploy: bool, allow_nonfinite: bool = False,
                    config_notes: Sequence[str] = ()) -> CLIP:
    """Build the CLIP that fits the file (its form), then load the file into it."""
    prepared = prepare_checkpoint(pretrained, cfg, allow_nonfinite=allow_nonfinite)
    prepared.notes.extend(config_notes)
    layout = prepared.layout
    if layout.form == "inference" and not deploy:
        prepared.notes.append("the file is in the re-parameterized inference form: the tower is "
                              "built in that form")
    if layout.form == "training" and deploy:
        prepared.notes.append("loaded in the training form, then re-parameterized")
    # Parameters on meta + assign: no random init, no second copy. Only when every parameter
    # will come from the file; otherwise build for real and copy.
    fast = layout.kind == "open_clip"
    stored_inference = layout.form == "inference"
    model = build_model(cfg, meta=fast, force_image_size=force_image_size, deploy=stored_inference)
    report = fit_report(prepared, model.state_dict())
    if not report.ok:
        msg = mismatch_message(prepared, report, f"model config (embed_dim {cfg['embed_dim']}, "
                                                 f"tower {cfg['vision_cfg']['timm_model_name']})")
        refuse_or_warn(msg, report, strict)
        if fast:  # parameters on meta cannot stay missing: rebuild for real
            model = build_model(cfg, force_image_size=force_image_size, deploy=stored_inference)
            fast = False
    load_prepared(model, prepared, assign=fast)
    if deploy and not stored_inference:
        # fuse in fp32 whatever the file's dtype (an fp16 fusion is off by ~1e-4); create_model
        # casts to the requested precision afterwards
        model.visual.trunk.float().reparameterize()
    attach_report(model, report)
    return model


def create_model(
        name_or_config: Union[str, os.PathLike, Dict[str, Any]],
        pretrained: Optional[str] = None,
        *,
        device: Union[str, torch.device] = "cpu",
        precision: str = "fp32",
        force_image_size: Optional[int] = None,
        strict: bool = True,
        deploy: bool = False,
        allow_nonfinite: bool = False,
        load_weights: bool = True,
) -> CLIP:
    """Build a CLIP-UniRepLKNet and load ``pretrained`` (any recognized layout) into it; any other
    open_clip model through open_clip (:mod:`unirepclip.models.openclip_models`: ``pretrained``
    may also be one of its pretrained tags; a ``local-dir:`` / ``hf-hub:`` model loads its own
    weights when ``pretrained`` is None).

    ``deploy=True`` returns the tower in the re-parameterized inference form (an open_clip tower
    without one loads as it is, said in the load report's notes). A checkpoint stored
    in the inference form always gives an inference-form tower. A checkpoint with NaN or infinite
    weights is refused unless ``allow_nonfinite``. ``load_weights=False``: the architecture at a
    random initialization, whatever the source holds (open_clip's meaning). Notes on how the
    config was read (see :func:`resolve_pooling`) go to the load report
    (``model.load_report.notes``), and to the log when there is no checkpoint.
    """
    if precision not in WEIGHT_CASTS:
        raise ValueError(f"precision (a weight cast) must be one of {', '.join(WEIGHT_CASTS)}, "
                         f"got {precision!r}")
    if is_openclip_model(name_or_config):
        model = create_openclip(name_or_config, pretrained, load_weights=load_weights,
                                force_image_size=force_image_size, strict=strict,
                                allow_nonfinite=allow_nonfinite,
                                meta=torch.device(device).type == "meta")
        if deploy:  # the inference form of a tower without re-parameterization is itself
            note = (f"deploy=True: the image tower ({type(model.visual).__name__}) has no "
                    f"re-parameterized form (UniRepLKNet's); loaded as it is")
            if model.load_report is not None:
                model.load_report.notes.append(note)
            _logger.info("%s: %s", config_name(name_or_config), note)
        return _finish(model, name_or_config, device, precision)
    cfg, config_notes = resolve_pooling(get_model_config(name_or_config))
    if not load_weights:
        pretrained = None
    if pretrained is None:
        model = build_model(cfg, force_image_size=force_image_size, deploy=deploy)
        attach_report(model, None)
        for note in config_notes:
            _logger.info("model config: %s", note)
    else:
        model = _build_and_load(cfg, pretrained, strict=strict, force_image_size=force_image_size,
                                deploy=deploy, allow_nonfinite=allow_nonfinite,
                                config_notes=config_notes)
    open_clip.set_model_preprocess_cfg(model, get_preprocess_cfg(model))
    return _finish(model, name_or_config, device, precision)


def create_model_and_transforms(
        name_or_config: Union[str, os.PathLike, Dict[str, Any]],
        pretrained: Optional[str] = None,
        *,
        device: Union[str, torch.device] = "cpu",
        precision: str = "fp32",
        force_image_size: Optional[int] = None,
        strict: bool = True,
        deploy: bool = False,
        allow_nonfinite: bool = False,
        load_weights: bool = True,
) -> Tuple[CLIP, Any, Any]:
    """``(model, preprocess_train, preprocess_val)`` in open_clip's manner."""
    model = create_model(name_or_config, pretrained, device=device, precision=precision,
                         force_image_size=force_image_size, strict=strict, deploy=deploy,
                         allow_nonfinite=allow_nonfinite, load_weights=load_weights)
    pp = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
    return model, image_transform_v2(pp, is_train=True), image_transform_v2(pp, is_train=False)


def get_tokenizer(name_or_config: Union[str, os.PathLike, Dict[str, Any]]):
    """open_clip's BPE tokenizer with the config's context length; an open_clip model's own
    tokenizer (:func:`open_clip.get_tokenizer`)."""
    if is_openclip_model(name_or_config):
        return openclip_tokenizer(name_or_config)
    cfg = get_model_config(name_or_config)
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
