"""Linear and kNN probes: the sweep against analytic curves, separable data, determinism, the
two solvers against each other and against the objective's optimality condition."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from unirepclip import probe
from unirepclip.probe import KNNProbe, LinearProbe


def _clusters(n, d, k, spread, seed):
    """k Gaussian clusters; small ``spread`` makes them linearly separable."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(k, d)) * 3.0
    y = np.arange(n) % k
    return centers[y] + spread * rng.normal(size=(n, d)), y


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


def test_noisy_problem_prefers_intermediate_C_and_sweep_is_sorted():
    X, y = _clusters(300, 20, 3, 6.0, seed=2)
    p = LinearProbe(sweep=[1e-6, 1e-2, 1e2]).fit(X[:150], y[:150], X[150:], y[150:])
    assert [c for c, _ in p.sweep_] == [1e-6, 1e-2, 1e2]
    assert p.best_C_ == max(p.sweep_, key=lambda t: (t[1], -t[0]))[0]
    assert 0.34 < p.score(X[150:], y[150:]) <= 1.0


def test_same_seed_same_numbers():
    X, y = _clusters(90, 6, 3, 2.5, seed=3)
    a = LinearProbe().fit(X[:60], y[:60], X[60:], y[60:])
    b = LinearProbe().fit(X[:60], y[:60], X[60:], y[60:])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.sweep_ == b.sweep_
    args = (X[:60], y[:60], X[60:75], y[60:75], X[75:], y[75:])
    r1 = probe.kshot_evaluate(*args, shots=(1, 4), seeds=(0, 1))
    r2 = probe.kshot_evaluate(*args, shots=(1, 4), seeds=(0, 1))
    assert r1 == r2
    assert set(r1) == {1, 4} and len(r1[4]["accs"]) == 2
    assert r1[4]["std"] == pytest.approx(np.std(r1[4]["accs"], ddof=1))
    assert not np.array_equal(probe.kshot_indices(y[:60], 4, 0), probe.kshot_indices(y[:60], 4, 1))


def test_kshot_indices_and_refit_policy():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = probe.kshot_indices(y, 2, seed=5)
    assert np.bincount(y[idx]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(idx, probe.kshot_indices(y, 2, seed=5))
    with pytest.raises(ValueError, match="class 1 has 2 training samples, fewer than k=3"):
        probe.kshot_indices(y, 3, seed=0)
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
    (lambda X, y: LinearProbe().fit(X, y), "C=None chooses C on a validation split"),
    (lambda X, y: LinearProbe().fit(X, y, X, y + 7), "y_val holds label 7"),
    (lambda X, y: LinearProbe(C=1, backend="jax").fit(X, y), "backend must be"),
    (lambda X, y: LinearProbe(C=-1).fit(X, y), "C must be a positive number"),
    (lambda X, y: LinearProbe(C=1).fit(X, y[:5]), "y_train has 5 labels for 12 samples"),
    (lambda X, y: LinearProbe(C=1).fit(X, np.zeros(12)), "at least 2"),
    (lambda X, y: LinearProbe(C=1).fit(X, y).predict(X[:, :2]), "X has 2 features"),
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


# --- baselines and the one-call evaluation ---------------------------------------------------

def test_pixel_features():
    imgs = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    f = probe.pixel_features(imgs)
    assert f.shape == (2, 12) and f.dtype == np.float32
    assert f[1, -1] == pytest.approx(23 / 255)
    np.testing.assert_array_equal(probe.pixel_features(torch.ones(3, 4, 4)), np.ones((3, 16)))


def test_evaluate_bundle():
    X, y = _clusters(90, 8, 3, 0.3, seed=13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = probe.evaluate(X[:45], y[:45], X[45:60], y[45:60], X[60:], y[60:])
    assert r["acc1"] == 1.0 and r["knn_acc1"] == 1.0 and r["mean_per_class_recall"] == 1.0
    assert r["backend"] == "sklearn" and r["best_C"] in dict(r["sweep"])
