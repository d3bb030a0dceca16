"""Batched image and text feature extraction with an on-disk cache.

Every extraction returns a :class:`FeatureSet`: the (optionally L2-normalised) CLIP embeddings,
the *pre-projection* features, labels, the dataset rows they belong to and the files that could
not be read. What "pre-projection" means:

* image: the image tower's pooled, normed features that enter the projection, captured in the
  same forward pass by the tower seam (``Tower.capture_pre_projection`` in
  :mod:`unirepclip.models.towers`, so it costs nothing extra): for the UniRepLKNet trunk
  ``trunk.forward_head(trunk.forward_features(x), pre_logits=True)`` (the input of its head),
  for a timm trunk the input of its classifier, for an open_clip ViT the pooled token before
  ``proj``; a ModifiedResNet's attention pool projects inside, so it has none. These are the
  "penultimate-layer features" of the CLIP paper's linear probe.
* text: the final-layer-normed token features pooled the way the model pools them (open_clip's
  ``text_global_pool``: the end-of-text token for OpenAI-style towers), i.e. the input of
  ``text_projection``.

Models that lack these parts (any module with ``encode_image`` / ``encode_text``) still work;
``pre_projection`` is then ``None``.

The cache (:class:`FeatureCache`) stores each entry as two files in one folder:
``<key>.npz`` (the arrays, written with ``allow_pickle=False``) and ``<key>.json`` (what the key
was made of, the payload's sha256, the skipped files, timings). Both are written to a temporary
file in the same folder and moved into place with ``os.replace``; the JSON goes last and is the
commit marker, so an interrupted run leaves either nothing or a complete entry. A read checks the
payload's sha256 and rebuilds the entry if it does not match. The key is a sha256 over everything
that changes the features: the checkpoint's sha256 (and a hash of the weights when they did not
all come from a file), the model config, the state-dict layout and dtypes, the image size, the
preprocessing, the dataset's identity and split, precision, device type, feature kind and the
torch version. Embeddings are stored unnormalised, so ``normalize`` is not part of the key.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from unirepclip.models.towers import NotApplicable, tower_of
from unirepclip.utils import (autocast, capture_input, check_precision, eval_mode, file_sha256,
                              l2_normalize)
from unirepclip.vocab import folder_problem

__all__ = ["FeatureSet", "FeatureCache", "extract_image_features", "extract_text_features",
           "model_identity", "image_feature_key", "text_feature_key", "resolve_image_transform",
           ]

_logger = logging.getLogger(__name__)

# Bump when the stored arrays or their meaning change.
FEATURES_VERSION = 1


@dataclasses.dataclass
class FeatureSet:
    """Features of a dataset or a list of texts.

    Attributes:
        kind: ``"image"`` or ``"text"``.
        embeddings: (N, D) float32 CLIP embeddings, L2-normalised if asked.
        pre_projection: (N, C) float32 features before the projection, or ``None``.
        labels: (N,) targets of the rows (ints, or strings for caption targets), ``None`` for text.
        indices: (N,) dataset row of each feature row; unreadable images are missing.
        skipped: ``(path, reason)`` for every file left out (scan time and load time).
        key: the cache key (also computed without a cache).
        from_cache: whether the arrays were read from the cache.
        meta: the key's parts and the extraction's timing.
    """

    kind: str
    embeddings: np.ndarray
    pre_projection: Optional[np.ndarray]
    labels: Optional[np.ndarray]
    indices: np.ndarray
    skipped: List[Tuple[str, str]]
    key: str
    from_cache: bool
    meta: Dict[str, Any]

    def __len__(self) -> int:
        return len(self.embeddings)


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------
def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@contextlib.contextmanager
def _atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; move it into place only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class FeatureCache:
    """A folder of cached feature arrays, keyed by a sha256 of their inputs (see module doc).

    ``hits`` / ``misses`` / ``rebuilt`` count what happened in this process.
    """

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(root)
        problem = folder_problem(self.root)
        if problem:
            raise ValueError(f"feature cache folder {self.root} is not writable: {problem}; "
                             "choose another cache_dir")
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    @staticmethod
    def make_key(parts: Dict[str, Any]) -> str:
        """sha256 of the canonical JSON of ``parts``."""
        return hashlib.sha256(_canonical(parts).encode("utf-8")).hexdigest()

    def paths(self, key: str) -> Tuple[Path, Path]:
        """``(arrays file, metadata file)`` of an entry."""
        return self.root / f"{key}.npz", self.root / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return all(p.is_file() for p in self.paths(key))

    def keys(self) -> List[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))

    def save(self, key: str, arrays: Dict[str, np.ndarray], meta: Dict[str, Any]) -> None:
        """Write an entry atomically: arrays first, then the metadata that commits them."""
        self.root.mkdir(parents=True, exist_ok=True)
        data_path, meta_path = self.paths(key)
        with _atomic_path(data_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            digest = file_sha256(tmp, memo=False)
        record = {"key": key, "payload_sha256": digest, "format": "npz",
                  "arrays": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}, **meta}
        with _atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str),
                           encoding="utf-8")

    def load(self, key: str) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, Any]]]:
        """``(arrays, metadata)`` of a valid entry, else ``None``; a corrupt entry is removed."""
        data_path, meta_path = self.paths(key)
        if not meta_path.is_file():
            self.misses += 1
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            # A file copied or renamed into this name holds another entry's arrays.
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise ValueError(f"{meta_path.name} records key "
                                 f"{meta.get('key') if isinstance(meta, dict) else None!r}")
            if not data_path.is_file():
                raise ValueError(f"{data_path.name} is missing")
            if file_sha256(data_path, memo=False) != meta["payload_sha256"]:
                raise ValueError(f"{data_path.name} does not match its recorded sha256")
            with np.load(data_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as err:  # noqa: BLE001  (any damage means: rebuild)
            _logger.warning("feature cache %s: entry %s is corrupt (%s); rebuilding",
                            self.root, key, err)
            self.invalidate(key)
            self.rebuilt += 1
            self.misses += 1
            return None
        self.hits += 1
        return arrays, meta

    def invalidate(self, key: str) -> None:
        for p in self.paths(key):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


# ------------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------------
def _weights_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_identity(model: nn.Module, hash_weights: Optional[bool] = None) -> Dict[str, Any]:
    """What identifies a model's weights and structure, for cache keys.

    The checkpoint file's sha256 when the model came from one (``model.load_report``); the model
    config of a ``unirepclip`` model; the state-dict names, shapes and dtypes (re-parameterized or
    cast models differ); and a sha256 of the weights themselves when ``hash_weights`` is true
    (default: when no checkpoint supplied every weight, e.g. random initialisation).
    """
    ident: Dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    report = getattr(model, "load_report", None)
    complete = False
    if report is not None and getattr(report, "path", None):
        from unirepclip.models.loading import resolve_path
        ident["checkpoint_sha256"] = file_sha256(resolve_path(report.path))
        complete = bool(getattr(report, "ok", False)) and not getattr(report, "missing", [])
    name = getattr(model, "unirepclip_name", None)
    if name is not None:
        from unirepclip.models.factory import get_model_config
        with contextlib.suppress(Exception):  # a name registered elsewhere: the layout still keys it
            ident["config"] = get_model_config(name)
        ident["name"] = name
    layout = [f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in model.state_dict().items()]
    ident["layout_sha256"] = hashlib.sha256("\n".join(layout).encode()).hexdigest()
    if hash_weights or (hash_weights is None and not complete):
        ident["weights_sha256"] = _weights_sha256(model)
    return ident


def _dataset_identity(dataset: Any) -> Dict[str, Any]:
    ident = getattr(dataset, "identity", None)
    if isinstance(ident, dict):
        return ident
    # Without an identity the repr is the best available; a repr holding a memory address just
    # makes every run a cache miss, never a wrong hit.
    return {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
            "repr": repr(dataset), "n": len(dataset)}


def _image_size(model: nn.Module) -> Any:
    return getattr(getattr(model, "visual", None), "image_size", None)


def image_feature_key(model: nn.Module, dataset: Any, transform: Optional[Callable], *,
                      precision: str, device: Union[str, torch.device],
                      model_ident: Optional[Dict[str, Any]] = None) -> Tuple[str, Dict[str, Any]]:
    """``(key, parts)`` for the image features of ``dataset`` (see module doc for the parts)."""
    parts = {
        "kind": "image",
        "version": FEATURES_VERSION,
        "model": model_ident if model_ident is not None else model_identity(model),
        "image_size": _image_size(model),
        "preprocess": {"dataset_transform": repr(getattr(dataset, "transform", None)),
                       "transform": repr(transform)},
        "dataset": _dataset_identity(dataset),
        "precision": precision,
        "device": torch.device(device).type,
        "torch": torch.__version__,
    }
    return FeatureCache.make_key(parts), parts


def _tokenizer_identity(tokenizer: Any) -> Dict[str, Any]:
    return {"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "context_length": getattr(tokenizer, "context_length", None)}


def text_feature_key(model: nn.Module, tokenizer: Any, texts: Sequence[str], *, precision: str,
                     device: Union[str, torch.device],
                     model_ident: Optional[Dict[str, Any]] = None) -> Tuple[str, Dict[str, Any]]:
    """``(key, parts)`` for the text features of ``texts``."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    parts = {
        "kind": "text",
        "version": FEATURES_VERSION,
        "model": model_ident if model_ident is not None else model_identity(model),
        "tokenizer": _tokenizer_identity(tokenizer),
        "texts": {"sha256": h.hexdigest(), "n": len(texts)},
        "precision": precision,
        "device": torch.device(device).type,
        "torch": torch.__version__,
    }
    return FeatureCache.make_key(parts), parts


