"""features/search_index.py: the choice of index (hand-computed rules), exact search's tie rule,
every approximate kind's answers against exact ones on small clustered data (thresholds lowered
through parameters), the index built once per array and once per feature cache entry, and
retrieval's approximate option (eval/retrieval.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from unirepclip.eval import retrieval
from unirepclip.features import search_index as si


def _clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0, noise: float = 0.5,
               draw: int = 0):
    """``n`` normalized rows of the mixture ``seed``; another ``draw``: other rows of it."""
    centres = np.random.default_rng(seed).standard_normal((clusters, dim))
    rng = np.random.default_rng((seed, draw))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Independent truth: a full stable descending sort of every score row."""
    return np.argsort(-(q.astype(np.float64) @ x.T.astype(np.float64)), axis=1,
                      kind="stable")[:, :k]


# ---- the choice ---------------------------------------------------------------------------------
def test_choice_follows_size_and_memory():
    n, d = 100_000, 768
    assert si.choose_index(50_000, d).kind == "exact"                 # up to the threshold
    assert si.choose_index(50_001, d, exact_threshold=50_001).kind == "exact"
    # M = floor((budget / 4n - d) / 2): a budget of 4n(d + 40) gives M = 20
    plan = si.choose_index(n, d, memory_budget=4 * n * (d + 40))
    assert (plan.kind, plan.factory) == ("hnsw", "HNSW20,Flat")
    assert si.choose_index(n, d, memory_budget=10**12).factory == "HNSW32,Flat"  # capped at 32
    # 10M rows, 4 sqrt(1e7) = 12649 -> 16384 centroids (4 x 16384 x 768 bytes = 1.26 floats a row);
    # 15.3 floats a row over the vectors: M = 7 < 8, no HNSW; the IVF with the flat vectors
    # (48-byte codes + 8-byte ids = 14 floats, + 1.26) fits; 768 / 8 = 96 fast-scan codes
    plan = si.choose_index(10**7, d, memory_budget=int(4e7 * (d + 15.3)))
    assert (plan.kind, plan.factory) == ("ivf_flat", "IVF16384,PQ96x4fs,RFlat")
    assert si.choose_index(10**7, d, memory_budget=int(4e7 * (d + 15.2))).kind == "ivf_pq"
    assert si.choose_index(n, 100, exact_threshold=0, memory_budget=4 * n * 110).factory == \
        "IVF1024,PQ10x4fs,RFlat"                                     # 10 divides 100, even
    assert si.choose_index(n, 7, exact_threshold=0, memory_budget=4 * n * 12).factory == \
        "IVF1024,Flat"                                              # no even divisor: flat lists
    # past hnsw_max_n the IVF is built even where HNSW would fit
    assert si.choose_index(n, d, memory_budget=10**12, hnsw_max_n=n - 1).kind == "ivf_flat"
    # 1M: 4 sqrt(1e6) = 4000 -> 4096 centroids; a budget of 40 bytes a vector: PQ32 (32 + 8)
    plan = si.choose_index(10**6, d, memory_budget=40 * 10**6 + 4 * 4096 * d)
    assert (plan.kind, plan.factory) == ("ivf_pq", "OPQ32_224,IVF4096,PQ32np")
    assert si.nb_clusters(300) == 64                                  # 4 sqrt(300) = 69.3
    with pytest.raises(ValueError, match="n=0"):
        si.choose_index(0, d)


# ---- exact ----------------------------------------------------------------------------------------
def test_exact_top_k_breaks_ties_to_the_lower_index():
    base = np.array([[0, 1], [1, 0], [1, 0], [0.5, 0], [1, 0]], dtype=np.float32)
    scores, ids = si.exact_top_k(base, np.array([[1, 0]], dtype=np.float32), 3)
    assert ids.tolist() == [[1, 2, 4]] and scores.tolist() == [[1, 1, 1]]
    index = si.build_index(base, exact_threshold=10)
    assert index.kind == "exact" and index.search([1, 0], 9)[1].tolist() == [[1, 2, 4, 3, 0]]


def test_exact_index_equals_a_full_sort():
    x, q = _clustered(500, seed=1), _clustered(20, seed=1, draw=1)
    assert np.array_equal(si.build_index(x).search(q, 10)[1], _brute(x, q, 10))


