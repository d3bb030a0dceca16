"""What the interactive explorer (notebook 06, :mod:`unirepclip.viz.explorer`) computes, as plain
data: each panel's answer is one function here, tested on its own; the widgets only wire inputs
to these functions and draw what they return.

* a **gallery** (:class:`Gallery`): the images the panels look at: a dataset's
  (:func:`dataset_gallery`), a folder of the user's own (:func:`folder_gallery`) or an uploaded
  file (:func:`uploaded_image`); synthetic images keep their object masks and captions;
* **embeddings** (:func:`embed_gallery`): the gallery's image embeddings, computed once through
  :func:`unirepclip.features.extract_image_features` (so a ``FeatureCache`` keeps them across
  sessions); every later query is one matrix product against them;
* **zero-shot playground**: :func:`parse_classnames`, :func:`parse_templates` (the text boxes),
  :data:`TEMPLATE_SETS` (the built-in ensembles), :func:`text_classifier` (open_clip's prompt
  ensemble) and :func:`zeroshot_table` (probabilities of each image for each class);
* **search**: :func:`encode_queries` (with a note when a query is longer than the text tower's
  context), :func:`rank` (top k of a similarity row), :func:`search_images` (text -> images) and
  :func:`search_texts` (image -> captions);
* **explain**: :func:`explain` (the attribution map of one image for one caption, by any method
  of :data:`unirepclip.analysis.attribution.METHODS`, scored against the mask when there is one);
* **embedding map**: :func:`embedding_map` (PCA, or scikit-learn's t-SNE on request) and
  :func:`nearest_neighbours`, :func:`nearest_point` (the image under a clicked point);
* **receptive field**: :func:`receptive_field` (the ERF of one stage at one resolution and its
  area ratios, :mod:`unirepclip.analysis.erf`);
* :func:`text_tower_problem`: why the text panels cannot work with a model (no text tower), or
  None;
* :func:`default_queries`: the default query of every panel, answered; notebook 06 records it
  under ``explore.*``.

Bad input raises ``ValueError`` with a message fit to show in the panel (the explorer shows it
instead of a traceback).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from unirepclip.analysis import attribution, erf
from unirepclip.data import IMAGE_EXTENSIONS, UnreadableImage, load_image
from unirepclip.data import sets
from unirepclip.eval import zeroshot
from unirepclip.features import extract_image_features, extract_text_features
from unirepclip.utils import l2_normalize, softmax

__all__ = [
    "Gallery", "dataset_gallery", "folder_gallery", "uploaded_image", "single_image_gallery",
    "embed_gallery", "TEMPLATE_SETS", "template_set", "parse_classnames", "parse_templates",
    "text_classifier", "zeroshot_table", "encode_queries", "rank", "search_images",
    "search_texts", "explain", "embedding_map", "nearest_neighbours", "nearest_point",
    "receptive_field", "text_tower_problem", "default_queries",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


# ------------------------------------------------------------------------------------------------
# The gallery
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Gallery:
    """Images the panels look at.

    ``dataset[i]`` is ``(PIL image, target)`` (what :func:`embed_gallery` encodes); ``names[i]``
    labels image i in the result grids; ``labels``/``classnames`` give its class where known
    (colours in the embedding map, truth in the zero-shot table); ``masks`` (N, H, W) bool
    are the synthetic objects' pixels and ``captions`` their captions (one per image), else None.
    """

    kind: str
    dataset: Any
    names: List[str]
    description: str
    labels: Optional[np.ndarray] = None
    classnames: Optional[List[str]] = None
    masks: Optional[np.ndarray] = None
    captions: Optional[List[str]] = None
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, i: int) -> Any:
        """Image ``i`` as a PIL RGB image."""
        img = self.dataset[int(i)][0]
        if isinstance(img, UnreadableImage):
            raise ValueError(f"image {i} ({img.path}) cannot be read: {img.reason}")
        return img.convert("RGB")


def dataset_gallery(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
                    data_dir: str = "", classnames_file: str = "") -> Gallery:
    """The images of a notebook's dataset parameters (see :mod:`unirepclip.data.sets`); the main
    task's classes label them; the synthetic world's also carry masks and captions."""
    es = sets.classification_set(dataset, n_images=n_images, image_size=image_size, seed=seed,
                                 data_dir=data_dir or "", classnames_file=classnames_file)
    task = es.tasks[es.main_task]
    ds = es.dataset
    masks = captions = None
    if es.kind == "synthetic":
        masks, captions = np.asarray(ds.masks, dtype=bool), list(ds.captions)
        names = [f"#{i} {c}" for i, c in enumerate(captions)]
    else:
        labels = task.labels if task.labels is not None else [None] * len(ds)
        names = [f"#{i} {task.classnames[int(y)]}" if y is not None else f"#{i}"
                 for i, y in enumerate(labels)]
    skipped = list(getattr(getattr(ds, "dataset", ds), "skipped", []) or [])
    return Gallery(es.kind, ds, names, es.description,
                   labels=None if task.labels is None else np.asarray(task.labels),
                   classnames=list(task.classnames), masks=masks, captions=captions,
                   skipped=skipped)


class _Files:
    """Image files as a dataset: ``(PIL image or UnreadableImage, -1)``, with a cache identity
    that changes when a file does."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_image(self.paths[int(i)]), -1

    @property
    def identity(self) -> Dict[str, Any]:
        h = hashlib.sha256()
        for p in self.paths:
            st = p.stat()
            h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"class": "explore.Files", "files_sha256": h.hexdigest(), "n": len(self.paths)}

    def __repr__(self) -> str:
        return f"_Files(n={len(self.paths)})"