# ------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------
class _Indexed(Dataset):
    """Yields ``(index, image, target)``; applies ``transform`` to PIL images."""

    def __init__(self, dataset: Any, transform: Optional[Callable]):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        from PIL import Image

        from unirepclip.data.files import UnreadableImage

        img, target = self.dataset[i]
        if isinstance(img, Image.Image) and self.transform is not None:
            img = self.transform(img)
        if not isinstance(img, (torch.Tensor, UnreadableImage)):
            raise TypeError(f"{type(self.dataset).__name__}[{i}] gave a {type(img).__name__} "
                            f"after the transform; expected a tensor (pass transform=)")
        return i, img, target


def _collate(batch):
    from unirepclip.data.files import UnreadableImage

    bad = [(i, img) for i, img, _ in batch if isinstance(img, UnreadableImage)]
    good = [b for b in batch if not isinstance(b[1], UnreadableImage)]
    if not good:
        return None, None, [], bad
    idx = torch.tensor([b[0] for b in good])
    x = torch.stack([b[1] for b in good])
    return idx, x, [b[2] for b in good], bad


def _check_device(model: nn.Module, device: torch.device) -> None:
    p = next(iter(model.parameters()), None)
    if p is not None and p.device.type != device.type:
        raise ValueError(f"device={str(device)!r} but the model's parameters are on {p.device}; "
                         f"move the model first (model.to(device))")