# ---- approximate against exact --------------------------------------------------------------------
@pytest.mark.parametrize("kind,factory,floor", [
    ("hnsw", "HNSW16,Flat", 0.95), ("ivf_flat", "IVF64,Flat", 0.95),
    ("ivf_flat", "IVF64,PQ4x4fs,RFlat", 0.95),
    ("ivf_pq", "IVF64,PQ8np", 0.6)])
def test_approximate_answers_against_exact(kind, factory, floor):
    x, q = _clustered(4000, seed=3), _clustered(200, seed=3, draw=1)   # queries apart from the rows
    plan = si.IndexPlan(kind, factory, len(x), x.shape[1], 0, "test")
    index = si.build_index(x, plan=plan, target_recall=0.97)
    scores, ids = index.search(q, 10)
    truth = _brute(x, q, 10)
    recall = si.recall_at_k(ids, truth)
    assert recall >= floor, (kind, recall, index.params)
    assert index.params["search"].split("=")[0] in ("efSearch", "nprobe")
    assert (ids >= 0).all() and np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    if kind != "ivf_pq":   # flat codes: the scores are the true inner products
        np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, ids, 1), atol=1e-5)


def test_default_choice_above_the_threshold_reaches_the_target():
    x, q = _clustered(3000, seed=5), _clustered(100, seed=5, draw=1)
    index = si.build_index(x, exact_threshold=1000)
    assert index.kind == "hnsw" and index.params["tuned_recall"] >= 0.97
    assert si.recall_at_k(index.search(q, 10)[1], _brute(x, q, 10)) >= 0.95
    assert index.search(q[0], 50_000)[1].shape == (1, 3000)          # k capped at n


def test_recall_at_k_counts_the_share_found():
    assert si.recall_at_k([[1, 2, 3], [4, 5, 6]], [[3, 2, 9], [7, 8, 9]]) == pytest.approx(2 / 6)


def test_search_refuses_a_wrong_query():
    index = si.build_index(_clustered(50))
    with pytest.raises(ValueError, match="dim 32"):
        index.search(np.zeros(5), 3)
    with pytest.raises(ValueError, match="k=0"):
        index.search(np.zeros(32), 0)


# ---- once per array, once per cache entry ----------------------------------------------------------
def test_index_for_builds_once_per_array(monkeypatch):
    x = _clustered(300)
    first = si.index_for(x, exact_threshold=100)
    assert si.index_for(x, exact_threshold=100) is first
    assert si.index_for(x, exact_threshold=1000) is not first            # other options
    assert si.index_for(x.copy(), exact_threshold=100) is not first      # another array


def test_index_for_cache_is_stored_beside_the_entry_and_follows_it(tmp_path, monkeypatch):
    from unirepclip.features import FeatureCache

    cache = FeatureCache(tmp_path)
    x = _clustered(600, seed=7) * 3.0                         # the cache stores unnormalized rows
    cache.save("k1", {"embeddings": x}, {})
    built = si.index_for_cache(cache, "k1", exact_threshold=100)
    assert built.kind == "hnsw" and cache.keys() == ["k1"]      # the index is not an entry
    stored = sorted(p.name for p in tmp_path.iterdir() if "faiss" in p.name)
    assert len(stored) == 2 and stored[0].startswith("k1.")  # the index, its parameters
    params = json.loads((tmp_path / stored[1]).read_text())
    assert params["payload_sha256"] == json.loads((tmp_path / "k1.json").read_text())[
        "payload_sha256"] and params["normalize"] is True

    monkeypatch.setattr(si, "build_index", lambda *a, **k: pytest.fail("rebuilt"))
    again = si.index_for_cache(cache, "k1", exact_threshold=100)
    q = _clustered(30, seed=7, draw=1)
    assert np.array_equal(again.search(q, 5)[1], built.search(q, 5)[1])
    assert again.params["search"] == built.params["search"]
    monkeypatch.undo()

    # an IVF with fast-scan codes and its refine stage comes back with its tuned setting too
    ivf = si.index_for_cache(cache, "k1", exact_threshold=100, hnsw_max_n=100)
    assert ivf.kind == "ivf_flat" and "k_factor=" in ivf.params["search"]
    monkeypatch.setattr(si, "build_index", lambda *a, **k: pytest.fail("rebuilt"))
    ivf_again = si.index_for_cache(cache, "k1", exact_threshold=100, hnsw_max_n=100)
    assert np.array_equal(ivf_again.search(q, 5)[1], ivf.search(q, 5)[1])
    assert faiss_k_factor(ivf_again) == faiss_k_factor(ivf)
    monkeypatch.undo()

    cache.save("k1", {"embeddings": x[::-1].copy()}, {})       # the entry changed: a new index
    changed = si.index_for_cache(cache, "k1", exact_threshold=100)
    xn = x[::-1] / np.linalg.norm(x[::-1], axis=1, keepdims=True)
    assert si.recall_at_k(changed.search(q, 10)[1], _brute(xn, q, 10)) >= 0.95
    with pytest.raises(KeyError, match="no entry nope"):
        si.index_for_cache(cache, "nope")