def folder_gallery(folder: Union[str, os.PathLike], *, max_images: int = 0) -> Gallery:
    """Every readable image under ``folder`` (any depth, sorted by path; ``max_images`` > 0 keeps
    the first that many). Unreadable files are listed in ``skipped``.

    Raises ``ValueError`` when the folder does not exist or holds no readable image.
    """
    root = Path(folder).expanduser()
    if not str(folder).strip() or not root.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist or is not a folder")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    good, skipped = [], []
    for p in files:
        img = load_image(p)
        if isinstance(img, UnreadableImage):
            skipped.append((str(p), img.reason))
        else:
            good.append(p)
    if max_images and max_images > 0:
        good = good[:int(max_images)]
    if not good:
        raise ValueError(f"folder {root} holds no readable image (extensions {sorted(exts)}; "
                         f"{len(skipped)} unreadable files)")
    names = [f"#{i} {p.relative_to(root)}" for i, p in enumerate(good)]
    return Gallery("folder", _Files(good), names,
                   f"folder {root}: {len(good)} images"
                   + (f", {len(skipped)} unreadable files skipped" if skipped else ""),
                   skipped=skipped)


def uploaded_image(content: bytes, name: str = "upload") -> Any:
    """The PIL RGB image in an uploaded file's bytes; ``ValueError`` naming the file when it is
    not an image that can be read."""
    from PIL import Image

    if not content:
        raise ValueError(f"uploaded file {name!r} is empty")
    try:
        img = Image.open(io.BytesIO(bytes(content)))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"uploaded file {name!r} is not a readable image ({e})") from e
    return img.convert("RGB")


class _Images:
    def __init__(self, images: Sequence[Any], key: str):
        self.images, self.key = list(images), key

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[int(i)], -1

    @property
    def identity(self) -> Dict[str, Any]:
        return {"class": "explore.Images", "sha256": self.key, "n": len(self.images)}


def single_image_gallery(image: Any, name: str = "upload") -> Gallery:
    """A gallery of one (uploaded) PIL image."""
    key = hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()
    return Gallery("upload", _Images([image.convert("RGB")], key), [f"#0 {name}"],
                   f"uploaded file {name}")


