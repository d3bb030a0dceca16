"""Stable probe selection (issue 25): the one-standard-error rule by hand, the coarse-to-fine
search refining around the rule's choice (against the full grid), the selected C unchanged by
the number of threads and by a permutation of the training rows (on scikit-learn's digits, a
real problem where CLIP's rule meets a plateau of large C), and fits that stop at max_iter
resumed until they converge or are named."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from unirepclip.eval import probes as probe
from unirepclip.eval.probes import LinearProbe


def test_select_c_by_hand():
    hist = [(0.1, 0.80), (1.0, 0.90), (10.0, 0.91), (100.0, 0.91)]
    # best 0.91; one SE on 100 items: sqrt(0.91 * 0.09 / 100) = 0.0286 -> threshold 0.8814
    assert probe.select_C(hist, "clip") == 10.0  # the best, the smaller C of equals
    assert probe.select_C(hist, "one_se", 100) == 1.0
    # on 10,000 items one SE is 0.0029: 0.90 is no longer within noise of 0.91
    assert probe.select_C(hist, "one_se", 10_000) == 10.0
    # a perfect score has no binomial spread: the smallest C that reaches it
    assert probe.select_C([(1.0, 0.5), (2.0, 1.0), (3.0, 1.0)], "one_se", 50) == 2.0


def test_select_c_bad_input_is_named():
    with pytest.raises(ValueError, match="selection='best'"):
        probe.select_C([(1.0, 0.5)], "best")
    with pytest.raises(ValueError, match="needs n_val"):
        probe.select_C([(1.0, 0.5)], "one_se")
    with pytest.raises(ValueError, match="selection must be one of"):
        LinearProbe(selection="argmax").fit(np.eye(4), [0, 1, 0, 1])


def test_the_search_refines_around_the_one_se_choice_as_the_grid_would():
    """On validation curves that rise with log C to a plateau (monotone: the best is the
    plateau, which the coarse point 1e6 reaches), the one-SE rule's "smallest C within one SE of
    the best" is a bisection, and the 15-point search finds the full grid's answer exactly."""
    grid = probe.sweep_grid()
    rng = np.random.default_rng(0)
    for _ in range(60):
        m, rate, top = rng.uniform(-5, 5), rng.uniform(0.5, 4), rng.uniform(0.6, 0.995)
        n_val = int(rng.integers(50, 5000))
        f = lambda C: top / (1 + math.exp(-rate * (math.log10(C) - m)))  # noqa: E731
        select = lambda h: probe.select_C(h, "one_se", n_val)  # noqa: E731
        chosen, hist = probe.clip_sweep(f, select=select)
        assert chosen == select(hist) and len(hist) <= 15
        assert chosen == probe.select_C([(c, f(c)) for c in grid], "one_se", n_val)
        # CLIP's rule on the same curve: the top of the plateau, never a smaller C
        assert probe.clip_sweep(f)[0] >= chosen


def _digits():
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order] / 16.0, y[order]
    return (X[:600], y[:600]), (X[600:960], y[600:960])


def _one_se_probe(backend, X, y, Xva, yva, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)  # every fit converges
            return LinearProbe(backend=backend, selection="one_se").fit(X, y, Xva, yva)
    finally:
        torch.set_num_threads(before)


def _check_the_rule(p, n_val):
    assert p.not_converged_ == [] and p.clip_C_ >= p.best_C_
    # the rule as documented on the sweep it saw: the smallest C within one SE of the best
    best = max(s for _, s in p.sweep_)
    se = math.sqrt(best * (1 - best) / n_val)
    assert p.best_C_ == min(c for c, s in p.sweep_ if s >= best - se - 1e-12)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_one_se_choice_is_the_same_under_a_permutation_of_the_training_rows(backend):
    (Xtr, ytr), (Xva, yva) = _digits()
    perm = np.random.default_rng(1).permutation(len(ytr))
    a = _one_se_probe(backend, Xtr, ytr, Xva, yva, 1)
    b = _one_se_probe(backend, Xtr[perm], ytr[perm], Xva, yva, 1)
    assert a.best_C_ == b.best_C_, (a.sweep_, b.sweep_)
    _check_the_rule(a, len(yva))


@pytest.mark.slow  # two threads on a busy two-core machine: minutes for torch
@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_one_se_choice_is_the_same_with_1_and_2_threads(backend):
    (Xtr, ytr), (Xva, yva) = _digits()
    perm = np.random.default_rng(1).permutation(len(ytr))
    chosen = {(t, name): _one_se_probe(backend, Xtr[rows], ytr[rows], Xva, yva, t).best_C_
              for t in (1, 2) for name, rows in (("rows", slice(None)), ("permuted", perm))}
    assert len(set(chosen.values())) == 1, chosen


def test_a_fit_stopped_at_max_iter_is_resumed_until_it_converges():
    (Xtr, ytr), _ = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        once = LinearProbe(C=10.0, backend="sklearn", max_iter=1000, tol=1e-6).fit(Xtr, ytr)
        # the same fit in rounds of max_iter it cannot finish in one: resumed, not cut short
        rounds = LinearProbe(C=10.0, backend="sklearn", max_iter=once.n_iter_ // 3 + 1,
                             tol=1e-6).fit(Xtr, ytr)
    assert rounds.n_iter_ > rounds.max_iter and rounds.not_converged_ == []
    # both at the stationary point of the objective: the same predictions
    np.testing.assert_array_equal(once.predict(Xtr), rounds.predict(Xtr))
    np.testing.assert_allclose(once.predict_proba(Xtr), rounds.predict_proba(Xtr), atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_fits_that_never_converge_are_named_in_one_warning(backend):
    (Xtr, ytr), (Xva, yva) = _digits()
    with pytest.warns(ConvergenceWarning, match=r"sweep fits at C = .*the final fit") as rec:
        p = LinearProbe(backend=backend, max_iter=2, sweep=[1e-2, 1e4]).fit(Xtr, ytr, Xva, yva)
    assert len([w for w in rec if issubclass(w.category, ConvergenceWarning)]) == 1
    assert p.not_converged_[-1] == "final" and 1e4 in p.not_converged_
    assert p.n_iter_ == probe.MAX_ITER_ROUNDS * 2
