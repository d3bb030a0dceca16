"""The search panel's answers: text -> images and image -> text by cosine similarity.

:func:`encode_queries` (with a note when a query is longer than the text tower's context),
:func:`rank` (top k of a similarity row, ties to the lower index), :func:`search_images` and
:func:`search_texts`; :func:`text_tower_problem` says why the text panels cannot work with a
model (no text tower, no tokenizer), or None.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn
from numpy.typing import ArrayLike

from unirepclip.features import extract_text_features, search_index

__all__ = ["encode_queries", "rank", "search_images", "search_texts", "text_tower_problem"]


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
    if len(emb) <= search_index.EXACT_THRESHOLD:  # exact: the product, ties to the lower index
        return rank(emb @ q, min(int(k), len(emb)), names)
    scores, ids = search_index.index_for(image_embeddings).search(q, k)  # FAISS, built once
    return [{"rank": r + 1, "index": int(i), "score": float(v),
             "name": names[int(i)] if names is not None else f"#{int(i)}"}
            for r, (v, i) in enumerate(zip(scores[0], ids[0]))]


def search_texts(image_embedding: ArrayLike, text_embeddings: ArrayLike, texts: Sequence[str],
                 k: int = 5) -> List[Dict[str, Any]]:
    """Image -> text: the ``k`` captions most similar (cosine) to one image embedding; each hit's
    ``name`` is the caption."""
    if len(texts) != len(text_embeddings):
        raise ValueError(f"search_texts: {len(texts)} texts for {len(text_embeddings)} "
                         f"embeddings")
    return search_images(image_embedding, text_embeddings, k, list(texts))


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
