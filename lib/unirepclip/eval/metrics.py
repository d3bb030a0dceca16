"""Classification and retrieval metrics shared by the evaluation modules.

The names and conventions follow LAION's CLIP_benchmark so that figures can be compared with
published tables: ``acc1`` / ``acc5`` (top-k accuracy), ``mean_per_class_recall`` (balanced
accuracy: the recall of each class present in the labels, averaged with equal weight) and
retrieval recall@k where a query scores when *any* of its positives is among its top k.
Rates are fractions in [0, 1].

Ties. Scores that tie are ranked by index (lower index first), the order a stable descending
sort gives and the choice ``argmax`` makes. Top-1 accuracy therefore always agrees with
``scores.argmax(1)``, and every metric here is a deterministic function of its inputs (top-k
routines that leave tie order to the implementation do not give that guarantee). Retrieval can
ask for ``ties="worst"`` instead: a negative that ties a query's best positive ranks ahead of it
(the worst case over every order of the tied candidates), so no reordering of the candidates or
queries changes the figures.

Inputs may be NumPy arrays or torch tensors (on any device); results are Python floats or NumPy
arrays.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from unirepclip.eval.uncertainty import mcnemar_exact  # re-exported: the probes compare with it
from unirepclip.utils import l2_normalize

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence]  # noqa: F821

__all__ = [
    "to_numpy",
    "check_features",
    "mcnemar_exact",
    "TIE_RULES",
    "ranks_of_first_positive",
    "topk_accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "mean_per_class_recall",
    "recall_at_k",
    "classification_report",
]


def to_numpy(x: ArrayLike, name: str = "array") -> np.ndarray:
    """A NumPy view or copy of ``x`` (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - the message is the point
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array ({e})") from e


def check_features(x: ArrayLike, name: str = "features", normalize: bool = False) -> np.ndarray:
    """``x`` as a finite 2-D float matrix (rows are items; float32 stays float32, anything else
    becomes float64), L2-normalized per row when ``normalize``. Errors name ``name``."""
    f = to_numpy(x, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items x features), got shape {f.shape}")
    if f.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if not np.issubdtype(f.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {f.dtype}")
    f = f.astype(np.float32 if f.dtype == np.float32 else np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    if normalize:
        f = l2_normalize(f, name)
    return f


def _scores_2d(scores: ArrayLike, name: str) -> np.ndarray:
    s = to_numpy(scores, name)
    if s.ndim != 2:
        raise ValueError(f"{name} must be 2-D (queries x candidates), got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {s.dtype}")
    if np.isnan(s).any():
        raise ValueError(f"{name} contains NaN; ranks are undefined")
    return s


def _labels_1d(labels: ArrayLike, name: str, n: Optional[int] = None,
               num_classes: Optional[int] = None) -> np.ndarray:
    y = to_numpy(labels, name)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries, expected {n}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"{name} holds class index {bad}, outside [0, {num_classes})")
    return y


TIE_RULES = ("index", "worst")


def _check_ties(ties: str) -> None:
    if ties not in TIE_RULES:
        raise ValueError(f"ties={ties!r} is not one of {', '.join(TIE_RULES)}")


def ranks_of_first_positive(scores: ArrayLike, positives: ArrayLike,
                            chunk_size: int = 1024, ties: str = "index") -> np.ndarray:
    """0-based rank of each query's best-ranked positive.

    Args:
        scores: (Q, N) similarity of each query to each candidate; higher ranks first.
        positives: (Q, N) boolean mask of the candidates that count as correct for each query.
        chunk_size: queries handled at once (bounds memory to ``chunk_size * N``).
        ties: ``"index"``: of equal scores the lower index ranks first; ``"worst"``: every
            negative that ties the best positive ranks ahead of it (independent of order).

    Returns:
        (Q,) int64 array. The rank counts the negatives that sort before the first positive:
        those with a higher score, plus those with an equal score that the tie rule puts
        ahead. No sort is needed, so the cost is O(Q N).
    """
    _check_ties(ties)
    s = _scores_2d(scores, "scores")
    pos = to_numpy(positives, "positives")
    if pos.shape != s.shape:
        raise ValueError(f"positives has shape {pos.shape}, scores has shape {s.shape}")
    pos = pos.astype(bool, copy=False)
    empty = ~pos.any(axis=1)
    if empty.any():
        raise ValueError(f"positives: query {int(np.flatnonzero(empty)[0])} has no positive "
                         "candidate, so its rank is undefined")
    n = s.shape[1]
    idx = np.arange(n)
    out = np.empty(s.shape[0], dtype=np.int64)
    for a in range(0, s.shape[0], chunk_size):
        sc, pc = s[a:a + chunk_size], pos[a:a + chunk_size]
        best = np.where(pc, sc, -np.inf).max(axis=1, keepdims=True)
        if ties == "worst":
            ahead = ~pc & (sc >= best)
        else:
            # the first positive in sorted order: the lowest index among positives at the best
            # score
            first = np.where(pc & (sc == best), idx, n).min(axis=1, keepdims=True)
            ahead = (sc > best) | ((sc == best) & (idx < first))
        # every candidate ahead of the first positive is a negative by construction
        out[a:a + chunk_size] = ahead.sum(axis=1)
    return out


def topk_accuracy(logits: ArrayLike, labels: ArrayLike, ks: Iterable[int] = (1, 5)
                  ) -> Dict[str, float]:
    """Top-k accuracy for each k, keyed ``acc{k}`` (CLIP_benchmark's names).

    k is clipped to the number of classes, so ``acc5`` on a 3-class task equals 1.0 (every label
    is among the top 3); the key keeps the requested k so reports stay uniform across tasks.
    """
    s = _scores_2d(logits, "logits")
    y = _labels_1d(labels, "labels", n=s.shape[0], num_classes=s.shape[1])
    ks = list(ks)
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks: every k must be a positive integer, got {k!r}")
    if s.shape[0] == 0:
        raise ValueError("logits: no samples to score")
    mask = np.zeros(s.shape, dtype=bool)
    mask[np.arange(len(y)), y] = True
    rank = ranks_of_first_positive(s, mask)
    return {f"acc{int(k)}": float(np.mean(rank < min(int(k), s.shape[1]))) for k in ks}


def confusion_matrix(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class (scikit-learn's convention)."""
    y = _labels_1d(labels, "labels", num_classes=num_classes)
    p = _labels_1d(predictions, "predictions", n=len(y), num_classes=num_classes)
    return _sk_confusion_matrix(y, p, labels=np.arange(num_classes))


def per_class_accuracy(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
    """(C,) recall of each class; NaN for a class with no sample (its recall is undefined)."""
    cm = confusion_matrix(labels, predictions, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_per_class_recall(labels: ArrayLike, predictions: ArrayLike,
                          num_classes: Optional[int] = None) -> float:
    """Balanced accuracy: per-class recall averaged over the classes present in ``labels``.

    Equals scikit-learn's ``balanced_accuracy_score`` (which CLIP_benchmark reports); classes
    without samples are left out rather than counted as zero.
    """
    y = _labels_1d(labels, "labels")
    if y.size == 0:
        raise ValueError("labels: no samples to score")
    p = _labels_1d(predictions, "predictions", n=len(y))
    if num_classes is None:
        num_classes = int(max(y.max(), p.max())) + 1
    return float(np.nanmean(per_class_accuracy(y, p, num_classes)))


def recall_at_k(scores: ArrayLike, positives: ArrayLike, ks: Iterable[int] = (1, 5, 10),
                ties: str = "index") -> Dict[str, float]:
    """Retrieval recall@k keyed ``r{k}``: the fraction of queries with a positive in their top k.

    Args:
        scores: (Q, N) query-candidate similarities.
        positives: (Q, N) boolean mask; a query may have several positives (an image with five
            captions) and scores at k when any of them ranks within the first k.
        ks: the cut-offs; a k larger than N counts every query as a hit.
        ties: the tie rule (see :func:`ranks_of_first_positive`).
    """
    ks = list(ks)
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks: every k must be a positive integer, got {k!r}")
    rank = ranks_of_first_positive(scores, positives, ties=ties)
    if rank.size == 0:
        raise ValueError("scores: no queries to score")
    return {f"r{int(k)}": float(np.mean(rank < int(k))) for k in ks}


def classification_report(logits: ArrayLike, labels: ArrayLike, ks: Iterable[int] = (1, 5)
                          ) -> Dict[str, object]:
    """The usual classification metrics from logits in one dict.

    Keys: ``acc{k}`` for each k, ``mean_per_class_recall``, ``per_class_accuracy`` ((C,) array,
    NaN where a class has no sample), ``confusion_matrix`` ((C, C) counts) and ``predictions``
    (argmax, the tie rule of the module).
    """
    s = _scores_2d(logits, "logits")
    y = _labels_1d(labels, "labels", n=s.shape[0], num_classes=s.shape[1])
    pred = s.argmax(axis=1)
    out: Dict[str, object] = dict(topk_accuracy(s, y, ks))
    cm = confusion_matrix(y, pred, s.shape[1])
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pca = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    out["mean_per_class_recall"] = float(np.nanmean(pca))
    out["per_class_accuracy"] = pca
    out["confusion_matrix"] = cm
    out["predictions"] = pred
    return out


