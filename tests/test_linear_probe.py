"""The linear-probe task (unirepclip.eval.linear_probe): k-shot probes, the one-call evaluation,
the probe datasets and feature spaces, the comparison of spaces against an independent
re-computation with scikit-learn, and the gaps with their standard errors."""
import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import unirepclip
from unirepclip import data as probe_data
from unirepclip import features
from unirepclip.eval import linear_probe as probe
from unirepclip.eval import zeroshot
from unirepclip.eval.probes import KNNProbe, LinearProbe


def _clusters(n, d, k, spread, seed):
    """k Gaussian clusters; small ``spread`` makes them linearly separable."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(k, d)) * 3.0
    y = np.arange(n) % k
    return centers[y] + spread * rng.normal(size=(n, d)), y


# --- k-shot probes ----------------------------------------------------------------------------

def test_kshot_indices():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = probe.kshot_indices(y, 2, seed=5)
    assert np.bincount(y[idx]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(idx, probe.kshot_indices(y, 2, seed=5))
    assert not np.array_equal(probe.kshot_indices(np.arange(60) % 3, 4, 0),
                              probe.kshot_indices(np.arange(60) % 3, 4, 1))
    with pytest.raises(ValueError, match="class 1 has 2 training samples, fewer than k=3"):
        probe.kshot_indices(y, 3, seed=0)


def test_kshot_evaluate_is_seeded_and_fits_the_subset_only():
    X, y = _clusters(90, 6, 3, 2.5, seed=3)
    args = (X[:60], y[:60], X[60:75], y[60:75], X[75:], y[75:])
    r1 = probe.kshot_evaluate(*args, shots=(1, 4), seeds=(0, 1), sweep=[1e-2, 1.0])
    assert r1 == probe.kshot_evaluate(*args, shots=(1, 4), seeds=(0, 1), sweep=[1e-2, 1.0])
    assert set(r1) == {1, 4} and len(r1[4]["accs"]) == 2
    assert r1[4]["std"] == pytest.approx(np.std(r1[4]["accs"], ddof=1))
    # each run: C swept on the full validation split, the model fitted on the k-shot rows only
    idx = probe.kshot_indices(y[:60], 4, 1)
    p = LinearProbe(sweep=[1e-2, 1.0], refit=False).fit(X[idx], y[idx], X[60:75], y[60:75])
    assert r1[4]["accs"][1] == p.score(X[75:], y[75:]) and r1[4]["best_C"][1] == p.best_C_

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



def test_evaluate_records_what_the_paired_rule_judged():
    """``sweep_discordant`` and ``val_chance`` against fits made one C at a time: per C, the
    validation items the best C (CLIP's) gets right and C wrong, and the reverse; the kept C the
    smallest whose shortfall is at most sqrt(lost + won) items and whose score beats chance."""
    X, y = _clusters(120, 8, 3, 4.0, seed=5)
    y[60:64] = 0  # an unbalanced validation split: majority rate 9 / 20 above 1 / 3
    Cs = [1e-6, 1e-3, 1e-1, 1.0, 1e2]
    args = (X[:60], y[:60], X[60:80], y[60:80], X[80:], y[80:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = probe.evaluate(*args, knn_k=None, sweep=Cs, selection="one_se", backend="sklearn")
        right = {C: LinearProbe(C=C, backend="sklearn").fit(X[:60], y[:60]).predict(X[60:80])
                 == y[60:80] for C in Cs}
    assert r["val_chance"] == max(1 / 3, np.bincount(y[60:80]).max() / 20) == 9 / 20
    ref = right[r["clip_best_C"]]
    by_hand = [[int((ref & ~right[C]).sum()), int((~ref & right[C]).sum())] for C in Cs]
    assert r["sweep_discordant"] == by_hand
    kept = [C for C, (lost, won) in zip(Cs, by_hand)
            if right[C].mean() > 9 / 20 and lost - won <= np.sqrt(lost + won)]
    assert r["best_C"] == min(kept)


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
    (dict(dataset="svhn"), "dataset='svhn' is not one of"),
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
    # the intervals beside the figures: Wilson's for top-1 (scipy's own), none wider than [0, 1]
    from scipy.stats import binomtest
    for pre in ("", "random_tower_", "pixel_baseline_"):
        k = round(60 * r[pre + "acc1"])
        want = binomtest(k, 60).proportion_ci(method="wilson")
        assert r[pre + "acc1_ci"] == pytest.approx([want.low, want.high], abs=1e-12)
        lo, hi = r[pre + "mean_per_class_recall_ci"]
        assert 0 <= lo <= hi <= 1
        assert r[pre + "clip_best_C"] in (1e-2, 1.0, 1e2) and r[pre + "not_converged"] == []
    assert r["mean_per_class_recall_ci"] == [1.0, 1.0]  # all right: the degenerate interval
    assert t["verdict"].startswith("the trained tower's probe higher than the random tower probe")
    lo, hi = t["difference_ci"]
    assert lo <= 1.0 - r["random_tower_acc1"] <= hi and lo > 0
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


def _sklearn_probe(X, y, Xv, yv, Cs, refit=True):
    """The CLIP protocol written out with scikit-learn's LogisticRegression: the best C on the
    validation split (equal scores to the smaller C), then one fit on train (+ val)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = lambda C: LogisticRegression(C=C, max_iter=1000, tol=1e-4, random_state=0)  # noqa: E731
        accs = [(C, lr(C).fit(X, y).score(Xv, yv)) for C in Cs]
        best = max(accs, key=lambda t: (t[1], -t[0]))[0]
        fit = lr(best).fit(np.r_[X, Xv], np.r_[y, yv]) if refit else lr(best).fit(X, y)
    return fit, best, accs


def _knn_by_hand(X, y, Xq, k=20, T=0.07):
    Xn, Qn = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (X, Xq))
    sim = Qn @ Xn.T
    votes = np.zeros((len(Xq), y.max() + 1))
    for i, row in enumerate(sim):
        for j in np.argsort(-row)[:k]:
            votes[i, y[j]] += np.exp(row[j] / T)
    return votes.argmax(1)