@contextlib.contextmanager
def _capture_output(module: Optional[nn.Module], store: List[torch.Tensor]):
    if module is None:
        yield
        return
    handle = module.register_forward_hook(lambda _m, _a, out: store.append(out.detach()))
    try:
        yield
    finally:
        handle.remove()


def _capture_image_pre_projection(model: nn.Module, store: List[torch.Tensor]):
    """The tower seam's capture of the pooled features before the image projection
    (:meth:`unirepclip.models.towers.Tower.capture_pre_projection`); nothing for a model whose
    image tower the seam does not know."""
    try:
        tower = tower_of(model)
    except NotApplicable:
        return contextlib.nullcontext(False)
    return tower.capture_pre_projection(store)


def _default_transform(model: nn.Module) -> Optional[Callable]:
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = open_clip.get_model_preprocess_cfg(model)
    if not cfg:
        return None
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def resolve_image_transform(model: nn.Module, dataset: Any,
                            transform: Optional[Callable] = None) -> Optional[Callable]:
    """The transform :func:`extract_image_features` applies (and keys): ``transform`` if given,
    none if the dataset transforms its own images, else the model's open_clip validation
    preprocessing."""
    if transform is None and getattr(dataset, "transform", None) is None:
        return _default_transform(model)
    return transform


def finish_embeddings(emb: np.ndarray, normalize: bool) -> np.ndarray:
    """Stored (unnormalized) embeddings as a FeatureSet holds them."""
    if not normalize:
        return emb
    return l2_normalize(emb, eps=1e-12).astype(np.float32)


