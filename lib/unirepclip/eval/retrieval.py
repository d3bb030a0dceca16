"""Zero-shot image-text retrieval: recall@k in both directions.

Similarity is the dot product of L2-normalized embeddings (cosine), as in CLIP. Two protocols:

* **CLIP_benchmark's** (``texts=None``): each caption belongs to exactly one image; an image may
  have several captions (COCO and Flickr have five). Image -> text: a query image scores at k
  when any of its captions is among the k texts most similar to it. Text -> image: a caption
  scores when its one image is among the top k. Ties are ranked by index (see
  :mod:`unirepclip.eval.metrics`), so where two captions are the same string (equal embeddings)
  the figures depend on which comes first.
* **Identical texts are one text** (``texts=`` the caption strings): captions with the same
  string are merged into one candidate (and one text -> image query), and every image any of
  them describes is a positive of it. Ties count against the query: a negative that scores
  exactly as high as the query's best positive ranks ahead of it. No reordering of the images
  or the captions changes the figures. Without repeated strings and without exact ties this
  equals CLIP_benchmark's protocol.

Search. Exact by default: every candidate is scored, with the tie rules above. ``search=
"approximate"`` ranks each query's top ``max(ks)`` candidates through the FAISS index of
:mod:`unirepclip.features.search_index` (exact up to its ``exact_threshold``), for candidate sets
too large to score in full; its order has no tie rule, a positive it misses counts as missed,
and the result then carries ``"search"``: what was approximate (kind, factory, search parameter,
its tuned recall), so a report says so.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from unirepclip.eval.metrics import (ArrayLike, check_features, ranks_of_first_positive,
                                     recall_at_k, to_numpy)
from unirepclip.eval.params import SEARCHES
from unirepclip.eval.uncertainty import proportion_interval

__all__ = ["positives_mask", "similarity", "group_identical_texts", "evaluate", "query_hits",
           "recall_intervals", "outcome_arrays", "SEARCHES"]




def positives_mask(text_to_image: ArrayLike, num_images: int) -> np.ndarray:
    """(num_images, num_texts) boolean mask: ``mask[i, j]`` when caption j describes image i.

    Raises if an index is out of range or an image has no caption (it could never be retrieved
    correctly, which would silently lower image -> text recall).
    """
    t2i = to_numpy(text_to_image, "text_to_image")
    if t2i.ndim != 1 or not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError(f"text_to_image must be a 1-D array of image indices, got shape "
                         f"{t2i.shape} and dtype {t2i.dtype}")
    if t2i.size and (t2i.min() < 0 or t2i.max() >= num_images):
        bad = t2i[(t2i < 0) | (t2i >= num_images)][0]
        raise ValueError(f"text_to_image holds image index {bad}, outside [0, {num_images})")
    mask = np.zeros((num_images, len(t2i)), dtype=bool)
    mask[t2i, np.arange(len(t2i))] = True
    orphans = np.flatnonzero(~mask.any(axis=1))
    if orphans.size:
        raise ValueError(f"text_to_image: image {int(orphans[0])} has no caption "
                         f"({orphans.size} such images)")
    return mask


def similarity(image_features: ArrayLike, text_features: ArrayLike, normalize: bool = True
               ) -> np.ndarray:
    """(num_images, num_texts) cosine similarities (dot products if ``normalize=False``)."""
    img = check_features(image_features, "image_features", normalize)
    txt = check_features(text_features, "text_features", normalize)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_features have dim {img.shape[1]}, text_features dim "
                         f"{txt.shape[1]}")
    return img @ txt.T


def group_identical_texts(texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """``(first, group)`` for the distinct strings of ``texts``, in order of first appearance:
    ``first[u]`` is the position of the u-th distinct string's first occurrence and
    ``group[j]`` the distinct string caption j is (``texts[j] == texts[first[group[j]]]``)."""
    index: Dict[str, int] = {}
    first: List[int] = []
    group = np.empty(len(texts), dtype=np.int64)
    for j, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{j}] is a {type(t).__name__}, not a caption string")
        if t not in index:
            index[t] = len(first)
            first.append(j)
        group[j] = index[t]
    return np.asarray(first, dtype=np.int64), group


def evaluate(image_features: ArrayLike, text_features: ArrayLike, text_to_image: ArrayLike,
             ks: Iterable[int] = (1, 5, 10), normalize: bool = True, *,
             texts: Optional[Sequence[str]] = None, search: str = "exact",
             index_options: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Recall@k in both directions from embeddings (the protocols in the module doc).

    Args:
        image_features: (I, D) image embeddings (cached features are fine).
        text_features: (T, D) caption embeddings.
        text_to_image: (T,) index of the image each caption describes.
        ks: the cut-offs, reported as ``r{k}``.
        normalize: L2-normalize both sides first (harmless when they already are).
        texts: the (T,) caption strings: identical strings are one text whose positives are all
            the images they describe, and ties count against the query. ``None``: every caption
            is its own text and ties go by index (CLIP_benchmark).
        search: ``"exact"``, or ``"approximate"`` (see the module doc).
        index_options: for ``"approximate"``: keywords of
            :func:`unirepclip.features.search_index.build_index` (``exact_threshold``, ...).

    Returns:
        ``{"image_to_text": {"r1": ..., "r5": ..., "r10": ...}, "text_to_image": {...}}``, and
        ``"search"`` (the two indexes' parameters) when the search was approximate.
    """
    ks = tuple(ks)
    if search not in SEARCHES:
        raise ValueError(f"search={search!r} is not one of {', '.join(SEARCHES)}")
    if search == "approximate":
        return _approximate(image_features, text_features, text_to_image, ks, normalize,
                            texts, index_options or {})
    sim = similarity(image_features, text_features, normalize)
    mask = positives_mask(text_to_image, sim.shape[0])
    if mask.shape[1] != sim.shape[1]:
        raise ValueError(f"text_to_image has {mask.shape[1]} entries, text_features has "
                         f"{sim.shape[1]} rows")
    if texts is None:
        return {
            "image_to_text": recall_at_k(sim, mask, ks),
            "text_to_image": recall_at_k(sim.T, mask.T, ks),
        }
    if len(texts) != sim.shape[1]:
        raise ValueError(f"texts has {len(texts)} entries, text_features has {sim.shape[1]} rows")
    first, group = group_identical_texts(texts)
    # one column per distinct string, scored by its first occurrence's embedding (equal strings
    # have equal embeddings up to batch rounding); its positives are the union of the images
    merged = np.zeros((sim.shape[0], len(first)), dtype=bool)
    merged[to_numpy(text_to_image, "text_to_image"), group] = True
    sim = sim[:, first]
    return {
        "image_to_text": recall_at_k(sim, merged, ks, ties="worst"),
        "text_to_image": recall_at_k(sim.T, merged.T, ks, ties="worst"),
    }


