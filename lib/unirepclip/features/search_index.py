"""Nearest-neighbour search over embeddings: exact up to a size, a FAISS index above it.

Maximum inner product (cosine on L2-normalized rows). The choice follows autofaiss's rules
(criteo/autofaiss, ``external/optimize.py``; autofaiss itself pins numpy < 2, so it is not a
dependency) and the FAISS wiki's "Guidelines to choose an index":

* ``n <= exact_threshold``: exact, a matrix product; ties go to the lower index, as in
  :func:`unirepclip.analysis.explore.rank`.
* above it, HNSW where memory allows: ``M = (budget / (4 n) - d) / 2`` links per vector, capped
  at 32, used when at least 8 (the flat vectors plus ``2 M`` int32 links per vector), and up to
  ``hnsw_max_n`` vectors: past that its build (graph insertion, ~1,000 vectors a second on 2
  busy cores at 768-d) takes longer than an IVF's (autofaiss has no such limit);
* else, where the flat vectors fit (``n`` floats, the codes, the centroids), IVF whose lists hold
  4-bit fast-scan PQ codes (``d/8`` of them, SIMD lookups) and whose top ``f k`` are reranked on
  the flat vectors (``f``, the ``k_factor``, tuned with ``nprobe``) (``IVF{c},PQ{d/8}x4fs,RFlat``). autofaiss takes flat codes here (``IVF{c},Flat``);
  measured on 2 cores at 768-d, scanning flat lists is memory-bound and no faster than the
  exact product batched through BLAS, while the fast-scan codes are 20x faster at 100k rows
  with 0.98 10-recall@10. ``4 sqrt(n)`` centroids rounded to a power of two (autofaiss's rule
  below 1M vectors; above it autofaiss takes 16384 and more, whose k-means takes hours on a few
  cores), trained on 40 rows per centroid, 10 k-means iterations;
* else IVF with PQ codes (``OPQ{m}_{y},IVF{c},PQ{m}np``, the largest ``m`` that fits the
  budget; ``np``: no polysemous training, which only serves Hamming filtering and is slow).

The search parameter (HNSW's ``efSearch``, IVF's ``nprobe``) is the first of a ladder that
reaches ``target_recall`` 10-recall@10 against exact search on a sample of the indexed rows
(each query's own row left out of both lists); the recall reached is recorded. Approximate
hits come in FAISS's order: ties there have no index rule. The GPU build of FAISS, when it is
installed and sees a GPU, searches the exact and IVF indexes (HNSW stays on the CPU).

An index is built once per feature cache entry (:func:`index_for_cache`) and stored beside it,
``<key>.<sig>.faiss`` with its parameters in ``<key>.<sig>.faiss-params`` (JSON, written last:
the commit marker); ``sig`` hashes the options, and the parameters record the entry's payload
sha256, so a rebuilt entry gets a rebuilt index.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import faiss
import numpy as np

__all__ = ["IndexPlan", "SearchIndex", "choose_index", "build_index", "index_for",
           "index_for_cache", "available_memory", "recall_at_k", "exact_top_k",
           "EXACT_THRESHOLD", "TARGET_RECALL"]

#: Up to this many rows the search is exact (a product of 50k x 768 floats: milliseconds).
EXACT_THRESHOLD = 50_000
#: The 10-recall@10 the search parameter is tuned to reach on the indexed rows.
TARGET_RECALL = 0.97
_HNSW_MAX_M, _HNSW_MIN_M = 32, 8
_EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
_PQ_CODES = (256, 128, 64, 48, 32, 24, 16, 8, 4)
_N_TUNE = 200
#: Past this many vectors HNSW's build is slower than an IVF's (see the module doc).
HNSW_MAX_N = 200_000
_TRAIN_PER_CENTROID, _KMEANS_ITERATIONS = 40, 10
_RERANK = (4, 8, 16, 32)  # k_factor: the refine stage reranks k_factor x k candidates
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class IndexPlan:
    """What to build: ``kind`` (exact, hnsw, ivf_flat, ivf_pq), the FAISS factory string (''
    for exact), the estimated size in bytes and why."""

    kind: str
    factory: str
    n: int
    dim: int
    estimated_bytes: int
    reason: str


def available_memory() -> int:
    """Bytes the system can still give (``MemAvailable``), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def nb_clusters(n: int) -> int:
    """The IVF's number of centroids for ``n`` vectors (autofaiss's first choice)."""
    return int(min(2 ** round(math.log2(4 * math.sqrt(n))), 65_536))


