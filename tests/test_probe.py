"""The probe estimators (unirepclip.eval.probes): the sweep against analytic curves and brute
force, separable data, determinism, the two solvers against each other and against the
objective's optimality condition, the validation split fit draws itself, and scikit-learn's
estimator contract (parametrize_with_checks)."""
import math
import warnings

import numpy as np
import pytest
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from unirepclip.eval import probes as probe
from unirepclip.eval.probes import KNNProbe, LinearProbe


def _clusters(n, d, k, spread, seed):
    """k Gaussian clusters; small ``spread`` makes them linearly separable."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(k, d)) * 3.0
    y = np.arange(n) % k
    return centers[y] + spread * rng.normal(size=(n, d)), y


# --- scikit-learn's estimator contract --------------------------------------------------------

def _expected_failed_checks(estimator):
    # Nothing to declare: sparse and complex input are refused with validate_data's own errors,
    # which the checks accept as graceful failures; every other check passes.
    return {}


@parametrize_with_checks([LinearProbe(), LinearProbe(C=1.0), KNNProbe()],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # separable toy sets, large C
        check(estimator)


def test_unfitted_probes_raise_not_fitted_and_score_is_sklearns():
    X, y = _clusters(30, 4, 3, 0.5, seed=8)
    for est, method in ((LinearProbe(C=1.0), "predict"), (LinearProbe(C=1.0), "decision_function"),
                        (KNNProbe(), "votes"), (KNNProbe(), "predict")):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X)
    assert LinearProbe.score is ClassifierMixin.score and KNNProbe.score is ClassifierMixin.score
    p = LinearProbe(C=1.0).fit(X, y)
    w = np.zeros(30)
    w[:3] = 1.0  # the weighted score is the accuracy on the weighted rows only
    assert p.score(X, y, sample_weight=w) == np.mean(p.predict(X[:3]) == y[:3])


# --- the sweep -------------------------------------------------------------------------------

def _nearest_grid_exponent(m):
    units = np.arange(-48, 49)
    return units[np.argmin(np.abs(units / 8 - m))] / 8


@pytest.mark.parametrize("m", [1.3, 0.0, -5.9, 4.06, 6.0, 9.0, -12.0])
def test_sweep_finds_the_optimum_of_a_convex_curve(m):
    calls = []

    def score(C):
        calls.append(C)
        return -(math.log10(C) - m) ** 2  # peak at log10 C = m

    best, hist = probe.clip_sweep(score)
    assert math.log10(best) == pytest.approx(_nearest_grid_exponent(np.clip(m, -6, 6)), abs=1e-12)
    assert len(calls) == len(set(calls)) <= 15  # never the same C twice, 7 + 2 x 4 at most
    assert [c for c, _ in hist] == sorted(calls)
    assert all(s == score(c) for c, s in hist)


def test_sweep_hand_traced_path():
    # peak at 1.3: coarse best 1e2; then 1e1 vs 1e3 -> 1e1; 10^0.5, 10^1.5 -> 10^1.5;
    # 10^1.25, 10^1.75 -> 10^1.25; 10^1.125, 10^1.375 -> stays 10^1.25
    seen = []
    probe.clip_sweep(lambda C: seen.append(round(math.log10(C), 6)) or -(math.log10(C) - 1.3) ** 2)
    assert seen == [-6, -4, -2, 0, 2, 4, 6, 1, 3, 0.5, 1.5, 1.25, 1.75, 1.125, 1.375]


def test_sweep_agrees_with_the_full_grid_on_unimodal_curves():
    rng = np.random.default_rng(0)
    grid = probe.sweep_grid()
    assert len(grid) == 97 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e6)
    for _ in range(50):
        m, w = rng.uniform(-6, 6), rng.uniform(0.3, 5)
        f = lambda C: 1 / (1 + ((math.log10(C) - m) / w) ** 2)  # noqa: E731
        best, _ = probe.clip_sweep(f)
        assert best == grid[np.argmax([f(c) for c in grid])]


def test_sweep_plateau_goes_to_the_smaller_C():
    best, _ = probe.clip_sweep(lambda C: min(1.0, C))  # flat at the top from C = 1 on
    assert best == 1.0


# --- the linear probe ------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 4])
def test_separable_features_reach_100_percent(k):
    X, y = _clusters(120, 8, k, 0.2, seed=0)
    Xte, yte = _clusters(60, 8, k, 0.2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # huge C on separable data
        p = LinearProbe().fit(X[:80], y[:80], X[80:], y[80:])
    assert p.score(Xte, yte) == 1.0
    assert p.coef_.shape == ((1, 8) if k == 2 else (k, 8))
    vals = dict(p.sweep_)
    assert vals[p.best_C_] == max(vals.values())
    assert p.best_C_ == min(c for c, s in p.sweep_ if s == max(vals.values()))


def _brute_force(X, y, Xv, yv, Cs):
    """Validation accuracy of scikit-learn's own LogisticRegression at every C, and the argmax
    (equal scores to the smaller C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        accs = [(float(C), LogisticRegression(C=C, max_iter=1000, tol=1e-4, random_state=0)
                 .fit(X, y).score(Xv, yv)) for C in Cs]
    return max(accs, key=lambda t: (t[1], -t[0]))[0], accs


def test_noisy_problem_chooses_the_brute_force_C_an_intermediate_one():
    # 40-d clusters with heavy noise: C = 1e-6 underfits (a third right), large C overfits
    X, y = _clusters(200, 40, 3, 8.0, seed=2)
    tr, va = slice(0, 100), slice(100, 200)
    Cs = probe.sweep_grid()[::8]  # every decade
    best, accs = _brute_force(X[tr], y[tr], X[va], y[va], Cs)
    listed = LinearProbe(sweep=list(Cs), backend="sklearn").fit(X[tr], y[tr], X[va], y[va])
    assert listed.sweep_ == accs and listed.best_C_ == best
    # the known answer: an intermediate C, clearly better than either end of the range
    acc = dict(accs)
    assert 1e-5 < best < 1e-3 and acc[best] >= acc[Cs[0]] + 0.5 and acc[best] >= acc[Cs[-1]] + 0.1


# --- fit(X, y) draws its own validation split -------------------------------------------------

def test_fit_without_validation_sweeps_on_a_seeded_stratified_split():
    # unbalanced classes: a plain split would give the validation part other class shares
    X, y = _clusters(80, 6, 2, 3.0, seed=21)
    y = np.where(np.arange(80) < 64, 0, 1)
    tr, va = train_test_split(np.arange(80), test_size=16, random_state=3, stratify=y)
    tr, va = np.sort(tr), np.sort(va)
    assert np.bincount(y[va]).tolist() == [13, 3]
    p = LinearProbe(random_state=3, sweep=[1e-3, 1e-1, 10.0]).fit(X, y)
    q = LinearProbe(random_state=3, sweep=[1e-3, 1e-1, 10.0]).fit(X[tr], y[tr], X[va], y[va])
    assert p.sweep_ == q.sweep_ and p.best_C_ == q.best_C_
    # refit: the chosen C on all of X; refit=False: on the training part only
    full = LinearProbe(C=p.best_C_).fit(X, y)
    np.testing.assert_array_equal(p.coef_, full.coef_)
    kept = LinearProbe(random_state=3, sweep=[1e-3, 1e-1, 10.0], refit=False).fit(X, y)
    np.testing.assert_array_equal(kept.coef_, LinearProbe(C=p.best_C_).fit(X[tr], y[tr]).coef_)


def test_fit_without_validation_falls_back_to_a_plain_split_then_to_the_middle_C():
    # class 2 has one sample: no stratified split exists, a plain seeded one does
    X, y = _clusters(41, 5, 2, 2.0, seed=22)
    y = np.r_[y[:40], 2]
    for seed in range(20):  # a seed whose plain split puts the lone class-2 sample in val
        tr, va = train_test_split(np.arange(41), test_size=9, random_state=seed)
        if 40 in va:
            break
    # scikit-learn's own fits on that training part (which lacks class 2) score as the sweep did
    _, accs = _brute_force(X[tr], y[tr], X[va], y[va], [1e-2, 1.0])
    sk = LinearProbe(random_state=seed, sweep=[1e-2, 1.0], backend="sklearn").fit(X, y)
    assert sk.sweep_ == accs and sk.coef_.shape == (3, 5)
    th = LinearProbe(random_state=seed, sweep=[1e-2, 1.0], backend="torch").fit(X, y)
    assert th.sweep_ == accs
    # three samples leave fewer than two on a side: C is the middle of the range, with a warning
    with pytest.warns(UserWarning, match="3 samples are too few.*C=1"):
        tiny = LinearProbe().fit(X[:3], y[:3])
    assert tiny.best_C_ == 1.0 and tiny.sweep_ == []


def test_same_seed_same_numbers():
    X, y = _clusters(90, 6, 3, 2.5, seed=3)
    a = LinearProbe().fit(X[:60], y[:60], X[60:], y[60:])
    b = LinearProbe().fit(X[:60], y[:60], X[60:], y[60:])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.sweep_ == b.sweep_


def test_refit_policy():
    # refit=False: the final model is the train-only fit at the chosen C, whatever val holds
    X, yy = _clusters(40, 5, 2, 3.0, seed=4)
    a = LinearProbe(C=0.5, refit=False).fit(X[:20], yy[:20], X[20:], yy[20:])
    b = LinearProbe(C=0.5).fit(X[:20], yy[:20])
    c = LinearProbe(C=0.5).fit(X[:20], yy[:20], X[20:], yy[20:])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not np.allclose(a.coef_, c.coef_)


def _objective_gradient(p, X, y, C):
    """Gradient of C * sum(logloss) + 0.5 ||W||^2 (intercept unpenalized), from its definition."""
    Z = X @ p.coef_.T + p.intercept_
    if p.coef_.shape[0] == 1:
        R = (1 / (1 + np.exp(-Z[:, 0])) - y)[:, None]
    else:
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        R = P - np.eye(p.coef_.shape[0])[y]
    return C * R.T @ X + p.coef_, C * R.sum(0)


@pytest.mark.parametrize("k", [2, 4])
def test_backends_agree_and_solve_the_same_objective(k):
    X, y = _clusters(200, 10, k, 4.0, seed=5)
    Xte, _ = _clusters(100, 10, k, 4.0, seed=6)
    fits = {be: LinearProbe(C=0.3, backend=be, tol=1e-8).fit(X, y) for be in ("sklearn", "torch")}
    sk, th = fits["sklearn"], fits["torch"]
    assert sk.backend_ == "sklearn" and th.backend_ == "torch"
    np.testing.assert_array_equal(sk.predict(Xte), th.predict(Xte))
    np.testing.assert_allclose(sk.predict_proba(Xte), th.predict_proba(Xte), atol=1e-5, rtol=0)
    np.testing.assert_allclose(sk.coef_, th.coef_, atol=1e-5, rtol=0)
    for fitted in (sk, th):  # both sit at the stationary point of the documented objective
        gW, gb = _objective_gradient(fitted, X, y, 0.3)
        assert np.abs(gW).max() / (0.3 * len(X)) < 1e-6 and np.abs(gb).max() / (0.3 * len(X)) < 1e-6


def test_backends_agree_through_the_sweep():
    X, y = _clusters(150, 6, 3, 3.0, seed=7)
    a = LinearProbe(backend="sklearn", tol=1e-8).fit(X[:100], y[:100], X[100:], y[100:])
    b = LinearProbe(backend="torch", tol=1e-8).fit(X[:100], y[:100], X[100:], y[100:])
    assert a.sweep_ == b.sweep_ and a.best_C_ == b.best_C_
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)