def embed_gallery(model: nn.Module, gallery: Gallery, transform: Optional[Callable] = None,
                  **extract_kw: Any) -> np.ndarray:
    """(N, D) L2-normalized float32 image embeddings of the gallery, in its order
    (:func:`unirepclip.features.extract_image_features`; ``extract_kw`` such as ``cache``,
    ``batch_size``, ``device``, ``precision``, ``progress`` go to it)."""
    feats = extract_image_features(model, gallery.dataset, transform=transform, **extract_kw)
    if len(feats) != len(gallery) or not np.array_equal(feats.indices, np.arange(len(gallery))):
        raise ValueError(f"{len(gallery) - len(feats)} images of the gallery could not be read "
                         f"(first: {feats.skipped[:1]})")
    return np.ascontiguousarray(feats.embeddings, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# Zero-shot playground
# ------------------------------------------------------------------------------------------------

def _synthetic_templates() -> List[Any]:
    from unirepclip.data import zeroshot_task
    return list(zeroshot_task("shape")[1])


def _openai_templates() -> List[Any]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return list(OPENAI_IMAGENET_TEMPLATES)


def _simple_templates() -> List[Any]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
    return list(SIMPLE_IMAGENET_TEMPLATES)


#: Built-in prompt ensembles by name: ``name -> () -> templates``.
TEMPLATE_SETS: Dict[str, Callable[[], List[Any]]] = {
    "synthetic world (24 held-out phrasings, every colour)": _synthetic_templates,
    "CLIP ImageNet (80)": _openai_templates,
    "CLIP ImageNet, simple (7)": _simple_templates,
}


def template_set(name: str) -> List[Any]:
    """The templates of a built-in ensemble of :data:`TEMPLATE_SETS`."""
    if name not in TEMPLATE_SETS:
        raise ValueError(f"template set {name!r} is not one of {list(TEMPLATE_SETS)}")
    return TEMPLATE_SETS[name]()


def parse_classnames(text: str) -> List[str]:
    """Class names from a comma-separated box (blanks and repeats dropped, order kept)."""
    names: List[str] = []
    for part in str(text).replace("\n", ",").split(","):
        part = " ".join(part.split())
        if part and part not in names:
            names.append(part)
    if not names:
        raise ValueError("the class list is empty: type class names separated by commas")
    return names


def parse_templates(text: str) -> List[str]:
    """Templates from a box, one per line, each with one ``{}`` for the class name."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        raise ValueError("the template list is empty: type one template per line, with {} "
                         "where the class name goes")
    for i, line in enumerate(lines):
        try:
            zeroshot.prepare_templates([line])
        except ValueError:
            raise ValueError(f"template line {i + 1} {line!r} needs one {{}} where the class "
                             f"name goes, e.g. 'a photo of a {{}}.'") from None
    return lines


def text_classifier(model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                    templates: Sequence[Any], **text_kw: Any) -> np.ndarray:
    """(D, C) float32 zero-shot weights: open_clip's prompt ensemble of ``templates`` for each
    class (:func:`unirepclip.eval.zeroshot.build_classifiers`; ``text_kw`` go to
    :func:`unirepclip.features.extract_text_features`)."""
    text_kw.setdefault("progress", False)
    clf = zeroshot.build_classifiers(model, tokenizer, list(classnames), list(templates),
                                     **text_kw)
    return clf.ensemble.numpy().astype(np.float32)


def zeroshot_table(image_embeddings: ArrayLike, classifier: ArrayLike, classnames: Sequence[str],
                   *, names: Optional[Sequence[str]] = None,
                   labels: Optional[ArrayLike] = None) -> Dict[str, Any]:
    """The probabilities of each image for each class: ``softmax(100 * images @ classifier)``.

    Returns ``{"classnames", "names", "probabilities" (N, C), "predicted" (N,), "confidence"
    (N,)}``, plus ``"accuracy"`` (top-1 against ``labels``, indices into ``classnames``) when
    labels are given.
    """
    emb = np.asarray(image_embeddings, dtype=np.float32)
    w = np.asarray(classifier, dtype=np.float32)
    if emb.ndim != 2 or w.ndim != 2 or emb.shape[1] != w.shape[0]:
        raise ValueError(f"zeroshot_table: images (N, D) and classifier (D, C) do not fit: "
                         f"{emb.shape} and {w.shape}")
    if w.shape[1] != len(classnames):
        raise ValueError(f"zeroshot_table: {len(classnames)} class names for a classifier of "
                         f"{w.shape[1]} classes")
    probs = softmax(zeroshot.LOGIT_SCALE * (emb @ w), axis=1)
    pred = probs.argmax(1)
    out: Dict[str, Any] = {
        "classnames": list(classnames),
        "names": list(names) if names is not None else [f"#{i}" for i in range(len(emb))],
        "probabilities": probs, "predicted": pred, "confidence": probs.max(1),
    }
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != pred.shape:
            raise ValueError(f"zeroshot_table: {y.shape[0]} labels for {pred.shape[0]} images")
        out["accuracy"] = float(np.mean(pred == y))
    return out


# ------------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------------

def _context_length(model: nn.Module, tokenizer: Callable) -> Optional[int]:
    for owner in (tokenizer, model, getattr(model, "text", None)):
        n = getattr(owner, "context_length", None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def encode_queries(model: nn.Module, tokenizer: Callable, texts: Sequence[str], **text_kw: Any
                   ) -> Tuple[np.ndarray, List[str]]:
    """(Q, D) normalized text embeddings of ``texts`` and a note for each query the tokenizer
    truncates to the text tower's context length ("" for the others)."""
    texts = [" ".join(str(t).split()) for t in texts]
    if not texts or any(not t for t in texts):
        raise ValueError("the query is empty: type a sentence")
    n_ctx = _context_length(model, tokenizer)
    notes = []
    for t in texts:
        encode = getattr(tokenizer, "encode", None)
        n_tok = len(encode(t)) + 2 if callable(encode) and n_ctx else None  # + start, end
        notes.append(f"the query has {n_tok} tokens; the text tower reads the first {n_ctx} "
                     f"(the rest is cut off)" if n_tok is not None and n_tok > n_ctx else "")
    text_kw.setdefault("progress", False)
    feats = extract_text_features(model, tokenizer, texts, **text_kw)
    return np.ascontiguousarray(feats.embeddings, dtype=np.float32), notes


def rank(scores: ArrayLike, k: int, names: Optional[Sequence[str]] = None
         ) -> List[Dict[str, Any]]:
    """The ``k`` best of a score row, best first: ``[{"rank", "index", "score", "name"}]``; ties
    keep the lower index first."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k={k!r}: expected an integer >= 1")
    order = np.argsort(-s, kind="stable")[:int(k)]
    return [{"rank": r + 1, "index": int(i), "score": float(s[i]),
             "name": names[int(i)] if names is not None else f"#{int(i)}"}
            for r, i in enumerate(order)]


def search_images(query_embedding: ArrayLike, image_embeddings: ArrayLike, k: int = 8,
                  names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Text -> images: the ``k`` images most similar (cosine) to one query embedding."""
    q = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
    emb = np.asarray(image_embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] != q.shape[0]:
        raise ValueError(f"search_images: a query of {q.shape[0]} dims and images {emb.shape}")
    return rank(emb @ q, min(int(k), len(emb)), names)


def search_texts(image_embedding: ArrayLike, text_embeddings: ArrayLike, texts: Sequence[str],
                 k: int = 5) -> List[Dict[str, Any]]:
    """Image -> text: the ``k`` captions most similar (cosine) to one image embedding; each hit's
    ``name`` is the caption."""
    if len(texts) != len(text_embeddings):
        raise ValueError(f"search_texts: {len(texts)} texts for {len(text_embeddings)} "
                         f"embeddings")
    return search_images(image_embedding, text_embeddings, k, list(texts))


# ------------------------------------------------------------------------------------------------
# Explain
# ------------------------------------------------------------------------------------------------

def explain(model: nn.Module, tokenizer: Callable, image: Any, caption: str, *,
            method: str = "integrated_gradients", transform: Callable,
            mask: Optional[np.ndarray] = None, device: Union[str, torch.device, None] = None,
            internal_batch_size: int = 32, **method_args: Any) -> Dict[str, Any]:
    """The attribution map of one image for one caption.

    Args:
        image: a PIL image; ``transform`` (the model's preprocessing) makes the model's input.
        method: a name of :data:`unirepclip.analysis.attribution.METHODS` with its own
            ``method_args`` (``n_steps``, ``stage``, ``window`` ...; one it does not take is a
            ``TypeError``).
        mask: the object's (H, W) mask in input pixels, if known; then the map is scored.

    Returns ``{"map" (H, W) float32, "input" (H, W, 3) uint8 (the image as the model saw
    it), "method", "caption", "similarity", "note"}`` and, with a mask that fits,
    ``"mass_in_mask"``, ``"pointing_game"``, ``"chance"``.
    """
    from unirepclip.utils import denormalize_images

    if method not in attribution.METHODS:
        raise ValueError(f"method {method!r} is not one of {attribution.METHODS}")
    q, notes = encode_queries(model, tokenizer, [caption], device=device or "cpu")
    x = transform(image)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError("explain: the transform must turn the image into a (3, H, W) tensor")
    x = x.unsqueeze(0)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with torch.no_grad():
        img_emb = model.encode_image(x.to(dev), normalize=True).float().cpu().numpy()[0]
    amap = attribution.attribute(method, model, x, torch.from_numpy(q), batch_size=1,
                                 internal_batch_size=internal_batch_size, device=dev,
                                 **method_args)[0]
    mean = std = None
    norm = [t for t in getattr(transform, "transforms", []) if hasattr(t, "mean")]
    if norm:
        mean, std = norm[-1].mean, norm[-1].std
    shown = denormalize_images(x, mean=mean, std=std)[0]
    out: Dict[str, Any] = {"map": amap, "input": shown, "method": method,
                           "caption": caption, "similarity": float(img_emb @ q[0]),
                           "note": notes[0]}
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == amap.shape:
            out["mass_in_mask"] = attribution.mass_in_mask(amap, m)
            out["pointing_game"] = attribution.pointing_game(amap, m)
            out["chance"] = attribution.chance_level(m)
        else:
            out["note"] = (out["note"] + "; " if out["note"] else "") + (
                f"the mask ({m.shape[0]}x{m.shape[1]}) does not match the input "
                f"({amap.shape[0]}x{amap.shape[1]}): not scored")
    return out


# ------------------------------------------------------------------------------------------------
# Embedding map
# ------------------------------------------------------------------------------------------------

MAP_METHODS = ("pca", "tsne")


def embedding_map(embeddings: ArrayLike, method: str = "pca", *, seed: int = 0,
                  perplexity: float = 30.0) -> Dict[str, Any]:
    """2-D coordinates (N, 2) of the embeddings: ``"pca"`` (scikit-learn's ``PCA``, with the
    explained variance ratio of the two axes) or ``"tsne"`` (scikit-learn's ``TSNE`` from a PCA
    start, perplexity capped below N)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embedding map: needs at least 3 embeddings (N, D), got shape {x.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA
        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(x)
        return {"coords": coords, "method": "pca",
                "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_]}
    if method == "tsne":
        from sklearn.manifold import TSNE
        perp = float(min(perplexity, (len(x) - 1) / 3.0))
        coords = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed,
                      metric="cosine").fit_transform(x)
        return {"coords": coords, "method": "tsne", "perplexity": perp}
    raise ValueError(f"embedding map: method {method!r} is not one of {MAP_METHODS}")


def nearest_neighbours(embeddings: ArrayLike, index: int, k: int = 8,
                       names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """The ``k`` images nearest (cosine, in the full embedding space) to image ``index``, the
    image itself left out."""
    emb = l2_normalize(np.asarray(embeddings, dtype=np.float32), "embeddings")
    if not 0 <= int(index) < len(emb):
        raise ValueError(f"image {index} is not in the gallery (0..{len(emb) - 1})")
    s = (emb @ emb[int(index)]).astype(np.float64)
    s[int(index)] = -np.inf
    return rank(s, min(int(k), len(emb) - 1), names)


def nearest_point(coords: ArrayLike, x: float, y: float) -> int:
    """The row of ``coords`` (N, 2) nearest to the point (x, y): the image under a click."""
    c = np.asarray(coords, dtype=np.float64)
    return int(np.argmin(((c - np.array([x, y])) ** 2).sum(1)))


# ------------------------------------------------------------------------------------------------
# Receptive field
# ------------------------------------------------------------------------------------------------

def receptive_field(model: nn.Module, stage: int, resolution: int, *, dataset: str = "synthetic",
                    n_images: int = 8, data_dir: str = "", seed: int = 0, batch_size: int = 8,
                    precision: str = "fp32", progress: bool = False) -> Dict[str, Any]:
    """The ERF of one stage at one resolution (:func:`unirepclip.analysis.erf.compute_erf` over
    :func:`~unirepclip.analysis.erf.erf_images`) and its area ratios.

    Returns ``{"erf" (R, R) map, "normalized" (R, R), "area_ratios" {"t20": {"side",
    "area_ratio"}, ...}, "stage", "resolution", "n_images", "n_nan"}``.
    """
    trunk = erf.stage_feature_fn(model, int(stage))  # validates the stage
    images = erf.erf_images(dataset, int(n_images), int(resolution), data_dir=data_dir or None,
                            seed=seed)
    emap, n_used, n_nan = erf.compute_erf(trunk, images, batch_size=batch_size,
                                          precision=precision, progress=progress,
                                          return_counts=True)
    return {"erf": emap, "normalized": erf.normalize_erf(emap),
            "area_ratios": erf.area_ratios(emap), "stage": int(stage),
            "resolution": int(resolution), "n_images": int(n_used), "n_nan": int(n_nan)}


# ------------------------------------------------------------------------------------------------
# Model checks and the notebook's default queries
# ------------------------------------------------------------------------------------------------

def text_tower_problem(model: nn.Module, tokenizer: Optional[Callable]) -> Optional[str]:
    """Why the text panels cannot run with this model (no text tower, no tokenizer), or None."""
    if tokenizer is None:
        return "this model has no tokenizer: the text panels need one"
    if not callable(getattr(model, "encode_text", None)):
        return "this checkpoint has no text tower: only the image panels work"
    has_text = any(hasattr(model, a) for a in ("transformer", "text", "token_embedding"))
    if not has_text:
        return "this checkpoint has no text tower: only the image panels work"
    return None


def default_queries(model: nn.Module, tokenizer: Callable, gallery: Gallery,
                    image_embeddings: np.ndarray, *, transform: Callable, query_index: int = 0,
                    top_k: int = 8, explain_method: str = "integrated_gradients",
                    explain_args: Optional[Mapping[str, Any]] = None, map_method: str = "pca",
                    erf_stage: int = 3, erf_resolution: int = 64, erf_images: int = 8,
                    dataset: str = "synthetic", data_dir: str = "", seed: int = 0,
                    **text_kw: Any) -> Dict[str, Any]:
    """Every panel's default query on the gallery, answered: what notebook 06 shows and records.

    The queries: zero-shot with the gallery's own class names and the built-in ensemble that fits
    them; text -> images with image ``query_index``'s caption (or class prompt); image -> text of
    the same image over the gallery's captions; its attribution map for that caption; the PCA map
    with that image's nearest neighbours; the ERF of ``erf_stage`` at ``erf_resolution``.

    Returns ``{"answers": the full answers (maps, tables), "record": the flat figures for
    ``results.record("explore", ...)``}``.
    """
    n = len(gallery)
    if not 0 <= query_index < n:
        raise ValueError(f"query_index={query_index}: the gallery has {n} images")
    text_kw.setdefault("progress", False)
    classnames = gallery.classnames or ["object"]
    templates = (template_set(next(iter(TEMPLATE_SETS))) if gallery.kind == "synthetic"
                 else template_set("CLIP ImageNet, simple (7)"))
    clf = text_classifier(model, tokenizer, classnames, templates, **text_kw)
    table = zeroshot_table(image_embeddings, clf, classnames, names=gallery.names,
                           labels=gallery.labels)
    if gallery.captions is not None:
        captions = list(gallery.captions)
    else:
        captions = [f"a photo of a {classnames[int(y)]}." for y in gallery.labels]
    query = captions[query_index]
    q, notes = encode_queries(model, tokenizer, [query], **text_kw)
    hits = search_images(q[0], image_embeddings, top_k, gallery.names)
    # image -> text over the distinct captions (repeated captions would fill the top k)
    distinct = list(dict.fromkeys(captions))
    cap_emb, _ = encode_queries(model, tokenizer, distinct, **text_kw)
    text_hits = search_texts(image_embeddings[query_index], cap_emb, distinct, top_k)
    mask = gallery.masks[query_index] if gallery.masks is not None else None
    expl = explain(model, tokenizer, gallery.image(query_index), query, method=explain_method,
                   transform=transform, mask=mask, device=text_kw.get("device"),
                   **dict(explain_args or {}))
    emap = embedding_map(image_embeddings, map_method, seed=seed)
    nn_hits = nearest_neighbours(image_embeddings, query_index, top_k, gallery.names)
    rf = receptive_field(model, erf_stage, erf_resolution, dataset=dataset, n_images=erf_images,
                         data_dir=data_dir, seed=seed)

    own_rank = next((h["rank"] for h in rank(image_embeddings @ q[0], n)
                     if h["index"] == query_index), None)
    top_texts = [h["name"] for h in rank(image_embeddings[query_index] @ cap_emb.T,
                                         len(distinct), distinct)]
    record: Dict[str, Any] = {
        "n_images": n,
        "zeroshot": {"n_classes": len(classnames), "n_templates": len(templates),
                     "first_image_class": classnames[int(table["predicted"][query_index])],
                     "first_image_probability": float(table["confidence"][query_index])},
        "search": {"query": query, "top_k": int(min(top_k, n)), "own_image_rank": own_rank,
                   "top1_score": hits[0]["score"],
                   "hits_with_query_caption": int(sum(captions[h["index"]] == query
                                                      for h in hits))},
        "image_to_text": {"n_captions": len(distinct), "top1": text_hits[0]["name"],
                          "own_caption_rank": top_texts.index(query) + 1},
        "explain": {"method": explain_method, "similarity": expl["similarity"]},
        "embedding_map": {"method": emap["method"]},
        "erf": {"stage": rf["stage"], "resolution": rf["resolution"],
                "n_images": rf["n_images"],
                "area_ratio": {k: v["area_ratio"] for k, v in rf["area_ratios"].items()}},
    }
    if "accuracy" in table:
        record["zeroshot"]["acc1"] = table["accuracy"]
    for key in ("mass_in_mask", "pointing_game", "chance"):
        if key in expl:
            record["explain"][key] = float(expl[key])
    if emap["method"] == "pca":
        record["embedding_map"]["explained_variance_ratio"] = emap["explained_variance_ratio"]
    if gallery.labels is not None:
        same = [int(gallery.labels[h["index"]] == gallery.labels[query_index]) for h in nn_hits]
        record["embedding_map"]["neighbours_same_class"] = float(np.mean(same))
    answers = {"table": table, "query": query, "query_note": notes[0], "hits": hits,
               "text_hits": text_hits, "explain": expl, "map": emap, "neighbours": nn_hits,
               "erf": rf, "classnames": classnames, "query_index": query_index}
    return {"answers": answers, "record": record}