def choose_index(n: int, dim: int, *, exact_threshold: Optional[int] = None,
                 memory_budget: Optional[int] = None, hnsw_max_n: int = HNSW_MAX_N
                 ) -> IndexPlan:
    """The index for ``n`` vectors of ``dim`` floats within ``memory_budget`` bytes (default:
    half the available memory); ``exact_threshold`` defaults to :data:`EXACT_THRESHOLD`; the
    rules are in the module doc."""
    if n < 1 or dim < 1:
        raise ValueError(f"choose_index: n={n} vectors of dim={dim}: need at least one of each")
    flat = 4 * n * dim
    exact_threshold = EXACT_THRESHOLD if exact_threshold is None else exact_threshold
    if n <= exact_threshold:
        return IndexPlan("exact", "", n, dim, flat, f"n={n} <= exact_threshold={exact_threshold}")
    budget = int(memory_budget if memory_budget is not None else available_memory() // 2)
    m = int(math.floor((budget / (4 * n) - dim) / 2))
    if m >= _HNSW_MIN_M and n <= hnsw_max_n:
        m = min(m, _HNSW_MAX_M)
        return IndexPlan("hnsw", f"HNSW{m},Flat", n, dim, flat + 8 * m * n,
                         f"HNSW with M={m} fits {budget} bytes")
    c = nb_clusters(n)
    coarse, fs = f"IVF{c}", _fastscan_codes(dim)
    ivf = flat + n * (fs // 2 + 8) + 4 * c * dim
    if ivf <= budget:
        codes = f"PQ{fs}x4fs,RFlat" if fs else "Flat"
        return IndexPlan("ivf_flat", f"{coarse},{codes}", n, dim, ivf,
                         f"HNSW needs M >= {_HNSW_MIN_M} and n <= {hnsw_max_n}; "
                         f"IVF with the flat vectors ({ivf} bytes) fits {budget}")
    for pq in (p for p in _PQ_CODES if p < dim):
        size = n * (pq + 8) + 4 * c * dim
        if size <= budget or pq == _PQ_CODES[-1]:
            y = (min(dim // pq, 6) + 1) * pq
            return IndexPlan("ivf_pq", f"OPQ{pq}_{y},{coarse},PQ{pq}np", n, dim, size,
                             f"flat codes ({ivf} bytes) exceed {budget}: PQ{pq}")
    raise ValueError(f"choose_index: dim={dim} is too small for PQ codes and the flat "
                     f"vectors exceed memory_budget={budget}")


def _fastscan_codes(dim: int) -> int:
    """Sub-quantizers of a 4-bit fast-scan PQ: even, dividing ``dim``, ~8 dims each (0: none)."""
    return next((m for m in range(dim // 8, 1, -1) if dim % m == 0 and m % 2 == 0), 0)


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256
                ) -> Tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k): the ``k`` largest inner products per query, ties to the
    lower index (the same order as a stable descending sort)."""
    k = min(int(k), len(base))
    scores = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for a in range(0, len(queries), chunk):
        s = queries[a:a + chunk] @ base.T
        for r, row in enumerate(s):
            kth = np.partition(row, len(row) - k)[len(row) - k]
            cand = np.flatnonzero(row >= kth)
            order = cand[np.lexsort((cand, -row[cand]))][:k]
            ids[a + r], scores[a + r] = order, row[order]
    return scores, ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """k-recall@k: the share of each row of ``truth`` (Q, k) found in the same row of ``found``."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.shape[0] != truth.shape[0] or truth.shape[1] == 0:
        raise ValueError(f"recall_at_k: found {found.shape} against truth {truth.shape}")
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth))
    return hits / truth.size


def _gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if callable(get) else 0


class SearchIndex:
    """An index over ``(n, dim)`` float32 rows; :meth:`search` gives (scores, ids) of the best
    ``k`` per query. ``params`` holds the plan, the search parameter and the recall it reached."""

    def __init__(self, plan: IndexPlan, params: Dict[str, Any], *, base: Optional[np.ndarray] = None,
                 index: Optional[Any] = None):
        if (plan.kind == "exact") == (base is None):
            raise ValueError(f"SearchIndex: kind {plan.kind!r} needs "
                             f"{'the rows' if plan.kind == 'exact' else 'a FAISS index'}")
        self.plan, self.params, self.base, self.index = plan, params, base, index
        self._gpu = None

    @property
    def kind(self) -> str:
        return self.plan.kind

    def __len__(self) -> int:
        return self.plan.n

    def __repr__(self) -> str:
        return f"SearchIndex({self.kind}, n={self.plan.n}, {self.params.get('search', '')})"

    def _searcher(self) -> Any:
        if self._gpu is None and self.kind in ("ivf_flat", "ivf_pq") and _gpu_count() > 0:
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu if self._gpu is not None else self.index

    def search(self, queries: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, min(k, n)), best first; ``queries`` is (Q, dim) or (dim,)."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        q = q.reshape(1, -1) if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.plan.dim:
            raise ValueError(f"SearchIndex.search: queries of shape {q.shape} for an index of "
                             f"dim {self.plan.dim}")
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k={k!r}: expected an integer >= 1")
        k = min(int(k), self.plan.n)
        if self.kind == "exact":
            return exact_top_k(self.base, q, k)
        scores, ids = self._searcher().search(q, k)
        return scores, ids.astype(np.int64)


def _set_search(index: Any, setting: Dict[str, int]) -> str:
    """Apply ``{"efSearch" | "nprobe": v[, "k_factor": f]}``; the same as a string a=v,b=f."""
    for name, value in setting.items():
        if name == "k_factor":  # the refine stage reranks k_factor x k candidates
            faiss.downcast_index(index).k_factor = int(value)
        else:
            faiss.ParameterSpace().set_index_parameter(index, name, int(value))
    return ",".join(f"{name}={int(value)}" for name, value in setting.items())


def _parse_setting(text: str) -> Dict[str, int]:
    return {name: int(value) for name, value in (part.split("=") for part in text.split(","))}


def _ladder(index: Any, plan: IndexPlan) -> List[Dict[str, int]]:
    """The settings to try, cheapest first."""
    if plan.kind == "hnsw":
        return [{"efSearch": ef} for ef in _EF_LADDER]
    c = faiss.extract_index_ivf(index).nlist
    probes = sorted({min(2 ** i, c) for i in range(int(math.log2(c)) + 2)})
    factors = _RERANK if plan.factory.endswith(",RFlat") else (None,)
    return [{"nprobe": p, **({"k_factor": f} if f else {})} for f in factors for p in probes]


def _tune(index: Any, x: np.ndarray, plan: IndexPlan, target: float, seed: int
          ) -> Dict[str, Any]:
    """The first setting of the ladder whose 10-recall@10 on a sample of rows reaches
    ``target`` (else the best one seen)."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x), size=min(_N_TUNE, len(x)), replace=False))
    k = min(10, len(x) - 1)
    _, truth = exact_top_k(x, x[pick], k + 1)
    truth = np.array([t[t != p][:k] for t, p in zip(truth, pick)])
    best: Tuple[float, Dict[str, int]] = (-1.0, {})
    for setting in _ladder(index, plan):
        _set_search(index, setting)
        found = index.search(x[pick], k + 1)[1]
        recall = recall_at_k([f[f != p][:k] for f, p in zip(found, pick)], truth)
        best = max(best, (recall, setting), key=lambda b: b[0])
        if recall >= target:
            break
    return {"search": _set_search(index, best[1]), "tuned_recall": round(best[0], 4),
            "target_recall": target, "tune_queries": len(pick)}


def build_index(embeddings: Any, *, exact_threshold: Optional[int] = None,
                memory_budget: Optional[int] = None, hnsw_max_n: int = HNSW_MAX_N,
                target_recall: float = TARGET_RECALL, seed: int = 0,
                plan: Optional[IndexPlan] = None) -> SearchIndex:
    """An index over the rows of ``embeddings`` (inner product; normalize them for cosine),
    chosen by :func:`choose_index` unless ``plan`` is given, its search parameter tuned."""
    x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"build_index: embeddings of shape {x.shape} must be 2-D and finite")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"build_index: target_recall={target_recall} is not in (0, 1]")
    plan = plan or choose_index(len(x), x.shape[1], exact_threshold=exact_threshold,
                                memory_budget=memory_budget, hnsw_max_n=hnsw_max_n)
    start = time.perf_counter()
    params: Dict[str, Any] = {"kind": plan.kind, "factory": plan.factory, "n": plan.n,
                              "dim": plan.dim, "reason": plan.reason,
                              "estimated_bytes": plan.estimated_bytes, "faiss": faiss.__version__}
    if plan.kind == "exact":
        return SearchIndex(plan, {**params, "search": "exact"}, base=x)
    index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter, ivf.cp.seed = _KMEANS_ITERATIONS, seed
        n_train = min(len(x), _TRAIN_PER_CENTROID * ivf.nlist)  # faiss asks 39 to 256 each
        pick = np.random.default_rng(seed).choice(len(x), size=n_train, replace=False)
        index.train(x[np.sort(pick)])
    index.add(x)
    params["build_seconds"] = round(time.perf_counter() - start, 3)
    params.update(_tune(index, x, plan, target_recall, seed))
    return SearchIndex(plan, params, index=index)


# ------------------------------------------------------------------------------------------------
# Once per array, once per feature cache entry
# ------------------------------------------------------------------------------------------------
_MEMO: Dict[int, Tuple[Any, SearchIndex]] = {}


def index_for(embeddings: np.ndarray, **options: Any) -> SearchIndex:
    """The index of this array, built on first use and kept while the array lives (the
    explorer's galleries query one array many times); ``options`` go to :func:`build_index`."""
    key = id(embeddings)
    hit = _MEMO.get(key)
    if hit is not None and hit[0]() is embeddings and hit[1].params.get("options") == options:
        return hit[1]
    built = build_index(embeddings, **options)
    built.params["options"] = options
    try:
        ref = weakref.ref(embeddings, lambda _r, k=key, memo=_MEMO: memo.pop(k, None))
    except TypeError:  # not weak-referenceable (a list): not kept
        return built
    _MEMO[key] = (ref, built)
    return built


def _signature(options: Dict[str, Any]) -> str:
    text = json.dumps({"format": _FORMAT, **options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def index_for_cache(cache: Any, key: str, *, normalize: bool = True, array: str = "embeddings",
                    **options: Any) -> SearchIndex:
    """The index of a :class:`~unirepclip.features.FeatureCache` entry's ``array`` (L2-normalized
    first when ``normalize``: cosine), read from beside the entry or built and stored there."""
    data_path, meta_path = cache.paths(key)
    if not meta_path.is_file():
        raise KeyError(f"feature cache {cache.root}: no entry {key}")
    payload = json.loads(meta_path.read_text(encoding="utf-8")).get("payload_sha256")
    stem = cache.root / f"{key}.{_signature({'array': array, 'normalize': normalize, **options})}"
    index_path, params_path = Path(f"{stem}.faiss"), Path(f"{stem}.faiss-params")
    stored = _read_stored(index_path, params_path, payload)
    if stored is not None:
        return stored
    loaded = cache.load(key)
    if loaded is None:
        raise KeyError(f"feature cache {cache.root}: entry {key} could not be read")
    x = np.asarray(loaded[0][array], dtype=np.float32)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    built = build_index(x, **options)
    built.params.update(payload_sha256=payload, array=array, normalize=normalize)
    if built.kind == "exact":  # nothing to store: the rows are the index
        return built
    _write_atomic(index_path, lambda p: faiss.write_index(built.index, p))
    _write_atomic(params_path, lambda p: Path(p).write_text(
        json.dumps({"plan": dataclasses.asdict(built.plan), **built.params}, indent=1,
                   default=str), encoding="utf-8"))
    return built


def _read_stored(index_path: Path, params_path: Path, payload: Optional[str]
                 ) -> Optional[SearchIndex]:
    """The stored index if its parameters name this payload, else None (then it is rebuilt)."""
    if not params_path.is_file():
        return None
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
        plan = IndexPlan(**params.pop("plan"))
    except (ValueError, TypeError, KeyError):
        return None
    if params.get("payload_sha256") != payload or not index_path.is_file():
        return None
    index = faiss.read_index(str(index_path))
    if index.ntotal != plan.n:
        return None
    _set_search(index, _parse_setting(params["search"]))
    return SearchIndex(plan, params, index=index)
