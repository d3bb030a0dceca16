"""Linear and kNN probes: the sweep against analytic curves, separable data, determinism, the
two solvers against each other and against the objective's optimality condition."""
import json
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from unirepclip import data as probe_data
from unirepclip.eval import probe
from unirepclip.eval.probe import KNNProbe, LinearProbe


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


# --- notebook building blocks: feature spaces, datasets, the comparison, tables, figures --------

class _FS:
    """A stand-in for features.FeatureSet with the attributes the probe reads."""

    def __init__(self, emb, pre, labels):
        self.embeddings, self.pre_projection, self.labels = emb, pre, labels


def test_feature_matrix_and_splits_from_feature_sets():
    rng = np.random.default_rng(0)
    sets = {s: _FS(rng.normal(size=(n, 4)), rng.normal(size=(n, 6)), np.arange(n) % 2)
            for s, n in (("train", 10), ("val", 4), ("test", 6))}
    pre = probe.FeatureSplits.from_feature_sets(sets, "pre_projection")
    emb = probe.FeatureSplits.from_feature_sets(sets, "embedding")
    assert pre.X_train is sets["train"].pre_projection and emb.X_test is sets["test"].embeddings
    np.testing.assert_array_equal(pre.y_val, [0, 1, 0, 1])
    assert pre.n_classes == 2 and len(pre) == 6
    with pytest.raises(ValueError, match="feature_kind='logits' is not one of"):
        probe.feature_matrix(sets["train"], "logits")
    with pytest.raises(ValueError, match="no pre_projection features.*feature_kind='embedding'"):
        probe.feature_matrix(_FS(np.zeros((2, 3)), None, None), "pre_projection")
    with pytest.raises(ValueError, match=r"lack the split\(s\) \['val'\]"):
        probe.FeatureSplits.from_feature_sets({"train": sets["train"], "test": sets["test"]})


def test_probe_dataset_synthetic_and_digits():
    syn = probe.probe_dataset("synthetic", n_train=6, n_val=3, n_test=4, image_size=32, seed=1,
                              synthetic_task="colour")
    assert syn.name == "synthetic" and [len(d) for d in syn.splits.values()] == [6, 3, 4]
    assert syn.classnames == list(probe_data.COLOURS) and syn.templates
    np.testing.assert_array_equal(syn.labels("val"), syn.splits["val"].samples.colour)
    img, target = syn.splits["train"][0]
    assert img.size == (32, 32) and target == syn.labels("train")[0]
    # the splits are different images
    assert not np.array_equal(syn.splits["train"].samples.images[:3],
                              syn.splits["val"].samples.images)
    dig = probe.probe_dataset("digits", n_train=50, n_val=0, n_test=0, name="hand", seed=0)
    full = probe_data.SklearnDigits("train", seed=0)
    assert dig.name == "hand" and len(dig.splits["train"]) == 50
    assert len(dig.splits["val"]) == len(probe_data.SklearnDigits("val", seed=0))
    rows = dig.splits["train"].indices
    assert np.all(np.diff(rows) > 0)  # a sorted subset of the split, labels follow it
    np.testing.assert_array_equal(dig.labels("train"), np.asarray(full.targets)[rows])
    assert dig.classnames == [str(d) for d in range(10)]
    again = probe.probe_dataset("digits", n_train=50, n_val=0, n_test=0, seed=0)
    np.testing.assert_array_equal(again.splits["train"].indices, rows)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="mnist"), "dataset='mnist' is not one of"),
    (dict(dataset="synthetic", n_val=0), "n_val = 0: the synthetic world is endless"),
    (dict(dataset="synthetic", n_train=-1), "n_train=-1: expected a non-negative integer"),
    (dict(dataset="synthetic", synthetic_task="size"), "synthetic_task='size'"),
    (dict(dataset="imagefolder"), "needs data_dir"),
])
def test_probe_dataset_bad_parameters_are_named(kwargs, match):
    args = {**dict(n_train=4, n_val=4, n_test=4), **kwargs}
    with pytest.raises(ValueError, match=match):
        probe.probe_dataset(args.pop("dataset"), **args)


