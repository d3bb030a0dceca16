"""Any open_clip model besides the UniRepLKNet configs: built by open_clip, loaded by our loader.

A model name that is not one of the package's UniRepLKNet configs is open_clip's business: the
package's own ``ViT-Demo`` (a config in ``model_configs/`` with open_clip's ViT tower), a built-in name
(``ViT-B-32``, ``convnext_xxlarge`` ...; :func:`open_clip.list_models`), ``local-dir:<folder>``
(a folder open_clip's ``save_for_hf`` wrote: ``open_clip_config.json`` beside the weights),
``hf-hub:<org>/<repo>`` (the same, in the Hugging Face cache), or a config ``.json`` / dict whose
image tower is not UniRepLKNet. :func:`open_clip.create_model` builds it (``load_weights=False``:
the architecture, its preprocessing, no download) and :func:`open_clip.get_tokenizer` gives its
tokenizer; the weights then go through :mod:`unirepclip.models.loading`, so an open_clip file has
the checks ours have: the zip CRC-32 of a torch file, NaN / infinite tensors named, and the key
report (missing, unexpected, mis-shaped keys named; nothing loads partially in silence).

Weights: ``pretrained`` is a file, ``hf-hub:<repo>[/<file>]``, or one of the model's pretrained
tags (:func:`open_clip.list_pretrained_tags_by_model`), found in the local cache (the Hugging Face
cache, or ``~/.cache/clip`` for a URL) or downloaded when there is a network; offline, a file not
in the cache fails at once, naming the file and where it goes. A ``local-dir:`` or ``hf-hub:``
model brings its own weights (loaded when ``pretrained`` is None; a file given overrides them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

from unirepclip.models import CONFIG_DIR
from unirepclip.models.loading import (CheckpointError, attach_report, fit_report, hf_offline,
                                       hub_file, is_unireplknet_config, load_prepared,
                                       prepare_checkpoint, refuse_or_warn, unreachable)
from unirepclip.models.openclip_names import (CONFIG_FILE, HF_HUB, LOCAL_DIR, local_dir_problem,
                                              openclip_model_names, schema_of)

__all__ = ["is_openclip_model", "openclip_config", "create_openclip", "openclip_tokenizer",
           "mismatch_message"]

# open_clip's weight file names (open_clip.constants), in its order of preference
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_CLIP_URL_CACHE = "~/.cache/clip"  # where open_clip's download_pretrained_from_url puts a file

NameOrConfig = Union[str, os.PathLike, Dict[str, Any]]


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        cfg = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model config {path} is not valid JSON: {e}") from None
    if isinstance(cfg, dict) and "model_cfg" in cfg and "embed_dim" not in cfg:
        cfg = cfg["model_cfg"]  # open_clip_config.json
    if not isinstance(cfg, dict):
        raise ValueError(f"model config {path}: a model config must be a JSON object")
    return cfg


def is_openclip_model(name_or_config: NameOrConfig) -> bool:
    """Whether ``name_or_config`` is built by open_clip rather than as a UniRepLKNet CLIP: an
    open_clip name or schema, or a config whose image tower is not ``unireplknet_*``."""
    if isinstance(name_or_config, dict):
        cfg = name_or_config.get("model_cfg", name_or_config)
        return isinstance(cfg, dict) and "vision_cfg" in cfg and not is_unireplknet_config(cfg)
    s = str(name_or_config)
    if (CONFIG_DIR / f"{s}.json").is_file():  # a config of this package: the demo ViT is open_clip's
        return not is_unireplknet_config(_read_json(CONFIG_DIR / f"{s}.json"))
    if schema_of(s):
        return True
    if s.endswith(".json") or os.path.sep in s:
        path = Path(s)
        if not path.is_file():
            return False  # the factory says the file is missing
        cfg = _read_json(path)
        return isinstance(cfg.get("vision_cfg"), dict) and not is_unireplknet_config(cfg)
    return s in openclip_model_names()


@dataclasses.dataclass
class _Source:
    """What open_clip builds (``build_name``: a built-in name or ``local-dir:<folder>``), the
    config, and the weights the source brings (``own_weights()``, None when it brings none)."""
    label: str
    build_name: str
    cfg: Dict[str, Any]
    own_weights: Callable[[], Optional[str]] = lambda: None
    builtin: bool = False
    temporary: bool = False  # a config given as a file or dict, written to a temporary folder


def _weights_in(folder: Path, label: str) -> str:
    """The weights file of a folder open_clip saved, in open_clip's order of preference."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return str(folder / name)
    others = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt")
                    for p in folder.glob(ext))
    if not others:
        raise CheckpointError(f"model_name={label!r}: {folder} holds no weights file "
                              f"({' or '.join(_WEIGHT_FILES)}); pass checkpoint=FILE, or "
                              f"checkpoint '' for random weights")
    return str(others[0])