def query_hits(image_features: ArrayLike, text_features: ArrayLike, text_to_image: ArrayLike,
               ks: Iterable[int] = (1, 5, 10), normalize: bool = True, *,
               texts: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, np.ndarray]]:
    """Per query, whether it scores at each k, by the exact search and the protocol of
    :func:`evaluate` (``texts``: identical strings are one text query): ``{"image_to_text":
    {"r1": (I,) bool, ...}, "text_to_image": {"r1": (T',) bool, ...}}`` with T' the distinct
    texts when ``texts`` is given. Their means are :func:`evaluate`'s recalls."""
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"ks: every k must be a positive integer, got {ks!r}")
    sim = similarity(image_features, text_features, normalize)
    mask = positives_mask(text_to_image, sim.shape[0])
    if mask.shape[1] != sim.shape[1]:
        raise ValueError(f"text_to_image has {mask.shape[1]} entries, text_features has "
                         f"{sim.shape[1]} rows")
    ties = "index"
    if texts is not None:
        if len(texts) != sim.shape[1]:
            raise ValueError(f"texts has {len(texts)} entries, text_features has "
                             f"{sim.shape[1]} rows")
        first, group = group_identical_texts(texts)
        mask = np.zeros((sim.shape[0], len(first)), dtype=bool)
        mask[to_numpy(text_to_image, "text_to_image"), group] = True
        sim, ties = sim[:, first], "worst"
    ranks = {"image_to_text": ranks_of_first_positive(sim, mask, ties=ties),
             "text_to_image": ranks_of_first_positive(sim.T, mask.T, ties=ties)}
    return {d: {f"r{k}": r < k for k in ks} for d, r in ranks.items()}


