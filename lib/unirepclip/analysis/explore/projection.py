"""The embedding map panel's answers: the gallery's embeddings in 2-D (:func:`embedding_map`: PCA,
or scikit-learn's t-SNE on request), the nearest images of one (:func:`nearest_neighbours`) and
the image under a clicked point (:func:`nearest_point`)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from unirepclip.analysis.explore.search import rank
from unirepclip.utils import l2_normalize

__all__ = ["MAP_METHODS", "embedding_map", "nearest_neighbours", "nearest_point"]

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
