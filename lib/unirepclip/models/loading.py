"""Checkpoint reading, layout detection and conversion: state dict in, state dict out.

The loader never builds a model: :func:`unirepclip.models.factory.create_model` builds the model that
fits a :class:`PreparedCheckpoint`, then loads it (open_clip's order). Inspection is
:mod:`unirepclip.models.inspection`.

One place maps every layout a user may hold onto the package's canonical CLIP layout (open_clip's
``CLIP`` with the UniRepLKNet trunk's own head as the image projection, ``timm_proj: ""``):

* ``open_clip``: the whole CLIP model, projection as ``visual.trunk.head.weight`` + ``bias`` or as
  ``visual.head.proj.weight`` without bias (``timm_proj: "linear"``);
* ``tower``: the image tower alone with UniRepLKNet's own key names (what the model card's quick
  start assumes), with a CLIP projection head, an ImageNet classifier head, or none;
* either of these inside a wrapper dict (``state_dict``, ``model``, ``module``, ``ema`` ...), with
  ``module.`` / ``visual.trunk.`` prefixes, in the training or the re-parameterized inference form;
* stored as ``.safetensors``, a torch pickle (read with ``weights_only=True``: a pickle that would run
  code is refused), or ``hf-hub:<repo>[/<file>]`` from huggingface_hub's cache.

The layout is detected from the keys, never from the file name. Nothing loads partially in silence:
missing, unexpected or mis-shaped keys raise :class:`CheckpointMismatchError` listing them unless
``strict=False`` was asked for, in which case the same report is logged and kept on the model as
``model.load_report``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

_logger = logging.getLogger(__name__)

# The dicts a training script wraps its weights in; the DDP / torch.compile key prefixes
# (module., _orig_mod.) are timm's clean_state_dict's business.
WRAPPER_KEYS = ("state_dict", "model", "module", "ema", "model_ema", "state_dict_ema", "params")
TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight")
HF_CANDIDATE_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                      "model.safetensors", "pytorch_model.bin",
                      "UniRepLKNet-L-b75k_s10B_CLIP-in1k_75.72.pt")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit; the message names the file."""


class CheckpointMismatchError(CheckpointError):
    """The file's tensors do not match the model's (missing / unexpected / mis-shaped)."""

    def __init__(self, message: str, report: "LoadReport"):
        super().__init__(message)
        self.report = report


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------

def resolve_path(spec: Union[str, os.PathLike]) -> Path:
    """A local path for ``spec``: a file path or ``hf-hub:<repo>[/<file>]`` (from the HF cache)."""
    s = str(spec)
    if not s.startswith("hf-hub:"):
        return Path(s)
    rest = s[len("hf-hub:"):].strip("/")
    parts = rest.split("/")
    if len(parts) < 2:
        raise CheckpointError(f"{s}: expected hf-hub:<org>/<repo>[/<file>]")
    filename = "/".join(parts[2:]) or None
    return hub_file("/".join(parts[:2]), (filename,) if filename else HF_CANDIDATE_FILES, s)