def recall_intervals(hits: Dict[str, Dict[str, np.ndarray]], confidence: float = 0.95
                     ) -> Dict[str, Dict[str, List[float]]]:
    """Wilson's interval ``[low, high]`` of every recall of :func:`query_hits` (a proportion of
    queries, one hit each: :func:`unirepclip.eval.uncertainty.proportion_interval`), in its
    layout."""
    out: Dict[str, Dict[str, List[float]]] = {}
    for direction, by_k in hits.items():
        out[direction] = {}
        for k, h in by_k.items():
            iv = proportion_interval(h, confidence)
            out[direction][k] = [iv.low, iv.high]
    return out


def outcome_arrays(hits: Dict[str, Dict[str, np.ndarray]], rows: ArrayLike
                   ) -> Dict[str, np.ndarray]:
    """:func:`query_hits` under the result keys they explain (``retrieval.<direction>.r<k>``),
    with ``retrieval:items`` (the dataset rows of the images), for
    :func:`unirepclip.eval.uncertainty.save_outcomes`."""
    out = {"retrieval:items": np.asarray(rows, dtype=np.int64)}
    out.update({f"retrieval.{d}.{k}": h for d, by_k in hits.items() for k, h in by_k.items()})
    return out


def _first_hit_ranks(found: np.ndarray, is_positive) -> np.ndarray:
    """0-based rank of each row's first positive among its returned candidates (the row's
    length where none is)."""
    hit = is_positive(found) & (found >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), found.shape[1])


def _approximate(image_features: ArrayLike, text_features: ArrayLike, text_to_image: ArrayLike,
                 ks: Tuple[int, ...], normalize: bool, texts: Optional[Sequence[str]],
                 options: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Recall@k from each query's top max(ks) through a search index (the module doc)."""
    from unirepclip.features import search_index

    img = check_features(image_features, "image_features", normalize)
    txt = check_features(text_features, "text_features", normalize)
    t2i = to_numpy(text_to_image, "text_to_image")
    if t2i.ndim != 1 or not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError(f"text_to_image must be a 1-D array of image indices, got shape "
                         f"{t2i.shape} and dtype {t2i.dtype}")
    if len(t2i) != len(txt):
        raise ValueError(f"text_to_image has {len(t2i)} entries, text_features has "
                         f"{len(txt)} rows")
    if t2i.size and (t2i.min() < 0 or t2i.max() >= len(img)):
        raise ValueError(f"text_to_image holds an image index outside [0, {len(img)})")
    if np.bincount(t2i, minlength=len(img)).min(initial=1) == 0:
        raise ValueError("text_to_image: an image has no caption")
    if texts is not None and len(texts) != len(txt):
        raise ValueError(f"texts has {len(texts)} entries, text_features has {len(txt)} rows")
    first, group = (group_identical_texts(texts) if texts is not None
                    else (np.arange(len(txt)), np.arange(len(txt))))
    n_img = len(img)
    pairs = np.unique(group * n_img + t2i.astype(np.int64))  # (distinct text, image) positives, as one code
    k = min(max(ks), len(first), n_img)
    by_text = search_index.build_index(txt[first], **options)
    by_image = search_index.build_index(img, **options)
    i2t = _first_hit_ranks(by_text.search(img, k)[1],
                           lambda f: np.isin(f * n_img + np.arange(n_img)[:, None], pairs))
    t2i_rank = _first_hit_ranks(by_image.search(txt[first], k)[1],
                                lambda f: np.isin(np.arange(len(first))[:, None] * n_img + f,
                                                  pairs))
    summary = {name: {key: ix.params.get(key) for key in
                      ("kind", "factory", "search", "tuned_recall")}
               for name, ix in (("texts", by_text), ("images", by_image))}
    return {"image_to_text": {f"r{q}": float(np.mean(i2t < q)) for q in ks},
            "text_to_image": {f"r{q}": float(np.mean(t2i_rank < q)) for q in ks},
            "search": {"mode": "approximate", **summary}}