def test_compare_many_against_an_independent_computation_and_n_jobs_invariance():
    a, b, noisy = _space(1.0, 50), _space(2.0, 60), _space(6.0, 70)
    Cs = [1e-2, 1.0, 1e2]
    kw = dict(main="m", shots=(1, 2), seeds=(0, 1), sweep=Cs, backend="sklearn")
    datasets = {"A": {"m": a, "x": noisy}, "B": {"m": b}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        many = probe.compare_many(datasets, zeroshot_acc1={"B": 0.25}, **kw)
    correct_by = {}
    for d, spaces in datasets.items():
        r, correct = many[d], {}
        correct_by[d] = correct
        for name, s in spaces.items():
            pre = "" if name == "m" else f"{name}_"
            fit, best, accs = _sklearn_probe(s.X_train, s.y_train, s.X_val, s.y_val, Cs)
            pred = fit.predict(s.X_test)
            correct[name] = pred == s.y_test
            assert r[pre + "best_C"] == best and r[pre + "sweep"] == [list(t) for t in accs]
            assert r[pre + "acc1"] == pytest.approx(correct[name].mean(), abs=1e-12)
            recall = [np.mean(pred[s.y_test == c] == c) for c in np.unique(s.y_test)]
            assert r[pre + "mean_per_class_recall"] == pytest.approx(np.mean(recall), abs=1e-12)
            knn = _knn_by_hand(np.r_[s.X_train, s.X_val], np.r_[s.y_train, s.y_val], s.X_test)
            assert r[pre + "knn_acc1"] == pytest.approx(np.mean(knn == s.y_test), abs=1e-12)
            for k in (1, 2):
                accs_k = []
                for seed in (0, 1):
                    idx = probe.kshot_indices(s.y_train, k, seed)
                    f, _, _ = _sklearn_probe(s.X_train[idx], s.y_train[idx], s.X_val, s.y_val, Cs,
                                             refit=False)
                    accs_k.append(f.score(s.X_test, s.y_test))
                assert r[pre + "kshot"][str(k)]["accs"] == pytest.approx(accs_k, abs=1e-12)
                assert r[pre + "kshot"][str(k)]["mean"] == pytest.approx(np.mean(accs_k))
        assert r["majority_acc1"] == np.bincount(spaces["m"].y_test).max() / len(spaces["m"].y_test)
        assert r["n_test"] == len(spaces["m"].y_test) and r["n_classes"] == 3
    # the paired test counts the test items only one of the two probes got right
    t, right = many["A"]["x_paired_test"], correct_by["A"]
    assert t["main_only"] == int(np.sum(right["m"] & ~right["x"]))
    assert t["baseline_only"] == int(np.sum(~right["m"] & right["x"]))
    assert t["main_only"] + t["baseline_only"] > 0  # the probes disagree somewhere: a real test
    assert many["B"]["zeroshot_acc1"] == 0.25 and "zeroshot_acc1" not in many["A"]
    # every fit is deterministic: spreading them over two processes changes no number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        two = probe.compare_many(datasets, zeroshot_acc1={"B": 0.25}, n_jobs=2, **kw)
    assert two == many
    with pytest.raises(ValueError, match=r"zeroshot_acc1 names unknown dataset\(s\) \['C'\]"):
        probe.compare_many({"A": {"m": a}}, main="m", zeroshot_acc1={"C": 0.1})
    with pytest.raises(ValueError, match=r"main='z' is not among the spaces \['m'\] "
                                         r"\(dataset 'B'\)"):
        probe.compare_many({"A": {"z": a}, "B": {"m": b}}, main="z")
    assert list(probe.start_workers(1)) == []



# --- the feature spaces of notebook 05 --------------------------------------------------------

def test_feature_spaces_centre_on_the_training_mean_and_score_zero_shot():
    torch.manual_seed(0)
    model = unirepclip.create_model("UniRepLKNet-Demo")
    tok = unirepclip.get_tokenizer("UniRepLKNet-Demo")
    torch.manual_seed(1)
    other = unirepclip.create_model("UniRepLKNet-Demo")
    ds = probe.probe_dataset("synthetic", n_train=8, n_val=4, n_test=6, image_size=32, seed=2)
    towers = {"trained": (model, None), "random_tower": (other, None)}
    kw = dict(batch_size=8, progress=False)
    out = probe.feature_spaces({"syn": ds}, towers, zeroshot_datasets=["syn", "absent"],
                               tokenizer=tok, pixel_size=4, **kw)
    raw = probe.feature_spaces({"syn": ds}, {"trained": towers["trained"]}, center=False,
                               pixel_size=4, **kw)
    assert set(out) == {"spaces", "zeroshot_acc1", "n_features"} and raw["zeroshot_acc1"] == {}
    for tower, m in towers.items():
        train = features.extract_image_features(m[0], ds.splits["train"], **kw).pre_projection
        test_set = features.extract_image_features(m[0], ds.splits["test"], **kw)
        test = test_set.pre_projection
        mean = train.sum(axis=0) / len(train)  # the training split's mean, by hand
        got = out["spaces"]["syn"][tower]
        np.testing.assert_allclose(got.X_train, train - mean, atol=1e-6)
        np.testing.assert_allclose(got.X_test, test - mean, atol=1e-6)  # train's mean, not test's
        np.testing.assert_array_equal(got.y_val, ds.labels("val"))
        if tower == "trained":
            np.testing.assert_array_equal(raw["spaces"]["syn"][tower].X_test, test)
            emb = test_set.embeddings
    np.testing.assert_array_equal(out["spaces"]["syn"]["pixel_baseline"].X_train,
                                  probe.pixel_splits(ds, 4).X_train)
    assert out["n_features"] == {"syn": {"trained": train.shape[1], "random_tower": train.shape[1],
                                         "pixel_baseline": 4 * 4 * 3}}
    # zero-shot by the trained tower on its test embeddings
    zs = zeroshot.evaluate(model, tok, emb, ds.labels("test"), ds.classnames, ds.templates)
    assert out["zeroshot_acc1"] == {"syn": zs["acc1"]}
    with pytest.raises(ValueError, match="main='model' is not among the towers"):
        probe.feature_spaces({"syn": ds}, towers, main="model")


# --- the gaps and their standard errors -------------------------------------------------------

def test_binomial_se_hand_computed():
    assert probe.binomial_se(0.94, 360) == pytest.approx(0.012516655, abs=1e-9)  # the prose's 1.3
    assert probe.binomial_se(0.5, 100) == 0.05 and probe.binomial_se(1.0, 7) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        probe.binomial_se(0.5, 0)
    with pytest.raises(ValueError, match="p=1.5"):
        probe.binomial_se(1.5, 10)


def test_probe_gaps_hand_computed():
    by = {"syn": {"acc1": 0.9, "best_C": 0.5, "n_test": 100, "random_tower_acc1": 0.6,
                  "pixel_baseline_acc1": 0.3, "zeroshot_acc1": 0.95},
          "dig": {"acc1": 0.8, "best_C": 2.0, "n_test": 400, "random_tower_acc1": 0.85}}
    g = probe.probe_gaps(by)
    assert g["syn"]["gaps"] == pytest.approx({"random_tower": 0.3, "pixel_baseline": 0.6,
                                              "zeroshot": -0.05})
    assert g["syn"]["se"] == pytest.approx(0.03) and g["dig"]["se"] == pytest.approx(0.02)
    assert g["dig"]["gaps"] == pytest.approx({"random_tower": -0.05})  # absent baselines left out
    assert (g["dig"]["acc1"], g["dig"]["best_C"], g["dig"]["n_test"]) == (0.8, 2.0, 400)
    json.dumps(g, allow_nan=False)
    with pytest.raises(KeyError, match=r"'dig' lacks \['n_test'\]"):
        probe.probe_gaps({"dig": {"acc1": 0.8, "best_C": 2.0}})