def faiss_k_factor(index: si.SearchIndex) -> int:
    import faiss
    return int(faiss.downcast_index(index.index).k_factor)


# ---- retrieval: exact unless asked -----------------------------------------------------------------
def test_retrieval_approximate_matches_exact_and_says_so():
    img = _clustered(1500, seed=9, noise=0.8)
    rng = np.random.default_rng(10)
    t2i = np.repeat(np.arange(1500), 2)
    txt = img[t2i] + 0.08 * rng.standard_normal((3000, img.shape[1])).astype(np.float32)
    exact = retrieval.evaluate(img, txt, t2i)
    assert "search" not in exact
    approx = retrieval.evaluate(img, txt, t2i, search="approximate",
                                index_options={"exact_threshold": 500})
    assert approx["search"]["mode"] == "approximate"
    assert approx["search"]["images"]["kind"] == "hnsw"
    for side in ("image_to_text", "text_to_image"):
        for k in ("r1", "r5", "r10"):
            assert abs(approx[side][k] - exact[side][k]) <= 0.02, (side, k, approx, exact)
    # below the threshold the "approximate" ranking is exact search: the same figures
    small = retrieval.evaluate(img, txt, t2i, search="approximate",
                               index_options={"exact_threshold": 10_000})
    assert {s: small[s] for s in exact} == exact
    with pytest.raises(ValueError, match="search='fast'"):
        retrieval.evaluate(img, txt, t2i, search="fast")


def test_retrieval_approximate_merges_identical_texts():
    img = _clustered(600, seed=11, noise=0.8)
    t2i = np.arange(600)
    strings = [f"caption {i // 2}" for i in range(600)]   # pairs of images share a caption
    txt = img.copy()
    txt[1::2] = txt[0::2]                                   # equal strings, equal embeddings
    exact = retrieval.evaluate(img, txt, t2i, texts=strings)
    approx = retrieval.evaluate(img, txt, t2i, texts=strings, search="approximate",
                                index_options={"exact_threshold": 100})
    assert approx["text_to_image"]["r10"] == exact["text_to_image"]["r10"]
    assert abs(approx["image_to_text"]["r1"] - exact["image_to_text"]["r1"]) <= 0.02


# ---- the explorer's search panel (analysis/explore/search.py) -------------------------------------
def test_explorer_search_uses_the_index_above_the_threshold(monkeypatch):
    from unirepclip.analysis import explore as ex

    x, q = _clustered(3000, seed=12), _clustered(5, seed=12, draw=1)
    monkeypatch.setattr(si, "EXACT_THRESHOLD", 1000)
    builds = []
    real = si.build_index
    monkeypatch.setattr(si, "build_index", lambda *a, **k: builds.append(1) or real(*a, **k))
    names = [f"img{i}" for i in range(len(x))]
    found = [[h["index"] for h in ex.search_images(row, x, 10, names)] for row in q]
    assert len(builds) == 1                                    # built once for the gallery
    assert si.recall_at_k(np.array(found), _brute(x, q, 10)) >= 0.95
    hit = ex.search_images(q[0], x, 3, names)[0]
    assert hit["rank"] == 1 and hit["name"] == names[hit["index"]]
    assert hit["score"] == pytest.approx(float(q[0] @ x[hit["index"]]), abs=1e-5)
    small = ex.search_images(q[0], x[:1000], 4)                # at the threshold: exact, as before
    assert [h["index"] for h in small] == _brute(x[:1000], q[:1], 4)[0].tolist() and not builds[1:]