def _check_config(cfg: Dict[str, Any], source: str) -> None:
    """The fields open_clip needs, and a timm tower timm knows, named before open_clip fails."""
    for field in ("embed_dim", "vision_cfg", "text_cfg"):
        if field not in cfg:
            raise ValueError(f"{source}: missing field '{field}'")
    tower = cfg["vision_cfg"].get("timm_model_name")
    if tower:
        import timm
        if not timm.is_model(tower):
            raise ValueError(f"{source}: field 'vision_cfg.timm_model_name' names a tower timm "
                             f"does not know: {tower!r}")


@contextlib.contextmanager
def _source(name_or_config: NameOrConfig) -> Iterator[_Source]:
    """Where open_clip finds the model: a config given as a file or dict is written, for the
    build's duration, as a ``local-dir:`` folder (open_clip's own way to take a config)."""
    registered = (not isinstance(name_or_config, dict)
                  and (CONFIG_DIR / f"{name_or_config}.json").is_file())
    if isinstance(name_or_config, dict) or str(name_or_config).endswith(".json") or registered:
        cfg = (dict(name_or_config) if isinstance(name_or_config, dict)
               else _read_json(CONFIG_DIR / f"{name_or_config}.json") if registered
               else _read_json(Path(str(name_or_config))))
        cfg = cfg.get("model_cfg", cfg) if "embed_dim" not in cfg else cfg
        label = "custom" if isinstance(name_or_config, dict) else str(name_or_config)
        _check_config(cfg, "model config" if label == "custom" else f"model config {label}")
        with tempfile.TemporaryDirectory(prefix="unirepclip-openclip-") as tmp:
            (Path(tmp) / CONFIG_FILE).write_text(json.dumps({"model_cfg": cfg}))
            yield _Source(label, LOCAL_DIR + tmp, cfg, temporary=True)
        return
    s = str(name_or_config)
    schema = schema_of(s)
    if schema == "local-dir":
        problem = local_dir_problem(s)
        if problem:
            raise FileNotFoundError(f"model_name={problem}")
        folder = Path(s[len(LOCAL_DIR):]).expanduser()
        yield _Source(s, LOCAL_DIR + str(folder), _read_json(folder / CONFIG_FILE),
                      lambda: _weights_in(folder, s))
    elif schema == "hf-hub":
        repo = s[len(HF_HUB):].strip("/")
        if repo.count("/") != 1:
            raise ValueError(f"model_name={s!r}: expected hf-hub:<org>/<repo>")
        config = hub_file(repo, (CONFIG_FILE,), f"model_name={s!r}")
        yield _Source(s, LOCAL_DIR + str(config.parent), _read_json(config),
                      lambda: str(hub_file(repo, _WEIGHT_FILES, f"model_name={s!r}")))
    else:
        import open_clip

        cfg = open_clip.get_model_config(s)
        if cfg is None:
            raise ValueError(f"unknown model {s!r}: not a config of this package nor an "
                             f"open_clip model (open_clip.list_models())")
        yield _Source(s, s, cfg, builtin=True)


def openclip_config(name_or_config: NameOrConfig) -> Dict[str, Any]:
    """The open_clip config (``embed_dim``, ``vision_cfg``, ``text_cfg`` ...) of an open_clip
    model name, schema, file or dict."""
    with _source(name_or_config) as src:
        return json.loads(json.dumps(src.cfg))


def _tag_file(model: str, tag: str, pcfg: Dict[str, Any]) -> str:
    """The local file of a pretrained tag, as open_clip's ``download_pretrained`` finds it (the
    hub file first, a URL's in ``~/.cache/clip``), without waiting on a network that is not
    there."""
    what = f"checkpoint={tag!r} (pretrained tag of {model})"
    if pcfg.get("file"):
        return str(pcfg["file"])
    if pcfg.get("hf_hub"):
        repo, filename = os.path.split(pcfg["hf_hub"])
        if not filename:
            candidates: Tuple[str, ...] = _WEIGHT_FILES
        elif filename.endswith((".bin", ".pth")):
            candidates = (filename[:-4] + ".safetensors", filename)
        else:
            candidates = (filename,)
        return str(hub_file(repo, candidates, what))
    url = str(pcfg.get("url") or "")
    target = Path(_CLIP_URL_CACHE).expanduser() / os.path.basename(url)
    if target.is_file():
        return str(target)
    why = "offline (HF_HUB_OFFLINE=1)" if hf_offline() else unreachable(url)
    if why:
        raise CheckpointError(f"{what}: {target} is not there, and {url} cannot be reached "
                              f"({why}). Download {url} to {target}, or pass the file as "
                              f"checkpoint=FILE")
    from open_clip.pretrained import download_pretrained_from_url
    return download_pretrained_from_url(url)


def _weights(src: _Source, pretrained: Optional[str]) -> Tuple[Optional[str], Dict[str, Any]]:
    """``(weights file or None, the tag's pretrained config)`` for ``pretrained``."""
    if pretrained in (None, ""):
        return src.own_weights(), {}
    p = str(pretrained)
    if p.startswith(HF_HUB) or os.path.isfile(p):
        return p, {}
    if src.builtin:
        import open_clip

        pcfg = open_clip.get_pretrained_cfg(src.label, p)
        if pcfg:
            return _tag_file(src.label, p, pcfg), pcfg
        tags = open_clip.list_pretrained_tags_by_model(src.label)
        raise CheckpointError(f"checkpoint={p!r}: no such file, and not a pretrained tag of "
                              f"{src.label} (its tags: {', '.join(tags) or 'none'})")
    raise CheckpointError(f"checkpoint={p!r}: no such file ({src.label} has no pretrained tags)")