def hf_cache_dir() -> str:
    """The Hugging Face hub cache this process reads (``HF_HUB_CACHE``, else huggingface_hub's)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_file(repo_id: str, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` of the hub repository ``repo_id`` in the Hugging Face cache,
    else downloaded. Offline (``HF_HUB_OFFLINE=1``, or the hub unreachable: one connection
    attempt, no retries) it fails at once, in one line naming ``what`` asked for it, the file to
    download and the cache it goes to (or: pass a local checkpoint file)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    for name in candidates:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str):
            return Path(hit)
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    # huggingface_hub retries a refused connection with back-off for ~25 s per file; without a
    # network that is minutes of waiting for the same answer
    if hf_offline():
        why = "offline (HF_HUB_OFFLINE=1)"
    else:
        down = unreachable(endpoint)
        why = f"the hub at {endpoint} cannot be reached ({down})" if down else ""
    if why:
        files = " or ".join(candidates)
        raise CheckpointError(
            f"{what}: {files} of {repo_id} is not in the Hugging Face cache {hf_cache_dir()}, "
            f"and {why}. Download it where there is a network (`huggingface-cli download "
            f"{repo_id} {candidates[0]}` fills that cache; point HF_HUB_CACHE at a cache that "
            f"has it, with HF_HUB_OFFLINE=1 to stay offline), or pass a local checkpoint file "
            f"(checkpoint=FILE)")
    errors = []
    for name in candidates:
        try:
            return Path(hf_hub_download(repo_id, name, cache_dir=cache_dir, endpoint=endpoint))
        except Exception as e:  # noqa: BLE001 - each candidate may be absent
            errors.append(f"{name}: {type(e).__name__}")
    raise CheckpointError(f"{what}: none of {list(candidates)} could be downloaded from "
                          f"{repo_id} ({'; '.join(errors)})")


def unreachable(endpoint: str, timeout: float = 3.0) -> str:
    """Why a TCP connection to ``endpoint`` (or to the proxy that would carry it) fails within
    ``timeout`` seconds, or ``""`` when it opens: one attempt, no retries."""
    import socket
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{url.hostname}:{port}: {type(e).__name__}: {e}"
    return ""


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) == 0:
        return "empty"
    if head[:2] == b"PK":
        return "torch-zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n < path.stat().st_size:
            return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    return "unknown"


def read_checkpoint(path: Union[str, os.PathLike], mmap: bool = True) -> Tuple[Dict[str, Any], str]:
    """Read a checkpoint file into a dict (tensors memory-mapped where possible).

    Returns ``(object, file_format)``. Raises :class:`CheckpointError` naming the file for a
    missing, empty, truncated or corrupt file, a directory, or a pickle that would run code.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a file; pass the checkpoint "
                              f"file inside it")
    fmt = _sniff(p)
    if fmt == "empty":
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes)")
    if fmt == "safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(p)), fmt
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"checkpoint {p} is a corrupt or truncated safetensors file: "
                                  f"{e}") from None
    if fmt in ("torch-zip", "torch-legacy"):
        if fmt == "torch-zip":
            _check_zip(p)
        try:
            obj = _torch_load(p, mmap=mmap and fmt == "torch-zip")
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            unsafe = _unsafe_globals(p) if fmt == "torch-zip" else []
            if not unsafe and not _REFUSED_GLOBAL.search(str(e)):
                raise CheckpointError(f"checkpoint {p} is damaged: its pickle could not be read "
                                      f"({first})") from None
            raise CheckpointError(
                f"checkpoint {p} was refused: it is a pickle that holds objects other than "
                f"tensors and plain containers, which could run code when loaded "
                f"({', '.join(unsafe) or first}). Only load it with weights_only=False if you "
                f"trust its source.") from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
            raise CheckpointError(f"checkpoint {p} is truncated or corrupt and could not be read "
                                  f"({type(e).__name__}: {str(e).strip()[:200]})") from None
        return obj, fmt
    raise CheckpointError(f"checkpoint {p} is not a safetensors file or a torch checkpoint "
                          f"(unrecognized header {open(p, 'rb').read(8)!r})")


# What torch's weights-only unpickler says when it meets a global it does not allow (a damaged
# pickle fails on other things: unknown opcodes, truncated data)
_REFUSED_GLOBAL = re.compile(r"Unsupported global|not an allowed global|GLOBAL |"
                             r"Trying to call reduce", re.IGNORECASE)


def _check_zip(p: Path) -> None:
    """Every member of a torch zip against its CRC-32: zeroed or flipped bytes in a tensor are
    otherwise read as weights, in silence. Streams the file (nothing is kept in memory)."""
    try:
        with zipfile.ZipFile(p) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {p} is a truncated or corrupt torch zip archive "
                              f"({type(e).__name__}: {e})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {p} is damaged: zip member {bad!r} fails its CRC-32 "
                              f"check (bytes changed after it was written)")


def _torch_load(p: Path, mmap: bool) -> Any:
    """``torch.load`` by content: torch dispatches a path named ``*.safetensors`` to safetensors
    whatever it holds, so such a file goes in as an open file (which cannot be memory-mapped)."""
    kwargs: Dict[str, Any] = dict(map_location="cpu", weights_only=True)
    if p.name.endswith(".safetensors"):
        with open(p, "rb") as f:
            return torch.load(f, **kwargs)
    return torch.load(p, mmap=mmap, **kwargs)


