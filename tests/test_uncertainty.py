"""Intervals and paired tests of unirepclip.eval.uncertainty against independent truth: coverage
by simulation on known binomials, the exact binomial sums of hand-built McNemar tables, SciPy's
own Wilson interval, scikit-learn's balanced accuracy, and reruns with the same seed."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from sklearn.metrics import balanced_accuracy_score

from unirepclip.eval import uncertainty as u

GRID = [(n, p) for n in (50, 1000) for p in (0.5, 0.9, 0.995)]


@pytest.mark.parametrize("n,p", GRID)
def test_wilson_covers_95_percent_of_known_binomials(n, p):
    ks = np.random.default_rng(2026).binomial(n, p, size=400)  # 400 draws, seeded
    lo, hi = u.wilson_interval(ks, n)
    simulated = np.mean((lo <= p) & (p <= hi))
    assert abs(simulated - 0.95) <= 0.03, simulated
    # and the exact coverage: the binomial mass of every count whose interval holds p
    k = np.arange(n + 1)
    lo, hi = u.wilson_interval(k, n)
    exact = binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()
    assert abs(exact - 0.95) <= 0.03, exact


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (45, 50), (50, 50), (995, 1000), (1, 1)])
def test_proportion_interval_is_scipys_wilson(k, n):
    correct = np.r_[np.ones(k, bool), np.zeros(n - k, bool)]
    got = u.proportion_interval(correct)
    want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (got.estimate, got.n, got.method) == (k / n, n, "wilson")
    assert got.low == pytest.approx(want.low, abs=1e-12)
    assert got.high == pytest.approx(want.high, abs=1e-12)


def _table(a_only, b_only, both=5, neither=3):
    """Per-item correctness of A and B with the given discordant counts."""
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


@pytest.mark.parametrize("a_only,b_only,p_hand", [
    (1, 9, 2 * (1 + 10) / 2 ** 10),             # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    (9, 1, 2 * (1 + 10) / 2 ** 10),
    (3, 5, 2 * (1 + 8 + 28 + 56) / 2 ** 8),     # 2 * P(X <= 3), X ~ Bin(8, 1/2)
    (0, 6, 2 / 2 ** 6),
    (2, 2, 1.0),                                # symmetric: the two tails overlap, p = 1
    (0, 0, 1.0),                                # no discordant item
])
def test_mcnemar_exact_against_hand_computed_tables(a_only, b_only, p_hand):
    a, b = _table(a_only, b_only)
    t = u.paired_accuracy_test(a, b, names=("ours", "theirs"))
    assert t.p_value == pytest.approx(p_hand, rel=1e-12)
    assert t.test == "mcnemar-exact"
    assert t.details == {"a_only": a_only, "b_only": b_only, "n": a.size}
    assert t.difference.estimate == pytest.approx((a_only - b_only) / a.size)
    assert t.difference.low <= t.difference.estimate <= t.difference.high
    if p_hand >= 0.05:
        assert t.verdict.startswith("not distinguishable")
    else:
        assert t.verdict.startswith("theirs higher than ours" if b_only > a_only
                                    else "ours higher than theirs")


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_mean_per_class_recall_is_balanced_accuracy_along_any_axis():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=(5, 200))
    p = np.where(rng.random((5, 200)) < 0.6, y, rng.integers(0, 7, size=(5, 200)))
    want = [balanced_accuracy_score(y[i], p[i]) for i in range(5)]
    np.testing.assert_allclose(u.mean_per_class_recall(y, p, axis=-1), want, rtol=1e-12)
    np.testing.assert_allclose(u.mean_per_class_recall(y.T, p.T, axis=0), want, rtol=1e-12)
    # a class absent from one row (as in a resample) is left out of that row's mean, not a 0
    y[0, y[0] == 6] = 5
    assert u.mean_per_class_recall(y, p)[0] == pytest.approx(balanced_accuracy_score(y[0], p[0]))


def _labelled(n, p, classes, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    wrong = (y + 1 + rng.integers(0, classes - 1, n)) % classes
    return y, np.where(rng.random(n) < p, y, wrong)


def test_reruns_with_the_same_seed_are_identical():
    y, p = _labelled(300, 0.8, 5, 1)
    _, q = _labelled(300, 0.75, 5, 2)
    first = u.mean_per_class_recall_interval(y, p, seed=7)
    assert u.mean_per_class_recall_interval(y, p, seed=7) == first
    assert u.mean_per_class_recall_interval(y, p, seed=8) != first  # the seed is used
    t = u.paired_mean_per_class_recall_test(y, p, q, seed=3)
    assert u.paired_mean_per_class_recall_test(y, p, q, seed=3) == t
    r = u.paired_recall_test(p == y, q == y, seed=3)
    assert u.paired_recall_test(p == y, q == y, seed=3) == r


def test_paired_bootstrap_tells_a_real_difference_from_none():
    y, p = _labelled(1000, 0.9, 10, 1)
    _, q = _labelled(1000, 0.7, 10, 2)
    far = u.paired_mean_per_class_recall_test(y, p, q, names=("p", "q"))
    assert far.p_value < 0.01 and far.verdict.startswith("p higher than q")
    assert far.difference.low > 0
    same = u.paired_mean_per_class_recall_test(y, p, p)
    assert same.p_value == 1.0 and same.verdict.startswith("not distinguishable")
    assert (same.difference.low, same.difference.high) == (0.0, 0.0)
    # two draws of the same accuracy: the p-value is large, the interval holds 0
    _, p2 = _labelled(1000, 0.9, 10, 3)
    near = u.paired_recall_test(p == y, p2 == y)
    assert near.p_value > 0.05 and near.difference.contains(0.0)
    assert near.verdict.startswith("not distinguishable")


def test_bca_up_to_its_item_limit_then_the_percentile_interval():
    y, p = _labelled(200, 0.8, 5, 0)
    assert u.mean_per_class_recall_interval(y, p, n_resamples=200).method == "bootstrap-bca"
    y, p = _labelled(u.BCA_MAX_ITEMS + 1, 0.8, 5, 0)
    big = u.mean_per_class_recall_interval(y, p, n_resamples=200)
    assert big.method == "bootstrap-percentile" and big.low < big.estimate < big.high


def test_all_correct_gives_a_degenerate_interval_said_so():
    y = np.arange(100) % 4
    iv = u.mean_per_class_recall_interval(y, y)
    assert (iv.estimate, iv.low, iv.high, iv.method) == (1.0, 1.0, 1.0, "degenerate")


def test_all_correct_beyond_the_bca_limit_is_degenerate_too():
    # the percentile interval of a constant distribution is a point: it is said so, not claimed
    iv = u.bootstrap_interval(np.mean, np.ones(u.BCA_MAX_ITEMS + 1), n_resamples=200)
    assert (iv.estimate, iv.low, iv.high, iv.method) == (1.0, 1.0, 1.0, "degenerate")


def test_undefined_bca_on_a_spread_distribution_falls_back_to_the_percentile_interval():
    # the max of 8 zeros and 2 ones: every jackknife value is 1 (BCa's acceleration is 0/0),
    # yet a resample misses both ones with probability 0.8**10 = 0.107: not a point
    x = np.r_[np.zeros(8), np.ones(2)]
    iv = u.bootstrap_interval(np.max, x, n_resamples=2000)
    assert iv.method == "bootstrap-percentile (fallback)"
    assert (iv.estimate, iv.low, iv.high, iv.n_undefined) == (1.0, 0.0, 1.0, 0)


def _ratio(num, den, axis=-1):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(num, axis=axis) / np.sum(den, axis=axis)


def test_undefined_resamples_are_counted_and_refused_when_not_negligible():
    # a ratio whose denominator is 0 in a resample of only the 15 zero-denominator items:
    # probability 0.75**20 = 0.0032, about 6 of 2000 resamples
    den = np.r_[np.ones(5), np.zeros(15)]
    num = np.r_[np.array([1, 0, 1, 1, 0.0]), np.zeros(15)]
    iv = u.bootstrap_interval(_ratio, num, den, n_resamples=2000)
    assert 0 < iv.n_undefined < 20 and iv.method == "bootstrap-percentile (fallback)"
    assert 0 <= iv.low < iv.estimate < iv.high <= 1
    # 0.9**10 = 0.35 of the resamples are undefined: refused, the count named
    den, num = np.r_[1.0, np.zeros(9)], np.r_[1.0, np.zeros(9)]
    with pytest.raises(ValueError, match=r"undefined \(NaN\) in \d+ of 2000 resamples"):
        u.bootstrap_interval(_ratio, num, den, n_resamples=2000)
    # an undefined estimate: the undefined interval, which excludes and contains nothing
    nothing = u.bootstrap_interval(_ratio, np.zeros(5), np.zeros(5))
    assert nothing.method == "undefined" and not nothing.defined
    assert not nothing.excludes(0.0) and not nothing.contains(0.0)


def test_an_error_inside_the_statistic_runs_the_bootstrap_once():
    calls = []

    def broken(x, axis=-1):
        calls.append(np.ndim(x))
        if np.ndim(x) > 1:
            raise TypeError("the statistic's own bug")
        return np.mean(x, axis=axis)

    with pytest.raises(TypeError, match="own bug"):
        u.bootstrap_interval(broken, np.arange(10.0), n_resamples=200)
    assert sum(d > 1 for d in calls) == 1


def test_consistent_with_published():
    iv = u.proportion_interval(np.r_[np.ones(757, bool), np.zeros(243, bool)])  # 0.757
    assert u.consistent_with_published(iv, 0.757)["consistent"]
    out = u.consistent_with_published(iv, 0.80)
    assert not out["consistent"] and out["verdict"].startswith("not consistent: published 0.8")
    edge = iv.high + 0.0004
    assert not u.consistent_with_published(iv, edge)["consistent"]
    assert u.consistent_with_published(iv, edge, rounding=0.0005)["consistent"]
    assert not u.consistent_with_published(iv, iv.low - 0.0006, rounding=0.0005)["consistent"]
    with pytest.raises(ValueError, match="published=75.7 is not a fraction"):
        u.consistent_with_published(iv, 75.7)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="correct_a has 3 items, correct_b 2"):
        u.paired_accuracy_test([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="predictions has 2 items, the labels 3"):
        u.mean_per_class_recall_interval([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="confidence=1.5"):
        u.proportion_interval([1, 0], confidence=1.5)
    with pytest.raises(ValueError, match="correct: per-item outcomes must be booleans"):
        u.proportion_interval([0.3, 1])


@pytest.mark.slow
@pytest.mark.parametrize("n,p", [(50, 0.5), (50, 0.9), (1000, 0.5), (1000, 0.9), (1000, 0.995)])
def test_bootstrap_bca_covers_mean_per_class_recall(n, p):
    """Every class has recall p, so the mean per-class recall is p; 400 labelled samples. (At
    n = 50 and p = 0.995, 78% of samples are all correct and no resampling interval can cover:
    a plain proportion there takes Wilson's, and a degenerate interval says so.)"""
    covered = 0
    for draw in range(400):
        y, pred = _labelled(n, p, 10 if n >= 1000 else 5, 10_000 + draw)
        iv = u.mean_per_class_recall_interval(y, pred, seed=draw, n_resamples=1000)
        covered += iv.contains(p)
    assert abs(covered / 400 - 0.95) <= 0.03, covered / 400


@pytest.mark.slow
def test_paired_tests_reject_a_true_null_about_5_percent_of_the_time():
    """Two settings of the same accuracy with independent errors, 300 draws of 300 items."""
    rejected = np.zeros(3)
    for d in range(300):
        rng = np.random.default_rng(d)
        a, b = rng.random(300) < 0.8, rng.random(300) < 0.8
        y, p = _labelled(300, 0.8, 5, 2 * d)
        _, q = _labelled(300, 0.8, 5, 2 * d + 1)
        tests = (u.paired_recall_test(a, b, seed=d, n_resamples=1000),
                 u.paired_accuracy_test(a, b, seed=d, n_resamples=1000),
                 u.paired_mean_per_class_recall_test(y, p, q, seed=d, n_resamples=1000))
        rejected += [t.p_value < 0.05 for t in tests]
    rate = rejected / 300
    assert np.all((0.015 <= rate) & (rate <= 0.085)), rate


def _retrieval(n_images, p_image, p_text, seed, captions=5):
    """Image hits ~ Bernoulli(p_image); an image's captions all hit or all miss together
    (Bernoulli(p_text) per image): captions of one image are not independent items."""
    rng = np.random.default_rng(seed)
    image_hits = rng.random(n_images) < p_image
    t2i = np.repeat(np.arange(n_images), captions)
    text_hits = (rng.random(n_images) < p_text)[t2i]
    return image_hits, text_hits, t2i


def test_two_way_recall_by_hand_and_its_interval_resamples_images():
    iv = u.retrieval_recall_interval([1, 0, 1], [1, 1, 0, 0, 1], [0, 0, 1, 1, 2])
    assert iv.estimate == pytest.approx(0.5 * (2 / 3 + 3 / 5))
    ih, th, t2i = _retrieval(300, 0.7, 0.6, 0)
    iv = u.retrieval_recall_interval(ih, th, t2i, seed=1)
    # brute force: resample images with their captions, 2000 times, percentile interval
    rng = np.random.default_rng(5)
    stats = []
    for _ in range(2000):
        pick = rng.integers(0, 300, 300)
        stats.append(0.5 * (ih[pick].mean() + th.reshape(300, 5)[pick].mean()))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=0.01) and iv.high == pytest.approx(hi, abs=0.01)
    # the width is the clustered one (0.078 here); captions resampled as 1500 independent items
    # would give 0.060
    assert iv.high - iv.low == pytest.approx(hi - lo, abs=0.006)


