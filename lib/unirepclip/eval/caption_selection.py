"""Image-caption selection: CLIP_benchmark's ``image_caption_selection`` (SugarCrepe, Winoground).

Each item has ``nim`` images and ``nt`` captions, image k belonging with caption k for
``k < min(nim, nt)``. With ``s[i, t]`` the cosine similarity of image i and caption t:

* ``text_acc``: the share of items where every image k picks its own caption
  (``argmax_t s[k, t] == k``): the right text for each image;
* ``image_acc``: the share where every caption k picks its own image (``argmax_i s[i, k] == k``);
* ``acc``: both at once.

Ties fall as CLIP_benchmark's ``argmax`` lets them, to the lower index: the first caption (the
positive, for SugarCrepe) wins an exact tie. ``ties`` counts the items where a decision that
counts met an exact tie, so a figure resting on ties says so. For SugarCrepe (one image, two
captions) ``image_acc`` is 1 by construction (one image is always the argmax) and ``acc`` equals
``text_acc``: it is no finding.

Per-item outcomes (:func:`selection_outcomes`) feed the intervals of
:mod:`unirepclip.eval.uncertainty` (each key is a plain proportion over items: Wilson).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch

from unirepclip.eval.metrics import to_numpy

__all__ = ["selection_scores", "selection_outcomes", "image_caption_selection",
           "evaluate_caption_selection", "SELECTION_KEYS"]

SELECTION_KEYS = ("text_acc", "image_acc", "acc")


def selection_scores(image_emb: Any, text_emb: Any) -> np.ndarray:
    """(N, nim, nt) similarities of each item's images (N, nim, D) and captions (N, nt, D),
    both L2-normalized here."""
    img = to_numpy(image_emb, "image_emb").astype(np.float64)
    txt = to_numpy(text_emb, "text_emb").astype(np.float64)
    if img.ndim != 3 or txt.ndim != 3 or img.shape[0] != txt.shape[0] \
            or img.shape[2] != txt.shape[2]:
        raise ValueError(f"image_emb {img.shape} and text_emb {txt.shape}: expected (N, nim, D) "
                         f"and (N, nt, D) for the same N items and D")
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
    return np.einsum("nid,ntd->nit", img, txt)


def _tied_max(x: np.ndarray) -> np.ndarray:
    """Per row of the last axis: is its maximum reached more than once?"""
    return (x == x.max(axis=-1, keepdims=True)).sum(axis=-1) > 1


def selection_outcomes(scores: Any) -> Dict[str, np.ndarray]:
    """Per-item booleans ``text_correct``, ``image_correct``, ``both`` and ``tie`` of (N, nim, nt)
    scores (see the module doc)."""
    s = to_numpy(scores, "scores")
    if s.ndim != 3 or s.shape[0] == 0 or min(s.shape[1:]) == 0:
        raise ValueError(f"scores: expected (N, nim, nt) with N, nim, nt > 0, got {s.shape}")
    g = min(s.shape[1], s.shape[2])
    gt = np.arange(g)
    rows = s[:, :g, :]                      # image k over every caption
    cols = np.swapaxes(s, 1, 2)[:, :g, :]   # caption k over every image
    text = (rows.argmax(axis=-1) == gt).all(axis=1)
    image = (cols.argmax(axis=-1) == gt).all(axis=1)
    tie = _tied_max(rows).any(axis=1) | _tied_max(cols).any(axis=1)
    return {"text_correct": text, "image_correct": image, "both": text & image, "tie": tie}


def image_caption_selection(scores: Any) -> Dict[str, Union[float, int]]:
    """``text_acc``, ``image_acc``, ``acc`` (CLIP_benchmark's keys), ``ties`` (items with an
    exact tie in a decision) and ``n`` (items) of (N, nim, nt) scores."""
    o = selection_outcomes(scores)
    return {"text_acc": float(o["text_correct"].mean()),
            "image_acc": float(o["image_correct"].mean()), "acc": float(o["both"].mean()),
            "ties": int(o["tie"].sum()), "n": int(len(o["tie"]))}


def evaluate_caption_selection(model: torch.nn.Module, dataset: Any, tokenizer: Callable, *,
                               transform: Optional[Callable] = None, batch_size: int = 64,
                               device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                               cache: Any = None) -> Dict[str, Any]:
    """Embeds every distinct image and caption of a
    :class:`~unirepclip.data.compositional.SelectionDataset` once (features of
    :mod:`unirepclip.features.extract`, cached when ``cache`` is given) and scores the items.
    ``transform``: the images' (default: the dataset's, else the model's validation transform).

    Returns :func:`image_caption_selection`'s figures plus ``scores`` (N, nim, nt) and the
    per-item ``outcomes``. An unreadable image is an error naming it, not a dropped item.

    Equal caption strings are embedded once, so they tie exactly and the first wins, as the
    module doc says. CLIP_benchmark embeds every caption of a batch separately, and two equal
    strings in one batch may then differ in the last bits: its outcome on such an item is decided
    by rounding (on the demo the negative won by 2e-8). Everywhere else the figures are its.
    """
    from unirepclip.features.extract import extract_image_features, extract_text_features

    nim = {len(f) for f, _ in dataset.items}
    nt = {len(c) for _, c in dataset.items}
    if len(nim) != 1 or len(nt) != 1:
        raise ValueError(f"{dataset.name}: items differ in their numbers of images {sorted(nim)} "
                         f"or captions {sorted(nt)}")
    if transform is None:  # the dataset's own, else (None) the model's validation transform
        transform = getattr(dataset, "transform", None)
    files = dataset.image_files()
    row = {f: i for i, f in enumerate(files)}
    images = _ImageFiles(dataset, files)
    feats = extract_image_features(model, images, transform=transform, batch_size=batch_size,
                                   device=device, precision=precision, cache=cache,
                                   progress=False)
    if feats.skipped:
        path, reason = feats.skipped[0]
        raise ValueError(f"{dataset.name}: image {path} cannot be read ({reason})")
    texts = list(dict.fromkeys(c for _, caps in dataset.items for c in caps))
    tfeats = extract_text_features(model, tokenizer, texts, batch_size=batch_size, device=device,
                                   precision=precision, cache=cache, progress=False)
    text_row = {t: i for i, t in enumerate(texts)}
    img = feats.embeddings[np.argsort(feats.indices)]
    image_emb = img[[[row[f] for f in files_] for files_, _ in dataset.items]]
    text_emb = tfeats.embeddings[[[text_row[c] for c in caps] for _, caps in dataset.items]]
    scores = selection_scores(image_emb, text_emb)
    out: Dict[str, Any] = dict(image_caption_selection(scores))
    out["scores"] = scores
    out["outcomes"] = selection_outcomes(scores)
    return out


class _ImageFiles:
    """The distinct image files of a selection set as ``(PIL image, 0)`` rows."""

    def __init__(self, dataset: Any, files: list):
        self.dataset, self.files = dataset, files
        self.identity = dict(dataset.identity, files=len(files))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from unirepclip.data.files import load_image

        return load_image(self.dataset.root / self.files[i]), 0