def _image_folder(root, splits=("train", "val", "test"), classes=("ant", "bee"), n=3):
    from PIL import Image
    for s in splits:
        for c, name in enumerate(classes):
            (root / s / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 8), (40 * c + i, 0, 200)).save(root / s / name / f"{i}.png")


def test_probe_dataset_imagefolder(tmp_path):
    _image_folder(tmp_path)
    ds = probe.probe_dataset("imagefolder", n_train=4, n_val=0, n_test=0, data_dir=str(tmp_path),
                             name="bugs")
    assert ds.name == "bugs" and ds.classnames == ["ant", "bee"]
    assert [len(d) for d in ds.splits.values()] == [4, 6, 6]
    assert "{}" in str(ds.templates[0]) or callable(ds.templates[0])
    np.testing.assert_array_equal(ds.labels("val"), [0, 0, 0, 1, 1, 1])
    X, rows = probe.pixel_matrix(ds.splits["test"], max_side=4)
    # 12 x 8 centre-cropped to 8 x 8, box-averaged to 4 x 4: a flat colour stays that colour
    assert X.shape == (6, 4 * 4 * 3) and rows.tolist() == list(range(6))
    np.testing.assert_allclose(X[4].reshape(4, 4, 3)[..., 0], 41 / 255, atol=1e-6)
    np.testing.assert_allclose(X[4].reshape(4, 4, 3)[..., 2], 200 / 255, atol=1e-6)
    bad = tmp_path / "bad"
    _image_folder(bad, splits=("train", "test"))
    with pytest.raises(FileNotFoundError, match="lacks the split folder"):
        probe.probe_dataset("imagefolder", n_train=0, n_val=0, n_test=0, data_dir=str(bad))


def test_pixel_matrix_box_average_and_native_digits():
    imgs = np.zeros((2, 4, 4, 3), np.uint8)
    imgs[0, :2, :2] = 255          # top-left quarter white
    imgs[1] = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10
    ds = probe_data.SyntheticShapes("test", n=2, image_size=16)
    ds.samples.images = imgs       # the stack the function reads
    X, rows = probe.pixel_matrix(ds, max_side=2)
    assert X.shape == (2, 12) and rows.tolist() == [0, 1]
    np.testing.assert_allclose(X[0].reshape(2, 2, 3)[..., 0], [[1, 0], [0, 0]], atol=1e-6)
    expect = np.arange(16).reshape(4, 4).reshape(2, 2, 2, 2).mean(axis=(1, 3)) * 10 / 255
    np.testing.assert_allclose(X[1].reshape(2, 2, 3)[..., 1], expect, atol=1.5 / 255)
    X0, _ = probe.pixel_matrix(ds, max_side=0)  # native size
    np.testing.assert_array_equal(X0, probe.pixel_features(imgs))
    dig = probe.probe_dataset("digits", n_train=30, n_val=0, n_test=0)
    Xd, _ = probe.pixel_matrix(dig.splits["train"], max_side=16)  # 8 x 8 digits stay native
    full = probe_data.SklearnDigits("train", seed=0)
    rows = dig.splits["train"].indices
    np.testing.assert_array_equal(Xd, probe.pixel_features(full.images[rows]))
    sp = probe.pixel_splits(dig, 16)
    assert sp.X_train.shape == (30, 64) and len(sp.y_test) == len(sp.X_test)


def _space(spread, seed, n=(60, 30, 60), d=6, k=3):
    parts = []
    for i, m in enumerate(n):
        X, y = _clusters(m, d, k, spread, seed=seed + i)
        parts += [X, y]
    return probe.FeatureSplits(*parts)