def _labels_array(labels: List[Any]) -> Optional[np.ndarray]:
    if not labels:
        return np.zeros(0, np.int64)
    if all(isinstance(t, (int, np.integer)) or (torch.is_tensor(t) and t.ndim == 0)
           for t in labels):
        return np.asarray([int(t) for t in labels], np.int64)
    if all(isinstance(t, str) for t in labels):
        return np.asarray(labels, dtype=str)
    return None  # targets of other kinds (lists, tensors) are not stored


def _from_cache(kind: str, key: str, hit, normalize: bool) -> FeatureSet:
    arrays, meta = hit
    return FeatureSet(kind=kind, embeddings=finish_embeddings(arrays["embeddings"], normalize),
                      pre_projection=arrays.get("pre_projection"), labels=arrays.get("labels"),
                      indices=arrays["indices"], skipped=[tuple(s) for s in meta.get("skipped", [])],
                      key=key, from_cache=True, meta=meta)


@torch.no_grad()
def extract_image_features(model: nn.Module, dataset: Any, *, transform: Optional[Callable] = None,
                           batch_size: int = 64, num_workers: int = 0,
                           device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                           normalize: bool = True, cache: Optional[FeatureCache] = None,
                           progress: bool = True,
                           model_ident: Optional[Dict[str, Any]] = None,
                           indices: Optional[Sequence[int]] = None) -> FeatureSet:
    """Image embeddings and pre-projection features of every item of ``dataset``.

    Args:
        model: a CLIP (anything with ``encode_image``), already on ``device``.
        dataset: yields ``(image, target)``; images may be PIL (then ``transform`` applies,
            default: the model's open_clip validation preprocessing), tensors, or
            :class:`~unirepclip.data.UnreadableImage` (dropped and reported in ``skipped``).
        transform: applied to PIL images the dataset yields.
        batch_size, num_workers: for the ``DataLoader`` (order is kept).
        device, precision: ``"bf16"`` runs the model under ``torch.autocast`` (CPU too).
        normalize: L2-normalise the embeddings (the cache stores them raw).
        cache: read the features from / write them to this cache.
        progress: show a tqdm bar.
        model_ident: precomputed :func:`model_identity` (saves re-hashing weights across calls).
        indices: extract only these dataset rows, in this order (one shard of a distributed run,
            :mod:`unirepclip.features.distributed`); ``indices`` of the result are still dataset rows and ``key``
            is still the whole dataset's. The cache holds whole datasets only, so ``cache`` must be
            ``None``; the dataset's scan-time ``skipped`` list is left to the caller (it belongs to
            no row), and a part without a readable image gives zero rows instead of an error.
    """
    check_precision(precision)
    if indices is not None and cache is not None:
        raise ValueError("indices= extracts part of a dataset but the cache holds whole datasets "
                         "only; pass cache=None")
    device = torch.device(device)
    transform = resolve_image_transform(model, dataset, transform)
    key, parts = image_feature_key(model, dataset, transform, precision=precision, device=device,
                                   model_ident=model_ident)
    if cache is not None:
        hit = cache.load(key)
        if hit is not None:
            return _from_cache("image", key, hit, normalize)
    _check_device(model, device)
    t0 = time.perf_counter()
    rows: Dataset = _Indexed(dataset, transform)
    if indices is not None:
        # _Indexed yields the dataset row itself, so a Subset of it keeps global row numbers.
        rows = Subset(rows, [int(i) for i in indices])
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate,
                        persistent_workers=False, pin_memory=device.type == "cuda")
    embs, pres, idxs, labels = [], [], [], []
    skipped: List[Tuple[str, str]] = ([] if indices is not None else
                                      [tuple(s) for s in getattr(dataset, "skipped", [])])
    from tqdm.auto import tqdm

    with eval_mode(model):
        for idx, x, targets, bad in tqdm(loader, desc="image features", disable=not progress,
                                         unit="batch"):
            skipped += [(u.path, u.reason) for _, u in bad]
            if x is None:
                continue
            store: List[torch.Tensor] = []
            with _capture_image_pre_projection(model, store), autocast(device, precision):
                emb = model.encode_image(x.to(device, non_blocking=True), normalize=False)
            embs.append(emb.float().cpu())
            if store:
                pres.append(store[-1].float().cpu())
            idxs.append(idx)
            labels.extend(targets)
    if skipped:
        _logger.warning("%d unreadable file(s) skipped, first: %s", len(skipped), skipped[0])
    if not embs and indices is None:
        raise ValueError(f"{dataset!r}: no image could be read ({len(skipped)} skipped)")
    arrays: Dict[str, np.ndarray] = {
        "embeddings": (torch.cat(embs).numpy().astype(np.float32) if embs
                       else np.zeros((0, 0), np.float32)),
        "indices": torch.cat(idxs).numpy().astype(np.int64) if idxs else np.zeros(0, np.int64),
    }
    if pres and len(pres) == len(embs):
        arrays["pre_projection"] = torch.cat(pres).reshape(len(arrays["indices"]), -1).numpy()
    lab = _labels_array(labels)
    if lab is not None:
        arrays["labels"] = lab
    meta = {"parts": parts, "skipped": skipped, "seconds": time.perf_counter() - t0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if cache is not None:
        cache.save(key, arrays, meta)
    return FeatureSet(kind="image", embeddings=finish_embeddings(arrays["embeddings"], normalize),
                      pre_projection=arrays.get("pre_projection"), labels=arrays.get("labels"),
                      indices=arrays["indices"], skipped=skipped, key=key, from_cache=False,
                      meta=meta)


def _text_hooks(model: nn.Module):
    """(module whose input is the pre-projection, or None; module whose output needs pooling)."""
    for owner in (model, getattr(model, "text", None)):
        proj = getattr(owner, "text_projection", None)
        if isinstance(proj, nn.Linear):
            return proj, None, owner
    for owner in (model, getattr(model, "text", None)):
        ln = getattr(owner, "ln_final", None)
        if isinstance(ln, nn.Module) and hasattr(owner, "text_pool_type"):
            return None, ln, owner
    return None, None, None


@torch.no_grad()
def extract_text_features(model: nn.Module, tokenizer: Callable, texts: Sequence[str], *,
                          batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                          precision: str = "fp32", normalize: bool = True,
                          cache: Optional[FeatureCache] = None, progress: bool = True,
                          model_ident: Optional[Dict[str, Any]] = None) -> FeatureSet:
    """Text embeddings and pre-projection features (see module doc) of ``texts``, in order.

    ``tokenizer(list_of_str)`` must return a LongTensor of token ids (open_clip's tokenizers do).
    Other arguments as in :func:`extract_image_features`.
    """
    check_precision(precision)
    texts = [str(t) for t in texts]
    device = torch.device(device)
    key, parts = text_feature_key(model, tokenizer, texts, precision=precision, device=device,
                                  model_ident=model_ident)
    if cache is not None:
        hit = cache.load(key)
        if hit is not None:
            return _from_cache("text", key, hit, normalize)
    if not texts:
        raise ValueError("texts is empty")
    _check_device(model, device)
    t0 = time.perf_counter()
    pre_in, ln_out, owner = _text_hooks(model)
    embs, pres = [], []
    from tqdm.auto import tqdm

    with eval_mode(model):
        for start in tqdm(range(0, len(texts), batch_size), desc="text features",
                          disable=not progress, unit="batch"):
            tokens = tokenizer(texts[start:start + batch_size]).to(device)
            store: List[torch.Tensor] = []
            with capture_input(pre_in, store), _capture_output(ln_out, store), \
                    autocast(device, precision):
                emb = model.encode_text(tokens, normalize=False)
            embs.append(emb.float().cpu())
            if store:
                feat = store[-1]
                if ln_out is not None:
                    from open_clip.transformer import text_global_pool
                    feat = text_global_pool(feat, tokens, owner.text_pool_type,
                                            eos_token_id=getattr(owner, "text_eos_id", None))
                pres.append(feat.float().cpu())
    arrays: Dict[str, np.ndarray] = {
        "embeddings": torch.cat(embs).numpy().astype(np.float32),
        "indices": np.arange(len(texts), dtype=np.int64),
    }
    if pres and len(pres) == len(embs):
        arrays["pre_projection"] = torch.cat(pres).numpy()
    meta = {"parts": parts, "skipped": [], "seconds": time.perf_counter() - t0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if cache is not None:
        cache.save(key, arrays, meta)
    return FeatureSet(kind="text", embeddings=finish_embeddings(arrays["embeddings"], normalize),
                      pre_projection=arrays.get("pre_projection"), labels=None,
                      indices=arrays["indices"], skipped=[], key=key, from_cache=False, meta=meta)
