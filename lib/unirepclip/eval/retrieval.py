"""Zero-shot image-text retrieval: recall@k in both directions (CLIP_benchmark's protocol).

Each caption belongs to exactly one image; an image may have several captions (COCO and Flickr
have five). Image -> text: a query image scores at k when any of its captions is among the k
texts most similar to it. Text -> image: a caption scores when its one image is among the top k.
Similarity is the dot product of L2-normalized embeddings (cosine), as in CLIP. Ties are ranked
by index, see :mod:`unirepclip.metrics`.
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from unirepclip.eval.metrics import ArrayLike, check_features, recall_at_k, to_numpy

__all__ = ["positives_mask", "similarity", "evaluate"]


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


def evaluate(image_features: ArrayLike, text_features: ArrayLike, text_to_image: ArrayLike,
             ks: Iterable[int] = (1, 5, 10), normalize: bool = True
             ) -> Dict[str, Dict[str, float]]:
    """Recall@k in both directions from embeddings.

    Args:
        image_features: (I, D) image embeddings (cached features are fine).
        text_features: (T, D) caption embeddings.
        text_to_image: (T,) index of the image each caption describes.
        ks: the cut-offs, reported as ``r{k}``.
        normalize: L2-normalize both sides first (harmless when they already are).

    Returns:
        ``{"image_to_text": {"r1": ..., "r5": ..., "r10": ...}, "text_to_image": {...}}``.
    """
    ks = tuple(ks)
    sim = similarity(image_features, text_features, normalize)
    mask = positives_mask(text_to_image, sim.shape[0])
    if mask.shape[1] != sim.shape[1]:
        raise ValueError(f"text_to_image has {mask.shape[1]} entries, text_features has "
                         f"{sim.shape[1]} rows")
    return {
        "image_to_text": recall_at_k(sim, mask, ks),
        "text_to_image": recall_at_k(sim.T, mask.T, ks),
    }