class _DropWarnings(logging.Filter):
    """open_clip's warnings that are not true of what the factory does: that a model built with
    ``load_weights=False`` is random (the loader fills it next), or that a config written to a
    temporary folder has no weights beside it."""

    def __init__(self, prefixes: Tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _build(src: _Source, *, meta: bool, force_image_size, quick_gelu: bool,
           loading: bool) -> torch.nn.Module:
    import open_clip
    from unirepclip.models.factory import parameters_on_meta

    kwargs = dict(load_weights=False, pretrained_image=False, pretrained_text=False,
                  force_image_size=force_image_size, force_quick_gelu=quick_gelu)
    # meta: what the parameter checks count (stages), no memory, no initialization, no weights
    quiet = _DropWarnings(("No pretrained weights loaded",) * (loading or meta)
                          + ("Local config loaded, but no CLIP weights",) * src.temporary)
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with parameters_on_meta() if meta else contextlib.nullcontext():
            return open_clip.create_model(src.build_name, device="meta" if meta else "cpu",
                                          **kwargs)
    finally:
        root.removeFilter(quiet)


def _convert(model: torch.nn.Module, sd: Dict[str, torch.Tensor]
             ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """open_clip's own conversions of a state dict to a model (what its ``load_checkpoint`` does
    before loading), each one said in a note."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import (convert_to_custom_text_state_dict, resize_pos_embed,
                                 resize_text_pos_embed)

    notes = []
    sd = convert_state_dict(model, dict(sd))
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
        notes.append("text tower keys moved under text. (open_clip's custom-text layout)")
    for key in ("logit_scale", "logit_bias"):
        mine = getattr(model, key, None)
        if key in sd and isinstance(mine, torch.Tensor) and sd[key].ndim != mine.ndim:
            sd[key] = sd[key].reshape(mine.shape)
    shapes = {k: tuple(v.shape) for k, v in sd.items() if k.endswith("positional_embedding")}
    resize_pos_embed(sd, model)
    resize_text_pos_embed(sd, model)
    for k, before in shapes.items():
        if k in sd and tuple(sd[k].shape) != before:
            notes.append(f"{k} interpolated from {before} to {tuple(sd[k].shape)} (open_clip's "
                         f"resize_pos_embed)")
    return sd, notes


def mismatch_message(prepared, report, model: str) -> str:
    """One headline line naming the file, the model and the first keys that do not fit, then
    the key report."""
    parts = []
    for what, keys in (("missing", report.missing), ("unexpected", report.unexpected),
                       ("mis-shaped", [k for k, *_ in report.mismatched])):
        if keys:
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    return (f"{prepared.source} does not fit {model}: {'; '.join(parts)}\n{report.summary()}")


def create_openclip(name_or_config: NameOrConfig, pretrained: Optional[str] = None, *,
                    load_weights: bool = True, force_image_size=None, strict: bool = True,
                    allow_nonfinite: bool = False, meta: bool = False) -> torch.nn.Module:
    """Build an open_clip model through open_clip and load ``pretrained`` (see the module's
    docstring) through :mod:`unirepclip.models.loading`; on the CPU in the file's dtype, or on
    the meta device with ``meta=True`` (nothing loaded)."""
    import open_clip
    from open_clip.transform import merge_preprocess_dict

    with _source(name_or_config) as src:
        weights, pcfg = (_weights(src, pretrained) if load_weights and not meta else (None, {}))
        quick = bool(pcfg.get("quick_gelu")) and not src.cfg.get("quick_gelu")
        model = _build(src, meta=meta, force_image_size=force_image_size, quick_gelu=quick,
                       loading=weights is not None or not load_weights)
        cfg = src.cfg
    model.unirepclip_config = cfg
    if pcfg:
        open_clip.set_model_preprocess_cfg(model, merge_preprocess_dict(
            open_clip.get_model_preprocess_cfg(model), pcfg))
    if weights is None:
        attach_report(model, None)
        return model
    prepared = prepare_checkpoint(weights, cfg, allow_nonfinite=allow_nonfinite)
    sd, notes = _convert(model, prepared.state_dict)
    if quick:
        notes.append(f"QuickGELU, as the pretrained tag {pretrained!r} was trained with")
    prepared = dataclasses.replace(prepared, state_dict=sd, notes=prepared.notes + notes)
    report = fit_report(prepared, model.state_dict())
    if not report.ok:
        msg = mismatch_message(prepared, report, src.label)
        refuse_or_warn(msg, report, strict)
    load_prepared(model, prepared, assign=True)
    attach_report(model, report)
    return model


def openclip_tokenizer(name_or_config: NameOrConfig):
    """open_clip's tokenizer for the model (:func:`open_clip.get_tokenizer`)."""
    import open_clip

    with _source(name_or_config) as src:
        return open_clip.get_tokenizer(src.build_name)