def test_compare_separable_vs_noise_and_the_result_layout():
    good = _space(0.2, 20)
    rng = np.random.default_rng(5)
    noise = probe.FeatureSplits(rng.normal(size=(60, 6)), good.y_train, rng.normal(size=(30, 6)),
                                good.y_val, rng.normal(size=(60, 6)), good.y_test)
    kw = dict(main="trained", shots=(1, 4, 25), seeds=(0, 1), sweep=[1e-2, 1.0, 1e2],
              zeroshot_acc1=0.5, space_params={"pixel_baseline": {"normalize": False}})
    spaces = {"trained": good, "random_tower": noise, "pixel_baseline": noise}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = probe.compare(spaces, **kw)
        again = probe.compare(spaces, **kw)
    assert r == again  # same seeds, same numbers
    assert r["acc1"] == 1.0 and r["knn_acc1"] == 1.0
    assert r["random_tower_acc1"] < 0.7 and r["pixel_baseline_acc1"] < 0.7
    assert r["zeroshot_acc1"] == 0.5 and r["majority_acc1"] == pytest.approx(1 / 3)
    assert (r["n_train"], r["n_val"], r["n_test"], r["n_classes"]) == (60, 30, 60, 3)
    assert r["kshot_skipped"] == [25]  # 20 training images per class
    assert set(r["kshot"]) == {"1", "4"} and set(r["random_tower_kshot"]) == {"1", "4"}
    assert len(r["kshot"]["4"]["accs"]) == 2 and r["kshot"]["4"]["mean"] == 1.0
    assert [c for c, _ in r["sweep"]] == [1e-2, 1.0, 1e2] and r["best_C"] in (1e-2, 1.0, 1e2)
    assert r["pixel_baseline_n_features"] == 6
    # the paired test on the same 60 test items: acc 1.0 vs < 0.7 is at least 18 items to none
    t = r["random_tower_paired_test"]
    assert t["baseline_only"] == 0 and t["main_only"] == round(60 * (1 - r["random_tower_acc1"]))
    assert t["p_value"] == pytest.approx(2 * 0.5 ** t["main_only"], rel=1e-9)
    assert "paired_test" not in r and "test_correct" not in r
    table = probe.paired_tests_table({"toy": r}).splitlines()
    assert len(table) == 4 and table[2].startswith("| toy | random tower | ")
    json.dumps(r, allow_nan=False)  # JSON-ready as it is
    only = probe.compare({"trained": good, "pixels": noise}, main="trained", shots=(), knn_k=None,
                         C=1.0)
    assert "kshot" not in only and "knn_acc1" not in only and only["pixels_sweep"] == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(main="model"), "main='model' is not among"),
    (dict(main="a", kshot_spaces=["b"]), r"kshot_spaces names unknown space\(s\) \['b'\]"),
    (dict(main="a", space_params={"b": {}}), r"space_params names unknown space\(s\) \['b'\]"),
])
def test_compare_bad_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        probe.compare({"a": _space(0.2, 0)}, **kwargs)


def test_comparison_table_hand_checked():
    table = probe.comparison_table({"syn": {"acc1": 0.5, "knn_acc1": 0.25, "majority_acc1": 0.125},
                                    "dig": {"acc1": 0.96}},
                                   columns=(("acc1", "probe"), ("knn_acc1", "kNN")))
    assert table.splitlines() == ["| dataset | probe | kNN |", "|---|---:|---:|",
                                  "| syn | 50.0 | 25.0 |", "| dig | 96.0 | - |"]