def test_paired_retrieval_recall_test():
    ih, th, t2i = _retrieval(400, 0.7, 0.6, 0)
    same = u.paired_retrieval_recall_test(ih, th, ih, th, t2i)
    assert same.p_value == 1.0 and same.verdict.startswith("not distinguishable")
    ih2, th2, _ = _retrieval(400, 0.9, 0.9, 1)
    far = u.paired_retrieval_recall_test(ih2, th2, ih, th, t2i, names=("new", "old"))
    assert far.p_value < 0.01 and far.verdict.startswith("new higher than old")
    with pytest.raises(ValueError, match="text_hits_a has 3 items"):
        u.paired_retrieval_recall_test([1, 0], [1, 0, 1], [1, 0], [1, 0, 1, 1], [0, 0, 1, 1])


@pytest.mark.slow
def test_bootstrap_covers_the_two_way_recall():
    covered = sum(u.retrieval_recall_interval(*_retrieval(300, 0.7, 0.6, 500 + d), seed=d,
                                              n_resamples=1000).contains(0.65)
                  for d in range(400))
    assert abs(covered / 400 - 0.95) <= 0.03, covered / 400


def test_uncertainty_imports_neither_torch_nor_open_clip():
    import subprocess
    import sys

    code = ("import sys, unirepclip.eval.uncertainty; "
            "print('torch' in sys.modules, 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