def test_auto_backend_threshold():
    X, y = _clusters(30, 4, 3, 0.5, seed=8)
    assert LinearProbe(C=1.0).fit(X, y).backend_ == "sklearn"
    assert LinearProbe(C=1.0, size_threshold=30 * 4 * 3 - 1).fit(X, y).backend_ == "torch"
    assert LinearProbe(C=1.0, size_threshold=30 * 4 * 3).fit(X, y).backend_ == "sklearn"


def test_normalize_option_and_string_labels():
    X, y = _clusters(60, 5, 3, 1.0, seed=9)
    scale = np.random.default_rng(0).uniform(0.5, 4.0, size=(60, 1))
    names = np.array(["cat", "dog", "emu"])[y]
    a = LinearProbe(C=1.0, normalize=True).fit(X, names)
    b = LinearProbe(C=1.0, normalize=True).fit(X * scale, names)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)
    assert not np.allclose(LinearProbe(C=1.0).fit(X, names).coef_,
                           LinearProbe(C=1.0).fit(X * scale, names).coef_, atol=1e-3)
    assert set(a.predict(X)) <= {"cat", "dog", "emu"} and a.score(X, names) > 0.8


@pytest.mark.parametrize("make, match", [
    (lambda X, y: LinearProbe().fit(X, y, X), "X_val and y_val must be given together"),
    (lambda X, y: LinearProbe().fit(X, y, X[:, :3], y), "X_val has 3 features, X has 4"),
    (lambda X, y: LinearProbe(validation_fraction=1.0).fit(X, y), "validation_fraction must"),
    (lambda X, y: LinearProbe().fit(X, y, X, y + 7), "y_val holds label 7"),
    (lambda X, y: LinearProbe(C=1, backend="jax").fit(X, y), "backend must be"),
    (lambda X, y: LinearProbe(C=-1).fit(X, y), "C must be a positive number"),
    (lambda X, y: LinearProbe(C=1).fit(X, y[:5]), r"inconsistent numbers of samples: \[12, 5\]"),
    (lambda X, y: LinearProbe(C=1).fit(X, np.zeros(12)), "y has 1 class; a probe needs at least 2"),
    (lambda X, y: LinearProbe(C=1).fit(X, y).predict(X[:, :2]), "X has 2 features, but LinearProbe is expecting 4"),
    (lambda X, y: LinearProbe(C=1).fit(X, y + 0.5), "Unknown label type"),
    (lambda X, y: LinearProbe(sweep="fine").fit(X, y, X, y), "sweep must be"),
])
def test_bad_input_is_named(make, match):
    X, y = _clusters(12, 4, 3, 0.5, seed=10)
    with pytest.raises(ValueError, match=match):
        make(X, y)