def test_plots_draw_the_numbers_they_are_given():
    import matplotlib
    matplotlib.use("Agg")
    from unirepclip.viz import style as figures
    r = {"sweep": [[1e-2, 0.5], [1.0, 0.75], [1e2, 0.6]], "best_C": 1.0, "n_features": 8,
         "random_tower_sweep": [[1e-2, 0.3], [1.0, 0.3]], "random_tower_best_C": 1e-2,
         "kshot": {"1": {"mean": 0.4, "std": 0.1}, "4": {"mean": 0.6, "std": 0.05}},
         "acc1": 0.8, "zeroshot_acc1": 0.55, "n_train": 100}
    fig, (a, b) = figures.subplots(1, 2)
    probe.plot_sweep(a, r, {"": "trained", "random_tower_": "random"})
    trained, star = a.lines[0], a.lines[1]
    np.testing.assert_allclose(trained.get_xdata(), [1e-2, 1.0, 1e2])
    np.testing.assert_allclose(trained.get_ydata(), [50, 75, 60])
    assert star.get_xdata()[0] == 1.0 and star.get_ydata()[0] == 75
    assert a.lines[3].get_xdata()[0] == 1e-2 and a.lines[3].get_ydata()[0] == 30
    assert a.get_xscale() == "log"
    assert "trained (8-d)" in [t.get_text() for t in a.get_legend().texts]
    probe.plot_kshot(b, r, {"": "trained"})
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in b.lines]
    drawn = lambda want: any(y.shape == (2,) and np.allclose(y, want) for y in ys)  # noqa: E731
    assert drawn([40, 60])  # the k-shot means
    assert drawn([55, 55]) and drawn([80, 80])  # zero-shot and full-data lines
    assert b.get_xticks().tolist() == [1, 4]
    fig2, c = figures.subplots(1, 1)
    probe.plot_comparison(c, {"syn": {"acc1": 0.9, "majority_acc1": 0.2}, "dig": {"acc1": 0.5}},
                          columns=(("acc1", "probe"),))
    assert [p.get_height() for p in c.patches] == pytest.approx([90, 50])
    with pytest.raises(KeyError, match="no 'pixels_sweep'"):
        probe.plot_sweep(a, r, {"pixels_": "raw"})


def test_centering_is_invisible_to_an_unnormalized_probe_only():
    sp = _space(1.5, 40)
    off = probe.FeatureSplits(*[a + 25.0 if i % 2 == 0 else a for i, a in enumerate(sp)])
    c = off.centered()
    np.testing.assert_allclose(c.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(c.X_test, off.X_test - off.X_train.mean(axis=0))  # train's mean
    raw = [LinearProbe(C=1.0, tol=1e-10).fit(s.X_train, s.y_train).predict(s.X_test)
           for s in (off, c)]
    np.testing.assert_array_equal(raw[0], raw[1])  # the intercept absorbs the shift
    # Two classes that differ only in length along a common offset: by angle they are the same
    # point, so normalization erases the class; centring first turns length into direction.
    rng = np.random.default_rng(3)

    def split(n):
        y = np.arange(n) % 2
        X = np.stack([100.0 + 2.0 * y + 0.1 * rng.normal(size=n), 0.1 * rng.normal(size=n)], 1)
        return X, y
    radial = probe.FeatureSplits(*split(80), *split(40), *split(200))
    for s, lo, hi in ((radial, 0.3, 0.7), (radial.centered(), 0.99, 1.0)):
        knn = KNNProbe(k=5).fit(s.X_train, s.y_train).score(s.X_test, s.y_test)
        lin = LinearProbe(C=1.0, normalize=True).fit(s.X_train, s.y_train).score(s.X_test, s.y_test)
        assert lo <= knn <= hi and lo <= lin <= hi


def test_compare_many_is_compare_per_dataset_and_n_jobs_changes_nothing():
    a, b = _space(0.5, 50), _space(2.0, 60)
    kw = dict(main="m", shots=(1, 2), seeds=(0, 1), sweep=[1e-2, 1.0, 1e2])
    many = probe.compare_many({"A": {"m": a, "x": b}, "B": {"m": b}}, zeroshot_acc1={"B": 0.25},
                              **kw)
    assert many["A"] == probe.compare({"m": a, "x": b}, **kw)
    assert many["B"] == probe.compare({"m": b}, zeroshot_acc1=0.25, **kw)
    two = probe.compare_many({"A": {"m": a, "x": b}, "B": {"m": b}}, zeroshot_acc1={"B": 0.25},
                             n_jobs=2, **kw)
    assert two == many
    with pytest.raises(ValueError, match=r"zeroshot_acc1 names unknown dataset\(s\) \['C'\]"):
        probe.compare_many({"A": {"m": a}}, main="m", zeroshot_acc1={"C": 0.1})
    with pytest.raises(ValueError, match=r"main='z' is not among the spaces \['m'\] "
                                         r"\(dataset 'B'\)"):
        probe.compare_many({"A": {"z": a}, "B": {"m": b}}, main="z")
    assert list(probe.start_workers(1)) == []
