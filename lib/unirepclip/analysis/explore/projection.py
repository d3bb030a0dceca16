"""The embedding map panel's answers: the gallery's embeddings in 2-D (:func:`embedding_map`: PCA,
or scikit-learn's t-SNE on request), the nearest images of one (:func:`nearest_neighbours`) and
the image under a clicked point (:func:`nearest_point`).

A map is computed once per set of features: :func:`embedding_map` keeps the last few maps by
the features' key (:func:`features_key`, a digest of the array's bytes, shape and dtype) with the
method and its settings, so redrawing the same features (switching PCA and t-SNE back and forth,
another point, the notebook's default query after the app's) costs nothing; a t-SNE of 1,000
images takes seconds. :func:`cached_embedding_map` answers from that memory only.
"""
from __future__ import annotations

import collections
import copy
import hashlib
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from unirepclip.analysis.explore.search import rank
from unirepclip.utils import l2_normalize

__all__ = ["MAP_METHODS", "MAP_TITLES", "embedding_map", "cached_embedding_map", "features_key",
           "nearest_neighbours", "nearest_point"]

MAP_METHODS = ("pca", "tsne")
#: Each method's name as written (t-SNE, van der Maaten & Hinton 2008).
MAP_TITLES = {"pca": "PCA", "tsne": "t-SNE"}

_CACHE_SIZE = 8
_cache: "collections.OrderedDict[Tuple[Any, ...], Dict[str, Any]]" = collections.OrderedDict()
_cache_lock = threading.Lock()


def features_key(embeddings: ArrayLike) -> str:
    """The features' key: a SHA-1 of the array's bytes with its shape and dtype (equal arrays,
    equal keys, whatever object holds them)."""
    x = np.ascontiguousarray(embeddings)
    h = hashlib.sha1(f"{x.shape}{x.dtype.str}".encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


def _key(embeddings: ArrayLike, method: str, seed: int, perplexity: float) -> Tuple[Any, ...]:
    return (features_key(embeddings), method, int(seed),
            float(perplexity) if method == "tsne" else None)


def cached_embedding_map(embeddings: ArrayLike, method: str = "pca", *, seed: int = 0,
                         perplexity: float = 30.0) -> Optional[Dict[str, Any]]:
    """The map :func:`embedding_map` would return if it has computed it already, else None."""
    with _cache_lock:
        hit = _cache.get(_key(embeddings, method, seed, perplexity))
    return copy.deepcopy(hit) if hit is not None else None


def embedding_map(embeddings: ArrayLike, method: str = "pca", *, seed: int = 0,
                  perplexity: float = 30.0) -> Dict[str, Any]:
    """2-D coordinates (N, 2) of the embeddings: ``"pca"`` (scikit-learn's ``PCA``, with the
    explained variance ratio of the two axes) or ``"tsne"`` (scikit-learn's ``TSNE`` from a PCA
    start, perplexity capped below N). Computed once per features' key, method and settings (the
    answer is a copy: changing it leaves the memory alone)."""
    if method not in MAP_METHODS:
        raise ValueError(f"embedding map: method {method!r} is not one of {MAP_METHODS}")
    key = _key(embeddings, method, seed, perplexity)
    hit = cached_embedding_map(embeddings, method, seed=seed, perplexity=perplexity)
    if hit is not None:
        return hit
    emap = _compute_map(embeddings, method, seed, perplexity)
    with _cache_lock:
        _cache[key] = copy.deepcopy(emap)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return emap


def _compute_map(embeddings: ArrayLike, method: str, seed: int, perplexity: float
                 ) -> Dict[str, Any]:
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
    raise AssertionError(method)  # embedding_map checked it


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