# --- kNN -------------------------------------------------------------------------------------

def _unit(deg):
    a = np.deg2rad(np.asarray(deg, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_knn_weighted_votes_hand_computed():
    train = _unit([0, 20, 25, 180])
    labels = np.array([0, 1, 1, 0])
    q = _unit([5])
    c = np.cos(np.deg2rad([5, 15, 20]))
    for T in (0.07, 0.01):
        v = KNNProbe(k=3, temperature=T).fit(train, labels).votes(q)[0]
        expect = np.array([np.exp(c[0] / T), np.exp(c[1] / T) + np.exp(c[2] / T)])
        np.testing.assert_allclose(v / v.sum(), expect / expect.sum(), rtol=1e-5)
    # two close class-1 neighbours outvote the nearest class-0 one at T = 0.07 but not at 0.01
    assert KNNProbe(k=3, temperature=0.07).fit(train, labels).predict(q)[0] == 1
    assert KNNProbe(k=3, temperature=0.01).fit(train, labels).predict(q)[0] == 0
    assert KNNProbe(k=1).fit(train, labels).predict(q)[0] == 0


def test_knn_on_clusters_and_k_clipped():
    X, y = _clusters(90, 16, 3, 0.5, seed=11)
    Xte, yte = _clusters(30, 16, 3, 0.5, seed=12)
    assert KNNProbe().fit(X, y).score(Xte, yte) == 1.0
    assert KNNProbe(k=500, batch_size=7).fit(X, y).score(Xte, yte) == 1.0  # k > train size
    # cosine: rescaling features changes nothing when normalized
    s = np.random.default_rng(0).uniform(0.1, 10, size=(30, 1))
    np.testing.assert_array_equal(KNNProbe().fit(X, y).predict(Xte * s),
                                  KNNProbe().fit(X, y).predict(Xte))


