"""Search at scale: the index :mod:`unirepclip.features.search_index` chooses, against exact search.

For each size (``--sizes``, 100k and 1M by default) of 768-d L2-normalized embeddings drawn from
a mixture of ``--clusters`` (2,000) clusters, as real embeddings are (a shared direction, as
CLIP's cone; cluster sizes falling off as a power law; inside a cluster the points spread along
a few directions of its own, a low intrinsic dimension, plus isotropic noise), with ``--queries`` (1,000) queries drawn from the same mixture
but apart from the indexed rows, it prints:

* the plan (kind, FAISS factory, why), the build time (training, adding, tuning the search
  parameter) and the memory the index took (resident-set growth over the build);
* 10-recall@10 against exact search: the share of the true top 10 among the returned 10;
* query latency, exact and approximate, per query in one batch of all queries and one query at a
  time, and their ratios (the acceptance asks recall >= 0.95 and >= 20x at 1M on 2 cores).

Exact search is FAISS's flat inner product (BLAS), the fastest exact baseline here. Mind the
memory: 1M rows are 3 GB, and the flat baseline and the index hold a copy each (about 10 GB).

    python benchmarks/bench_search.py [--sizes 100000 1000000] [--threads 2] [--exact-threshold N]
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import faiss
import numpy as np

from unirepclip.features import search_index as si


def mixture(dim: int, clusters: int, seed: int, rank: int = 16) -> tuple:
    """(centres, local bases, weights) of the mixture of the module doc; :func:`draw` samples it."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim).astype(np.float32)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres += common / np.linalg.norm(common)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((clusters, rank, dim)).astype(np.float32) / np.sqrt(dim)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    return centres, bases, weights / weights.sum()


def draw(model: tuple, n: int, seed: int, chunk: int = 10_000, local: float = 0.8,
         noise: float = 0.3) -> np.ndarray:
    """``n`` normalized rows of the mixture ``model``: a centre, a spread of norm ~``local``
    inside that cluster's own ``rank``-dimensional subspace, isotropic noise of norm ~``noise``."""
    centres, bases, weights = model
    rng = np.random.default_rng(seed)
    dim, rank = centres.shape[1], bases.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lab = rng.choice(len(centres), size=b - a, p=weights)
        z = rng.standard_normal((b - a, rank), dtype=np.float32) * (local / np.sqrt(rank))
        out[a:b] = (centres[lab] + np.einsum("nr,nrd->nd", z, bases[lab])
                    + rng.standard_normal((b - a, dim), dtype=np.float32) * (noise / np.sqrt(dim)))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def per_query(search, queries: np.ndarray, singles: int) -> tuple:
    """(ms per query in one batch, ms per query one at a time over the first ``singles``)."""
    t0 = time.perf_counter()
    search(queries)
    batch = (time.perf_counter() - t0) / len(queries) * 1e3
    t0 = time.perf_counter()
    for q in queries[:singles]:
        search(q[None])
    return batch, (time.perf_counter() - t0) / singles * 1e3


def bench(n: int, args) -> None:
    model = mixture(args.dim, args.clusters, args.seed)
    x = draw(model, n, args.seed + 1)
    queries = draw(model, args.queries, args.seed + 2)  # apart from the indexed rows
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    exact = per_query(lambda q: flat.search(q, 10), queries, args.singles)
    _, truth = flat.search(queries, 10)
    del flat
    gc.collect()
    before, t0 = rss(), time.perf_counter()
    index = si.build_index(x, exact_threshold=args.exact_threshold, seed=args.seed)
    build, grown = time.perf_counter() - t0, rss() - before
    _, found = index.search(queries, 10)
    approx = per_query(lambda q: index.search(q, 10), queries, args.singles)
    p = index.params
    print(f"\n== n={n:,} x {args.dim}, {args.clusters} clusters, {len(queries)} held-out queries")
    print(f"index: {p['kind']} {p['factory']!r} ({p['reason']}); {p.get('search')}, "
          f"tuned recall {p.get('tuned_recall')}")
    print(f"build: {build:.1f} s; memory: {grown / 2**30:.2f} GiB resident growth "
          f"(estimated {p['estimated_bytes'] / 2**30:.2f} GiB)")
    print(f"10-recall@10 against exact: {si.recall_at_k(found, truth):.4f} (acceptance >= 0.95)")
    for name, e, a in (("batch", exact[0], approx[0]), ("single", exact[1], approx[1])):
        print(f"latency ({name}): exact {e:.3f} ms/query, approximate {a:.3f} ms/query, "
              f"{e / a:.1f}x faster (acceptance >= 20x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=100, help="queries timed one at a time")
    ap.add_argument("--threads", type=int, default=2, help="FAISS's OpenMP threads")
    ap.add_argument("--exact-threshold", type=int, default=si.EXACT_THRESHOLD)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    print(f"faiss {faiss.__version__}, {args.threads} threads, {os.cpu_count()} cpus")
    for n in args.sizes:
        bench(n, args)


if __name__ == "__main__":
    main()