def _unsafe_globals(p: Path) -> List[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
    except Exception:  # noqa: BLE001 - a pickle too damaged to scan has no globals to report
        return []


def nonfinite_tensors(sd: Mapping[str, torch.Tensor]) -> List[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in sd.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Find the state dict inside wrapper dicts (:data:`WRAPPER_KEYS`, else the one entry that
    holds tensors) and strip ``module.`` / ``_orig_mod.`` prefixes (timm's ``clean_state_dict``).

    Returns ``(state_dict, notes)``: the tensors only, and what was done.
    """
    from timm.models import clean_state_dict

    notes = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            key = next((k for k, v in obj.items() if isinstance(v, Mapping)
                        and any(isinstance(x, torch.Tensor) for x in v.values())), None)
        if key is None:
            raise CheckpointError(f"{source} holds no tensors (top-level keys: "
                                  f"{list(obj)[:10]})")
        notes.append(f"unwrapped '{key}'")
        obj = obj[key]
    sd = clean_state_dict({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})
    if len(sd) < len(obj):
        notes.append(f"ignored {len(obj) - len(sd)} non-tensor entries")
    return sd, notes


# ----------------------------------------------------------------------------------------------
# Layout detection
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Layout:
    kind: str                   # "open_clip" | "tower"
    form: str                   # "training" | "inference"
    projection: str             # "trunk_head" | "linear" | "classifier" | "none"
    head_width: Optional[int] = None
    has_text: bool = False


def _guess_foreign(keys: Sequence[str]) -> str:
    ks = set(keys)
    if any(k.startswith("visual.transformer.") or k == "visual.conv1.weight" for k in ks):
        return "an open_clip ViT (visual.conv1 / visual.transformer keys)"
    if any(k.startswith("visual.trunk.stem") or k.startswith("stem.") for k in ks):
        return "a timm ConvNeXt-style tower (stem.* keys)"
    if any(k.startswith("visual.layer1") or k.startswith("layer1.") for k in ks):
        return "a ResNet"
    if any(k.startswith("text_model.") or k.startswith("vision_model.") for k in ks):
        return "a Hugging Face transformers CLIP"
    return "not a UniRepLKNet model"


def is_open_clip_layout(keys: Sequence[str]) -> bool:
    """A whole open_clip model in its own names: an image tower under ``visual.`` and a text tower
    (``CLIP``'s ``token_embedding`` / ``transformer``, or ``CustomTextCLIP``'s ``text.``)."""
    ks = set(keys)
    visual = any(k.startswith("visual.") for k in ks)
    text = any(k.startswith("text.") for k in ks) or all(k in ks for k in TEXT_KEYS[:2])
    return visual and text


def detect_layout(sd: Mapping[str, torch.Tensor], source: str = "checkpoint"
                  ) -> Tuple[Layout, Dict[str, torch.Tensor]]:
    """Detect the layout from the keys; returns it with the tower keys re-rooted.

    The returned dict uses the canonical CLIP names for every tensor that has one
    (``visual.trunk.*``, ``visual.head.proj.weight``, text keys unchanged). A whole open_clip
    model with another image tower (:func:`is_open_clip_layout`) is layout ``open_clip`` with
    projection ``native``: its names are open_clip's, kept as they are.
    """
    keys = list(sd)
    has_text = all(k in sd for k in TEXT_KEYS[:2])
    out: Dict[str, torch.Tensor] = {}
    if any(k.startswith("visual.trunk.downsample_layers.") for k in keys):
        kind = "open_clip" if has_text else "tower"
        out = dict(sd)
    elif any(k.startswith("trunk.downsample_layers.") for k in keys):
        kind = "tower"
        out = {("visual." + k if k.startswith("trunk.") else k): v for k, v in sd.items()}
    elif any(k.startswith("downsample_layers.") for k in keys):
        kind = "tower"
        out = {("visual.trunk." + k if not k.startswith(("visual.", "text")) else k): v
               for k, v in sd.items()}
    elif is_open_clip_layout(keys):
        # another open_clip CLIP (ViT, ConvNeXt, ResNet towers ...): its own names are canonical
        width = sd["text_projection"].shape[-1] if "text_projection" in sd else None
        return Layout("open_clip", "training", "native", width, True), dict(sd)
    else:
        raise CheckpointError(
            f"{source} is not a UniRepLKNet checkpoint: it looks like {_guess_foreign(keys)}. "
            f"{len(keys)} tensors; first keys: {keys[:8]}")
    if kind == "tower" and has_text:
        kind = "open_clip"
    form = "inference" if any(k.endswith(".pwconv2.0.bias") for k in out) else "training"
    if "visual.head.proj.weight" in out:
        projection, width = "linear", out["visual.head.proj.weight"].shape[0]
    elif "visual.trunk.head.weight" in out:
        projection, width = "trunk_head", out["visual.trunk.head.weight"].shape[0]
    else:
        projection, width = "none", None
    return Layout(kind, form, projection, width, has_text), out


def _canonicalize(layout: Layout, sd: Dict[str, torch.Tensor], cfg: Dict[str, Any]
                  ) -> Tuple[Dict[str, torch.Tensor], List[str], Layout]:
    """Map the projection onto the config's form; drop a classifier head with a note."""
    notes: List[str] = []
    embed = cfg["embed_dim"]
    model_proj = cfg["vision_cfg"].get("timm_proj", "linear")
    sd = dict(sd)
    if layout.projection in ("trunk_head", "linear") and layout.head_width != embed:
        w = sd.pop("visual.trunk.head.weight", None)
        sd.pop("visual.trunk.head.bias", None)
        sd.pop("visual.head.proj.weight", None)
        notes.append(f"dropped a {w.shape[0] if w is not None else layout.head_width}-wide head: "
                     f"an ImageNet-style classifier, not the CLIP projection (embed_dim {embed})")
        layout = dataclasses.replace(layout, projection="classifier")
    elif model_proj == "" and layout.projection == "linear":
        w = sd.pop("visual.head.proj.weight")
        sd["visual.trunk.head.weight"] = w
        sd["visual.trunk.head.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
        notes.append("projection visual.head.proj.weight (no bias) mapped to visual.trunk.head "
                     "with a zero bias")
    elif model_proj == "linear" and layout.projection == "trunk_head":
        w = sd.pop("visual.trunk.head.weight")
        b = sd.pop("visual.trunk.head.bias", None)
        if b is not None and bool(b.abs().max() > 0):
            raise CheckpointError("the file's projection has a non-zero bias, which a config with "
                                  "timm_proj='linear' (bias-free) cannot hold; use timm_proj ''")
        sd["visual.head.proj.weight"] = w
        notes.append("projection visual.trunk.head mapped to visual.head.proj (zero bias)")
    if layout.kind == "tower" and layout.projection == "none":
        notes.append("the file has no projection head: the image projection keeps its random "
                     "initialization, so image embeddings are not meaningful")
    return sd, notes, layout


# ----------------------------------------------------------------------------------------------
# Loading into a model
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LoadReport:
    path: str
    file_format: str
    layout: str
    form: str
    projection: str
    matched: int
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]
    notes: List[str]
    has_trained_text_tower: bool

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, n: int = 5) -> str:
        lines = [f"{self.path}: {self.layout}, {self.form} form, projection {self.projection}; "
                 f"{self.matched} tensors matched"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {self.missing[:n]}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {self.unexpected[:n]}")
        if self.mismatched:
            lines.append(f"  mis-shaped ({len(self.mismatched)}): "
                         + ", ".join(f"{k} file {tuple(a)} vs model {tuple(b)}"
                                     for k, a, b in self.mismatched[:n]))
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _compare(sd: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor],
             scope: Optional[str] = None):
    def in_scope(k):
        return scope is None or k.startswith(scope)
    missing = [k for k in model_sd if k not in sd and in_scope(k)]
    unexpected = [k for k in sd if k not in model_sd]
    mismatched = [(k, tuple(sd[k].shape), tuple(model_sd[k].shape)) for k in sd
                  if k in model_sd and tuple(sd[k].shape) != tuple(model_sd[k].shape)]
    return missing, unexpected, mismatched


class _NoTextTower:
    """Stands in for ``encode_text`` when the checkpoint held no text tower."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"this model has no trained text tower: {self.path} holds the image tower only, so "
            f"text embeddings, zero-shot classification and retrieval are unavailable. Use image "
            f"features (linear probe, kNN, ERF, Grad-CAM on image features) or load a whole CLIP "
            f"checkpoint.")


@dataclasses.dataclass
class PreparedCheckpoint:
    """A checkpoint read, unwrapped and mapped onto the canonical names of a config: what the
    factory needs to build the model that fits it and then load it (the loader builds nothing)."""
    path: str
    source: str
    file_format: str
    layout: Layout
    state_dict: Dict[str, torch.Tensor]
    notes: List[str]


def prepare_checkpoint(pretrained: Union[str, os.PathLike], cfg: Dict[str, Any], *,
                       allow_nonfinite: bool = False) -> PreparedCheckpoint:
    """Read ``pretrained`` (a path or ``hf-hub:``), unwrap it, detect its layout and map its
    projection onto ``cfg``'s form. A NaN or infinity in any weight is refused with the tensors'
    names (it would surface far away, as a NaN score) unless ``allow_nonfinite``."""
    path = resolve_path(pretrained)
    source = f"checkpoint {pretrained}"
    obj, fmt = read_checkpoint(path)
    sd, notes = unwrap_state_dict(obj, source)
    bad = nonfinite_tensors(sd)
    if bad and not allow_nonfinite:
        raise CheckpointError(f"{source}: {len(bad)} tensor(s) hold NaN or infinite values: "
                              f"{bad[:10]}; pass allow_nonfinite=True to load it anyway")
    if bad:
        notes.append(f"{len(bad)} tensor(s) hold NaN or infinite values (allowed): {bad[:10]}")
    if not is_unireplknet_config(cfg):
        # another open_clip model: its file is in open_clip's names (the key report says what is
        # missing or unexpected); the factory applies open_clip's own conversions
        has_text = is_open_clip_layout(list(sd))
        layout = Layout("open_clip", "training", "native", cfg.get("embed_dim"), has_text)
        return PreparedCheckpoint(str(pretrained), source, fmt, layout, sd, notes)
    layout, sd = detect_layout(sd, source)
    if layout.projection == "native":
        raise CheckpointError(
            f"{source} is not a UniRepLKNet checkpoint: it looks like "
            f"{_guess_foreign(list(sd))}; give its open_clip model name as model_name (e.g. "
            f"ViT-B-32), or local-dir:<folder> for a folder open_clip saved")
    sd, conv_notes, layout = _canonicalize(layout, sd, cfg)
    return PreparedCheckpoint(str(pretrained), source, fmt, layout, sd, notes + conv_notes)


def is_unireplknet_config(cfg: Mapping[str, Any]) -> bool:
    """Whether a CLIP config's image tower is a UniRepLKNet trunk (timm ``unireplknet_*``)."""
    vision = cfg.get("vision_cfg") or {}
    return str(vision.get("timm_model_name") or "").startswith("unireplknet_")


def compare_to_model(layout: Layout, sd: Mapping[str, torch.Tensor],
                     model_sd: Mapping[str, torch.Tensor]):
    """``(missing, unexpected, mismatched)`` of a canonical state dict against a model's. A tower
    file is compared on the trunk only, and its projection may be absent (it stays random)."""
    scope = "visual.trunk." if layout.kind == "tower" else None
    missing, unexpected, mismatched = _compare(sd, model_sd, scope)
    if layout.kind == "tower":
        missing = [k for k in missing if not k.startswith("visual.trunk.head.")]
    return missing, unexpected, mismatched


def fit_report(prepared: PreparedCheckpoint, model_sd: Mapping[str, torch.Tensor]) -> LoadReport:
    """How the prepared file fits a model's state dict."""
    layout, sd = prepared.layout, prepared.state_dict
    missing, unexpected, mismatched = compare_to_model(layout, sd, model_sd)
    return LoadReport(prepared.path, prepared.file_format, layout.kind, layout.form,
                      layout.projection,
                      matched=sum(1 for k in sd if k in model_sd) - len(mismatched),
                      missing=missing, unexpected=unexpected, mismatched=mismatched,
                      notes=prepared.notes,
                      has_trained_text_tower=layout.kind == "open_clip" and layout.has_text)


def refuse_or_warn(message: str, report: LoadReport, strict: bool) -> None:
    """A file that does not fit its model (``message`` says how): ``strict`` refuses it with a
    :class:`CheckpointMismatchError` that says how to load what matches; otherwise the message
    is logged as a warning and the caller loads what matches."""
    if strict:
        raise CheckpointMismatchError(message + "\n(pass strict=False to load what matches)",
                                      report)
    _logger.warning(message)


def load_prepared(model: torch.nn.Module, prepared: PreparedCheckpoint, *, assign: bool) -> None:
    """Copy (or, with ``assign=True`` into a model built on meta, take over) every tensor of the
    file that fits the model; with ``assign`` every parameter must come from the file."""
    model_sd = model.state_dict()
    loadable = {k: v for k, v in prepared.state_dict.items()
                if k in model_sd and tuple(v.shape) == tuple(model_sd[k].shape)}
    for k, v in loadable.items():  # integer buffers (BN counters) may be stored as floats
        if v.dtype != model_sd[k].dtype and not model_sd[k].is_floating_point():
            loadable[k] = v.to(model_sd[k].dtype)
    model.load_state_dict(loadable, strict=False, assign=assign)
    if assign:
        leftover = [n for n, p in model.named_parameters() if p.is_meta]
        if leftover:
            raise CheckpointError(f"{prepared.source}: parameters left unloaded: {leftover[:5]}")


def attach_report(model: torch.nn.Module, report: Optional[LoadReport]) -> None:
    """Keep the load report on the model; a file without a text tower makes ``encode_text`` an
    error that says so."""
    model.load_report = report
    model.has_trained_text_tower = True if report is None else report.has_trained_text_tower
    if not model.has_trained_text_tower:
        model.encode_text = _NoTextTower(report.path)
    if report is not None:
        for note in report.notes:
            _logger.info("checkpoint %s: %s", report.path, note)


