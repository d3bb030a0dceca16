"""Rows of a dataset: a seeded subset of them (:class:`Subset`, :func:`subset_indices`) and a
seeded held-out share (:func:`held_out_rows`). The one rule every dataset's ``n`` follows is
stated in :mod:`unirepclip.data.registry`; this module only knows rows, not dataset names."""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["Subset", "base_dataset", "dataset_rows", "subset_indices", "held_out_rows"]


class Subset:
    """Rows ``indices`` of ``dataset`` (kept in the given order), with an ``identity`` for the
    feature cache and ``transform`` passed through."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or (len(self.indices) and (
                self.indices.min() < 0 or self.indices.max() >= len(dataset))):
            raise ValueError(f"Subset: indices must be 1-D within [0, {len(dataset)})")

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])]

    @property
    def identity(self) -> Dict[str, Any]:
        base = getattr(self.dataset, "identity", {"repr": repr(self.dataset)})
        digest = hashlib.sha256(self.indices.tobytes()).hexdigest()
        return {"class": "Subset", "of": base, "indices_sha256": digest, "n": len(self)}

    def __repr__(self) -> str:
        return f"Subset({self.dataset!r}, n={len(self)})"


def base_dataset(ds: Any) -> Any:
    """The dataset under a :class:`Subset` (``ds`` itself otherwise)."""
    return ds.dataset if isinstance(ds, Subset) else ds


def dataset_rows(ds: Any) -> np.ndarray:
    """The rows of :func:`base_dataset` that ``ds`` holds, in its order."""
    return ds.indices if isinstance(ds, Subset) else np.arange(len(ds))


def subset_indices(n_total: int, n: int, seed: int) -> Optional[np.ndarray]:
    """A seeded random subset of ``n`` of ``n_total`` rows in ascending order, or None for all
    (``n <= 0`` or ``n >= n_total``)."""
    if n <= 0 or n >= n_total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def held_out_rows(n_total: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of ``range(n_total)`` (at least one row when
    ``n_total >= 2``, never all), ascending."""
    if n_total < 2:
        raise ValueError(f"cannot hold out a validation share of {n_total} row(s)")
    k = min(max(1, int(round(fraction * n_total))), n_total - 1)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=k, replace=False))
