"""The linear-probe task: the CLIP paper's protocol around the probe estimators, one dict out.

In CLIP_benchmark's manner (``clip_benchmark/metrics/linear_probe.py``) the task exposes one
:func:`evaluate` that returns a plain dict of named metrics: the linear probe of
:class:`~unirepclip.eval.probes.LinearProbe` (C swept on the validation split, refitted on train
+ validation, scored once on the test split; Radford et al. 2021, appendix A.3) and the kNN probe
of :class:`~unirepclip.eval.probes.KNNProbe` fitted on the same data. Around it:

* :func:`kshot_evaluate`: few-shot probes, k labelled samples per class over several seeds;
* :class:`FeatureSplits`: one feature space of a dataset (the tower's features, optionally
  centred; :func:`pixel_splits` for raw pixels), and :func:`feature_spaces`, the three spaces of
  every dataset of notebook 05 with the zero-shot accuracy where the text tower knows the classes;
* :func:`compare` / :func:`compare_many`: every probe in every space, one JSON-ready dict per
  dataset, the fits spread over ``n_jobs`` processes;
* :func:`probe_gaps`: the main probe's lead over each baseline with its binomial standard error;
* :func:`probe_dataset`: the train / val / test splits of a registered probe set (the synthetic
  world, scikit-learn's digits, an image folder, a CLIP_benchmark name with a train split).

The tables and figures of these results are :mod:`unirepclip.viz.probe`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from unirepclip.data.registry import (PROBE_SPLITS, base_dataset, dataset_names, dataset_spec,
                                      load_classified, load_dataset)
from unirepclip.eval.metrics import (ArrayLike, check_features,
                                     mean_per_class_recall, to_numpy)
from unirepclip.eval.params import FEATURE_KINDS
from unirepclip.eval.probes import KNNProbe, LinearProbe, _encode, _py, discordant_with_best
from unirepclip.eval.uncertainty import (mean_per_class_recall_interval, paired_accuracy_test,
                                         proportion_interval)

__all__ = [
    "kshot_indices", "kshot_evaluate", "pixel_features", "evaluate",
    "PROBE_DATASETS", "FEATURE_KINDS", "FeatureSplits", "feature_matrix", "ProbeDataset",
    "probe_dataset", "pixel_matrix", "pixel_splits", "feature_spaces", "start_workers",
    "compare", "compare_many", "GAP_BASELINES", "binomial_se", "probe_gaps",
]


def _as_features(X: ArrayLike, name: str) -> np.ndarray:
    return check_features(X, name)


def _as_labels(y: ArrayLike, name: str, n: int) -> np.ndarray:
    t = to_numpy(y, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {t.shape}")
    if len(t) != n:
        raise ValueError(f"{name} has {len(t)} labels for {n} samples")
    return t


# ---------------------------------------------------------------------------------------------
# Few-shot probes, baselines, one-call evaluation
# ---------------------------------------------------------------------------------------------

def kshot_indices(y: ArrayLike, k: int, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` samples of every class in ``y``, drawn without replacement by a
    generator seeded with ``seed`` (the same seed gives the same subset)."""
    yr = to_numpy(y, "y")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(yr):
        members = np.flatnonzero(yr == c)
        if len(members) < k:
            raise ValueError(f"class {_py(c)!r} has {len(members)} training samples, fewer than "
                             f"k={k}")
        picks.append(rng.choice(members, size=int(k), replace=False))
    return np.sort(np.concatenate(picks))


def _discordant(probe: LinearProbe) -> List[List[int]]:
    if not probe.sweep_:
        return []
    rows = dict(zip((c for c, _ in probe.sweep_), probe.sweep_correct_))
    return [list(p) for p in discordant_with_best(probe.sweep_, rows)]


def kshot_evaluate(X_train: ArrayLike, y_train: ArrayLike, X_val: ArrayLike, y_val: ArrayLike,
                   X_test: ArrayLike, y_test: ArrayLike, shots: Sequence[int] = (1, 2, 4, 8, 16),
                   seeds: Sequence[int] = (0, 1, 2), *, progress: bool = False,
                   **probe_params: Any) -> Dict[int, Dict[str, Any]]:
    """Few-shot linear probes: for each k and seed, k training samples per class.

    C is swept on the full validation split (as the CLIP paper did for its few-shot probes) and
    the final model is fitted on the k-shot subset only (``refit=False``), so the validation
    samples never train it.

    Returns:
        ``{k: {"mean": ..., "std": ..., "accs": [...], "best_C": [...]}}``; ``std`` is the
        sample standard deviation over seeds (ddof=1; 0.0 for one seed).
    """
    Xtr = _as_features(X_train, "X_train")
    ytr = _as_labels(y_train, "y_train", len(Xtr))
    Xva, yva = to_numpy(X_val, "X_val"), to_numpy(y_val, "y_val")
    Xte, yte = to_numpy(X_test, "X_test"), to_numpy(y_test, "y_test")
    if not len(seeds):
        raise ValueError("seeds is empty")
    params = dict(probe_params)
    params["refit"] = False
    out: Dict[int, Dict[str, Any]] = {}
    runs = [(int(k), s) for k in shots for s in seeds]
    for k, s in tqdm(runs, desc="k-shot probes", disable=not progress, leave=False):
        idx = kshot_indices(ytr, k, s)
        probe = LinearProbe(**params).fit(Xtr[idx], ytr[idx], Xva, yva)
        rec = out.setdefault(k, {"accs": [], "best_C": []})
        rec["accs"].append(probe.score(Xte, yte))
        rec["best_C"].append(probe.best_C_)
    for rec in out.values():
        a = np.asarray(rec["accs"])
        rec["mean"] = float(a.mean())
        rec["std"] = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return out


def pixel_features(images: ArrayLike) -> np.ndarray:
    """Raw pixels flattened to (N, H*W*C) float32, the baseline a learned representation must
    beat; uint8 images are scaled to [0, 1]. Any layout works (N first)."""
    x = to_numpy(images, "images")
    if x.ndim < 2:
        raise ValueError(f"images must have a leading sample axis and at least one more, got "
                         f"shape {x.shape}")
    if x.dtype == np.uint8:
        return x.reshape(len(x), -1).astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"images must be numeric, got dtype {x.dtype}")
    return x.reshape(len(x), -1).astype(np.float32)


def evaluate(X_train: ArrayLike, y_train: ArrayLike, X_val: ArrayLike, y_val: ArrayLike,
             X_test: ArrayLike, y_test: ArrayLike, *, knn_k: Optional[int] = 20,
             **probe_params: Any) -> Dict[str, Any]:
    """The linear probe (CLIP protocol) and the kNN probe in one call.

    Returns a dict: ``acc1``, ``mean_per_class_recall`` (linear probe on test), ``best_C`` (the
    C the probe's ``selection`` kept), ``clip_best_C`` (the best-scoring C of the same sweep,
    CLIP's rule; None when C was given), ``not_converged`` (the probe's ``not_converged_``),
    ``sweep`` (list of (C, val accuracy)), ``sweep_discordant`` (per swept C, the validation
    items ``[lost, won]`` against CLIP's C, on which the ``one_se`` rule judges noise:
    :func:`~unirepclip.eval.probes.discordant_with_best`), ``val_chance`` (the probe's
    ``chance_``), ``backend``, ``test_correct`` (per test item: was the
    linear probe right; for :func:`unirepclip.eval.metrics.mcnemar_exact`), ``test_labels`` and
    ``test_predictions`` (class indices, for paired tests of the mean per-class recall),
    ``knn_acc1`` (kNN fitted on train + val, the same data as the final linear model; absent when
    ``knn_k`` is None).
    """
    probe = LinearProbe(**probe_params).fit(X_train, y_train, X_val, y_val)
    y_te = _as_labels(y_test, "y_test", len(to_numpy(X_test, "X_test")))
    pred = probe.predict(X_test)
    enc_true = _encode(y_te, probe.classes_, "y_test")
    enc_pred = _encode(pred, probe.classes_, "predictions")
    out: Dict[str, Any] = {
        "acc1": float(np.mean(pred == y_te)),
        "test_correct": np.asarray(pred == y_te),  # per test item, for paired tests
        "mean_per_class_recall": mean_per_class_recall(enc_true, enc_pred, len(probe.classes_)),
        "test_labels": enc_true,
        "test_predictions": enc_pred,
        "best_C": probe.best_C_,
        "clip_best_C": probe.clip_C_,
        "not_converged": list(probe.not_converged_),
        "sweep": probe.sweep_,
        "sweep_discordant": _discordant(probe),
        "val_chance": probe.chance_,
        "backend": probe.backend_,
    }
    if knn_k is not None:
        X_fit = np.concatenate([_as_features(X_train, "X_train"), _as_features(X_val, "X_val")])
        y_fit = np.concatenate([to_numpy(y_train, "y_train"), to_numpy(y_val, "y_val")])
        out["knn_acc1"] = KNNProbe(k=knn_k).fit(X_fit, y_fit).score(X_test, y_test)
    return out


# ---------------------------------------------------------------------------------------------
# Notebook building blocks: the probe datasets, feature spaces, the comparison, tables, figures
# ---------------------------------------------------------------------------------------------

PROBE_DATASETS = dataset_names("probe")  # at import; probe_dataset asks the registry each call


class FeatureSplits(NamedTuple):
    """Features and labels of a dataset's train / validation / test splits, in one feature space
    (unpack it straight into :func:`evaluate` or :func:`kshot_evaluate`)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @classmethod
    def from_feature_sets(cls, sets: Mapping[str, Any], kind: str = "pre_projection"
                          ) -> "FeatureSplits":
        """From ``{"train": FeatureSet, "val": ..., "test": ...}`` (see
        :mod:`unirepclip.features`), taking :func:`feature_matrix` of ``kind`` and the labels
        the extraction kept (rows of unreadable images are already left out of both)."""
        missing = [s for s in PROBE_SPLITS if s not in sets]
        if missing:
            raise ValueError(f"feature sets lack the split(s) {missing} (have {sorted(sets)})")
        parts: List[np.ndarray] = []
        for s in PROBE_SPLITS:
            fs = sets[s]
            if getattr(fs, "labels", None) is None:
                raise ValueError(f"the {s} feature set has no labels")
            parts += [feature_matrix(fs, kind, where=f"the {s} feature set"),
                      np.asarray(fs.labels)]
        return cls(*parts)

    @property
    def n_classes(self) -> int:
        return int(len(np.unique(self.y_train)))

    def centered(self) -> "FeatureSplits":
        """Every split minus the training split's mean feature vector.

        Without L2 normalization this changes no linear probe's predictions (the unpenalized
        intercept absorbs the shift); before normalization or cosine kNN it matters: features
        that sit in a narrow cone far from the origin (a tower shown images unlike its training
        data) all look alike by angle until the common offset is removed (SimpleShot's
        centering, Wang et al. 2019).
        """
        mean = np.asarray(self.X_train).mean(axis=0, keepdims=True)
        return self._replace(X_train=self.X_train - mean, X_val=self.X_val - mean,
                             X_test=self.X_test - mean)


def feature_matrix(feature_set: Any, kind: str = "pre_projection", *,
                   where: str = "feature set") -> np.ndarray:
    """The (N, D) array of ``kind`` from a :class:`~unirepclip.features.FeatureSet`:
    ``"pre_projection"`` (the image tower's pooled features as the tower seam captures them,
    the CLIP paper's probe input) or
    ``"embedding"`` (after the projection, as the extraction returned them)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature_kind={kind!r} is not one of {FEATURE_KINDS}")
    x = feature_set.pre_projection if kind == "pre_projection" else feature_set.embeddings
    if x is None:
        raise ValueError(f"{where} has no {kind} features (the model exposes no input to its "
                         f"projection); use feature_kind='embedding'")
    return np.asarray(x)


@dataclass
class ProbeDataset:
    """One dataset's three splits for probing.

    ``splits`` maps ``"train"``/``"val"``/``"test"`` to datasets yielding ``(PIL image, class
    index)`` (no transform: the model's preprocessing is given to the feature extraction);
    ``classnames`` and ``templates`` are its zero-shot vocabulary; ``name`` is its name in
    results (``probe.<name>``).
    """

    name: str
    kind: str
    splits: Dict[str, Any]
    classnames: List[str]
    templates: List[Any]
    description: str

    def labels(self, split: str) -> np.ndarray:
        """Class indices of every row of ``split``."""
        return np.asarray(_targets(self.splits[split]), dtype=np.int64)


def _targets(ds: Any) -> List[int]:
    inner = getattr(ds, "dataset", None)
    if inner is not None and hasattr(ds, "indices"):  # a Subset
        t = _targets(inner)
        return [t[int(i)] for i in ds.indices]
    return list(ds.targets)


def _check_size(name: str, n: Any) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"{name}={n!r}: expected a non-negative integer")
    return int(n)


def probe_dataset(dataset: str, *, n_train: int, n_val: int, n_test: int, image_size: int = 64,
                  seed: int = 0, name: str = "", data_dir: Optional[str] = None,
                  classnames_file: str = "", synthetic_task: str = "shape") -> ProbeDataset:
    """The train / val / test splits a notebook's parameters name.

    Args:
        dataset: a registered probe set (``unirepclip.data.registry.dataset_names("probe")``):
            the synthetic world's own splits, scikit-learn's digits (the stratified 60/20/20
            split of ``SklearnDigits``), an image folder (``data_dir/{train,val,test}/<class>/
            <image>``) or a CLIP_benchmark name with a train split (``cifar10``, ...; its val
            split, or a seeded share of its train split where it has none).
        n_train, n_val, n_test: images per split: an endless set renders exactly that many
            (> 0); finite sets take a seeded random subset when smaller than the split (0: all).
        image_size: side of the synthetic images and of the upscaled digits.
        seed: the synthetic world's seed, the digits' split seed and the subsets' seed.
        name: the name in results (default: ``dataset``).
        data_dir, classnames_file: where the files are and an image folder's class names.
        synthetic_task: which of a set's class tasks labels the rows, for a set that has several
            (the synthetic world: ``"shape"`` or ``"colour"``).

    Every split comes from the one dataset specification, :mod:`unirepclip.data.registry`.
    """
    spec = dataset_spec(dataset, "probe")
    sizes = {"train": _check_size("n_train", n_train), "val": _check_size("n_val", n_val),
             "test": _check_size("n_test", n_test)}
    if spec.targets and synthetic_task not in spec.targets:
        raise ValueError(f"synthetic_task={synthetic_task!r} is not one of {spec.targets}")
    zero = [f"n_{s}" for s, n in sizes.items() if n == 0]
    if spec.endless and zero:
        raise ValueError(f"{', '.join(zero)} = 0: {spec.summary} is endless, give a size")
    opts = dict(image_size=image_size, seed=seed, data_dir=data_dir or "",
                classnames_file=classnames_file, target=synthetic_task)
    train, classes = load_classified(dataset, "train", n=sizes["train"], **opts)
    splits = {"train": train, **{s: load_dataset(dataset, s, n=sizes[s], **opts)
                                 for s in PROBE_SPLITS[1:]}}
    folders = {s: getattr(base_dataset(d), "folders", None) for s, d in splits.items()}
    for s in PROBE_SPLITS[1:]:
        if folders[s] != folders["train"]:
            raise ValueError(f"the {s} split of dataset={dataset!r} has other class folders than "
                             f"its train split ({len(folders[s])} vs {len(folders['train'])})")
    task = classes.tasks[synthetic_task if spec.targets else classes.main_task]
    what = f", task {synthetic_task!r}" if spec.targets else ""
    desc = (f"{classes.source}{what}: {'/'.join(str(len(d)) for d in splits.values())} "
            f"train/val/test images")
    return ProbeDataset(name or dataset, dataset, splits, list(task.classnames),
                        list(task.templates), desc)


def _pixel_source(ds: Any) -> Optional[np.ndarray]:
    """The uint8 image stack behind a dataset, when it keeps one (digits: native 8 x 8)."""
    inner = getattr(ds, "dataset", None)
    if inner is not None and hasattr(ds, "indices"):  # a Subset
        arr = _pixel_source(inner)
        return None if arr is None else arr[np.asarray(ds.indices)]
    samples = getattr(ds, "samples", None)
    arr = getattr(samples, "images", None) if samples is not None else None
    if arr is None:
        arr = getattr(ds, "images", None)
    return arr if isinstance(arr, np.ndarray) and arr.dtype == np.uint8 else None


def pixel_matrix(dataset: Any, max_side: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """Raw-pixel features of every readable image of ``dataset``: ``(X, rows)``.

    Images are taken at their native size when their longer side is at most ``max_side`` (the
    8 x 8 digits), else reduced to ``max_side`` x ``max_side`` by box (area) averaging after a
    centre crop to a square; ``max_side=0`` keeps the native size (equal sizes needed). ``X`` is
    :func:`pixel_features` of the stack (values in [0, 1]), ``rows`` the dataset rows kept.
    """
    from PIL import Image, ImageOps

    max_side = _check_size("max_side", max_side)
    arr = _pixel_source(dataset)
    if arr is not None:
        rows = np.arange(len(arr))
        if max_side and max(arr.shape[1:3]) > max_side:
            mode = "L" if arr.ndim == 3 else "RGB"
            arr = np.stack([np.asarray(ImageOps.fit(Image.fromarray(a, mode), (max_side, max_side),
                                                    Image.BOX)) for a in arr])
        return pixel_features(arr), rows
    images, rows = [], []
    for i in range(len(dataset)):
        img = dataset[i][0]
        if not isinstance(img, Image.Image):
            continue  # an unreadable file: the feature extraction skips it too
        img = img.convert("RGB")
        if max_side and max(img.size) > max_side:
            img = ImageOps.fit(img, (max_side, max_side), Image.BOX)
        images.append(np.asarray(img))
        rows.append(i)
    if not images:
        raise ValueError(f"{dataset!r}: no image could be read")
    sizes = {a.shape for a in images}
    if len(sizes) > 1:
        raise ValueError(f"{dataset!r}: images of {len(sizes)} different sizes; give max_side > 0")
    return pixel_features(np.stack(images)), np.asarray(rows, dtype=np.int64)


def pixel_splits(data: ProbeDataset, max_side: int = 16) -> FeatureSplits:
    """:func:`pixel_matrix` of the three splits of ``data`` with their labels."""
    parts: List[np.ndarray] = []
    for s in PROBE_SPLITS:
        X, rows = pixel_matrix(data.splits[s], max_side)
        parts += [X, data.labels(s)[rows]]
    return FeatureSplits(*parts)


def feature_spaces(data: Mapping[str, ProbeDataset], towers: Mapping[str, Tuple[Any, Any]], *,
                   feature_kind: str = "pre_projection", center: bool = True,
                   pixel_size: int = 8, main: str = "trained",
                   zeroshot_datasets: Sequence[str] = (), tokenizer: Any = None,
                   device: Any = "cpu", **extract_kw: Any) -> Dict[str, Any]:
    """The feature spaces of every dataset that :func:`compare_many` probes, and the zero-shot
    top-1 on the same test splits.

    Args:
        data: ``{name: ProbeDataset}`` (:func:`probe_dataset`).
        towers: ``{space name: (image tower, its features.model_identity or None)}``; every
            tower's ``feature_kind`` features of every split, minus the training split's mean
            feature vector when ``center`` (:meth:`FeatureSplits.centered`).
        pixel_size: the raw-pixel space ``"pixel_baseline"`` (:func:`pixel_splits`).
        main, zeroshot_datasets, tokenizer: the datasets whose class names the text tower knows
            are also classified zero-shot by the ``main`` tower (its normalized test embeddings,
            the dataset's classnames and templates; :func:`unirepclip.eval.zeroshot.evaluate`);
            a name that ``data`` lacks is not probed, so it is ignored.
        device, extract_kw: for :func:`unirepclip.features.extract_image_features` (transform,
            batch size, precision, cache, ...); ``device`` for the zero-shot classifier too.

    Returns:
        ``{"spaces": {dataset: {space: FeatureSplits}}, "zeroshot_acc1": {dataset: top-1},
        "n_features": {dataset: {space: feature dimension}}}``.
    """
    from unirepclip.eval import zeroshot
    from unirepclip.features import extract_image_features

    if main not in towers:
        raise ValueError(f"main={main!r} is not among the towers {list(towers)}")
    spaces: Dict[str, Dict[str, FeatureSplits]] = {}
    zeroshot_acc1: Dict[str, float] = {}
    for name, ds in data.items():
        spaces[name] = {}
        for tower, (model, ident) in towers.items():
            sets = {split: extract_image_features(model, part, model_ident=ident, device=device,
                                                  **extract_kw)
                    for split, part in ds.splits.items()}
            fs = FeatureSplits.from_feature_sets(sets, feature_kind)
            spaces[name][tower] = fs.centered() if center else fs
            if tower == main and name in zeroshot_datasets:
                zs = zeroshot.evaluate(model, tokenizer, sets["test"].embeddings, fs.y_test,
                                       ds.classnames, ds.templates, device=device)
                zeroshot_acc1[name] = zs["acc1"]
        spaces[name]["pixel_baseline"] = pixel_splits(ds, pixel_size)
    n_features = {d: {s: int(fs.X_train.shape[1]) for s, fs in sp.items()}
                  for d, sp in spaces.items()}
    return {"spaces": spaces, "zeroshot_acc1": zeroshot_acc1, "n_features": n_features}


def _full_task(data: FeatureSplits, knn_k: Optional[int], params: Dict[str, Any]
               ) -> Dict[str, Any]:
    return evaluate(*data, knn_k=knn_k, **params)


def _kshot_task(data: FeatureSplits, k: int, seed: int, params: Dict[str, Any]
                ) -> Tuple[float, float]:
    r = kshot_evaluate(*data, shots=(k,), seeds=(seed,), **params)[k]
    return r["accs"][0], r["best_C"][0]


def _ready() -> bool:
    return True


def _parallel(n_jobs: Optional[int]):
    # One construction for every call, so that joblib reuses the same worker processes.
    # max_nbytes=None: arrays travel pickled, not as read-only memory maps (torch warns on those)
    from joblib import Parallel
    return Parallel(n_jobs=n_jobs, return_as="generator", max_nbytes=None)


def start_workers(n_jobs: Optional[int] = 2):
    """Start the worker processes :func:`compare` will use, without waiting for them.

    A worker's start-up (importing torch and this package) takes seconds; called early, it
    overlaps other work such as feature extraction on the main process. Returns joblib's
    generator (iterate it to wait for the workers); a no-op for ``n_jobs`` of 1 or None.
    """
    from joblib import delayed
    if n_jobs in (None, 1):
        return iter(())
    return _parallel(n_jobs)(delayed(_ready)() for _ in range(abs(int(n_jobs))))


def _plan(spaces: Mapping[str, FeatureSplits], main: str, shots: Sequence[int],
          seeds: Sequence[int], kshot_spaces: Optional[Sequence[str]],
          space_params: Optional[Mapping[str, Mapping[str, Any]]], zeroshot_acc1: Optional[float],
          probe_params: Mapping[str, Any], where: str = ""):
    """Check one dataset's arguments; return (the result's header, k values, k-shot spaces,
    per-space probe parameters)."""
    at = f" ({where})" if where else ""
    if main not in spaces:
        raise ValueError(f"main={main!r} is not among the spaces {list(spaces)}{at}")
    extra = set(space_params or {}) - set(spaces)
    if extra:
        raise ValueError(f"space_params names unknown space(s) {sorted(extra)}{at}")
    kshot_names = list(spaces) if kshot_spaces is None else list(kshot_spaces)
    unknown = [s for s in kshot_names if s not in spaces]
    if unknown:
        raise ValueError(f"kshot_spaces names unknown space(s) {unknown}{at}")
    if len(shots) and not len(seeds):
        raise ValueError("seeds is empty")
    ref = spaces[main]
    y_tr, y_te = to_numpy(ref.y_train, "y_train"), to_numpy(ref.y_test, "y_test")
    smallest = int(np.unique(y_tr, return_counts=True)[1].min())
    feasible = [int(k) for k in shots if int(k) <= smallest]
    _, test_counts = np.unique(y_te, return_counts=True)
    head: Dict[str, Any] = {
        "n_train": int(len(ref.y_train)), "n_val": int(len(ref.y_val)),
        "n_test": int(len(ref.y_test)), "n_classes": int(len(np.unique(y_tr))),
        "majority_acc1": float(test_counts.max() / len(y_te)),
    }
    if zeroshot_acc1 is not None:
        head["zeroshot_acc1"] = float(zeroshot_acc1)
    if len(feasible) < len(shots):
        head["kshot_skipped"] = [int(k) for k in shots if int(k) > smallest]
    params = {name: {**probe_params, **(space_params or {}).get(name, {})} for name in spaces}
    return head, feasible, [n for n in spaces if n in kshot_names], params


def _figures(r: Mapping[str, Any], seed: int) -> Dict[str, Any]:
    """One space's recorded figures from :func:`evaluate`'s dict: the test top-1 and mean
    per-class recall with their 95% intervals (``_ci``: Wilson's; the BCa bootstrap over the test
    images, seeded), the C kept and CLIP's, the fits that did not converge, the sweep with each
    C's validation items lost and won against CLIP's C, and the validation split's chance level."""
    acc = proportion_interval(r["test_correct"])
    mpcr = mean_per_class_recall_interval(r["test_labels"], r["test_predictions"], seed=seed)
    return {"acc1": r["acc1"], "acc1_ci": [acc.low, acc.high],
            "mean_per_class_recall": r["mean_per_class_recall"],
            "mean_per_class_recall_ci": [mpcr.low, mpcr.high],
            "best_C": r["best_C"], "clip_best_C": r["clip_best_C"],
            "not_converged": list(r["not_converged"]),
            "sweep": [[float(c), float(a)] for c, a in r["sweep"]],
            "sweep_discordant": [[int(a), int(b)] for a, b in r["sweep_discordant"]],
            "val_chance": r["val_chance"]}


def _paired(main: Mapping[str, Any], other: Mapping[str, Any], name: str, seed: int
            ) -> Dict[str, Any]:
    """The main probe against a baseline on the same test images: exact McNemar, the difference
    of top-1 (main - baseline) with its paired-bootstrap interval, a plain verdict."""
    t = paired_accuracy_test(main["test_correct"], other["test_correct"], seed=seed,
                             names=("the trained tower's probe", f"the {name} probe"))
    return {"main_only": t.details["a_only"], "baseline_only": t.details["b_only"],
            "p_value": t.p_value, "difference_ci": [t.difference.low, t.difference.high],
            "verdict": t.verdict}


def compare_many(datasets: Mapping[str, Mapping[str, FeatureSplits]], *, main: str,
                 knn_k: Optional[int] = 20, shots: Sequence[int] = (1, 2, 4, 8, 16),
                 seeds: Sequence[int] = (0, 1, 2), kshot_spaces: Optional[Sequence[str]] = None,
                 space_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 zeroshot_acc1: Optional[Mapping[str, float]] = None,
                 n_jobs: Optional[int] = 1, progress: bool = False,
                 **probe_params: Any) -> Dict[str, Dict[str, Any]]:
    """:func:`compare` for several datasets at once (``{dataset: {space: FeatureSplits}}``,
    ``zeroshot_acc1`` by dataset), every fit of every dataset in one pool of ``n_jobs``
    processes. Returns ``{dataset: compare result}``."""
    from joblib import delayed

    plans = {d: _plan(spaces, main, shots, seeds, kshot_spaces, space_params,
                      (zeroshot_acc1 or {}).get(d), probe_params,
                      where=f"dataset {d!r}" if len(datasets) > 1 else "")
             for d, spaces in datasets.items()}
    unknown = set(zeroshot_acc1 or {}) - set(datasets)
    if unknown:
        raise ValueError(f"zeroshot_acc1 names unknown dataset(s) {sorted(unknown)}")
    # every fit is independent: one flat task list, the slow full sweeps first
    tasks = [(d, "full", n, None, None) for d in datasets for n in datasets[d]]
    tasks += [(d, "kshot", n, k, s) for d, (_, ks, names, _) in plans.items() for n in names
              for k in reversed(ks) for s in seeds]

    def job(d, kind, n, k, s):
        data, params = datasets[d][n], plans[d][3][n]
        if kind == "full":
            return delayed(_full_task)(data, knn_k, params)
        return delayed(_kshot_task)(data, k, s, params)

    runs = _parallel(n_jobs)(job(*t) for t in tasks)
    done = dict(zip(tasks, tqdm(runs, total=len(tasks), desc="probes", disable=not progress,
                                leave=False)))
    out: Dict[str, Dict[str, Any]] = {}
    for d, spaces in datasets.items():
        head, feasible, kshot_names, _ = plans[d]
        res = dict(head)
        seed = int(probe_params.get("random_state") or 0)
        for name, data in spaces.items():
            pre = "" if name == main else f"{name}_"
            r = done[(d, "full", name, None, None)]
            res.update({pre + k: v for k, v in _figures(r, seed).items()})
            res[pre + "n_features"] = int(np.shape(data.X_train)[1])
            if knn_k is not None:
                res[pre + "knn_acc1"] = r["knn_acc1"]
            if name != main:  # paired on the same test items: is the difference evidence?
                res[pre + "paired_test"] = _paired(done[(d, "full", main, None, None)], r,
                                                   name.replace("_", " "), seed)
            if feasible and name in kshot_names:
                ks: Dict[str, Any] = {}
                for k in feasible:
                    runs_k = [done[(d, "kshot", name, k, s)] for s in seeds]
                    a = np.asarray([acc for acc, _ in runs_k])
                    ks[str(k)] = {"mean": float(a.mean()),
                                  "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                                  "accs": a.tolist(), "best_C": [c for _, c in runs_k]}
                res[pre + "kshot"] = ks
        out[d] = res
    return out


def compare(spaces: Mapping[str, FeatureSplits], *, main: str, knn_k: Optional[int] = 20,
            shots: Sequence[int] = (1, 2, 4, 8, 16), seeds: Sequence[int] = (0, 1, 2),
            kshot_spaces: Optional[Sequence[str]] = None,
            space_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
            zeroshot_acc1: Optional[float] = None, n_jobs: Optional[int] = 1,
            progress: bool = False, **probe_params: Any) -> Dict[str, Any]:
    """Linear probe, kNN probe and k-shot probes in several feature spaces of one dataset.

    Args:
        spaces: ``{name: FeatureSplits}``, e.g. ``{"trained": ..., "random_tower": ...,
            "pixel_baseline": ...}``; every space is probed the same way.
        main: the space whose figures carry no prefix (the model under study).
        knn_k: neighbours of the kNN probe (None: no kNN).
        shots, seeds: the k-shot probes (as :func:`kshot_evaluate`: C swept on the full
            validation split, the final model fitted on the k-shot subset only); a k larger than
            the smallest training class is left out and listed in ``kshot_skipped``.
        kshot_spaces: spaces that get k-shot probes (default: all).
        space_params: probe parameters for one space over ``probe_params`` (e.g. raw pixels
            without L2 normalization).
        zeroshot_acc1: the zero-shot top-1 on the same test split, recorded beside the probes.
        n_jobs: processes for the independent fits (joblib; every fit is deterministic, so the
            numbers do not depend on it). Keep 1 when the probes run on a GPU.
        progress: a tqdm bar over the fits.
        probe_params: :class:`LinearProbe` parameters for every space.

    Returns:
        A JSON-ready dict. For ``main``: ``acc1``, ``mean_per_class_recall``, each with its 95%
        interval (``acc1_ci``: Wilson's; ``mean_per_class_recall_ci``: the BCa bootstrap over
        the test images seeded with ``random_state``), ``best_C`` (the C the ``selection`` rule
        kept), ``clip_best_C`` (CLIP's rule on the same sweep), ``not_converged`` (fits still
        unconverged: C values, ``"final"``), ``sweep`` ([[C, val accuracy], ...]),
        ``sweep_discordant`` ([[lost, won], ...] against CLIP's C), ``val_chance``, ``knn_acc1``, ``kshot`` (``{"1": {"mean", "std",
        "accs", "best_C"}, ...}``, std over seeds with ddof=1); the same for every other space
        with ``<name>_`` in front (``random_tower_acc1``, ``pixel_baseline_acc1``, ...);
        ``n_features`` / ``<name>_n_features``; ``<name>_paired_test`` for every other space
        (``main_only``, ``baseline_only``, McNemar's exact ``p_value``, ``difference_ci`` of
        main - baseline top-1, ``verdict``: "not distinguishable" where p >= 0.05); and ``n_train``, ``n_val``, ``n_test``,
        ``n_classes``, ``majority_acc1`` (a constant guess of the commonest test class),
        ``zeroshot_acc1``.
    """
    zs = None if zeroshot_acc1 is None else {"_": zeroshot_acc1}
    return compare_many({"_": spaces}, main=main, knn_k=knn_k, shots=shots, seeds=seeds,
                        kshot_spaces=kshot_spaces, space_params=space_params, zeroshot_acc1=zs,
                        n_jobs=n_jobs, progress=progress, **probe_params)["_"]


# ---------------------------------------------------------------------------------------------
# Reading the comparison: the probe's lead over each baseline, with its sampling noise
# ---------------------------------------------------------------------------------------------

#: The baselines :func:`probe_gaps` measures the main probe against: (name, result key).
GAP_BASELINES = (("random_tower", "random_tower_acc1"), ("pixel_baseline", "pixel_baseline_acc1"),
                 ("zeroshot", "zeroshot_acc1"))


def binomial_se(p: float, n: int) -> float:
    """The standard error sqrt(p (1 - p) / n) of an accuracy p measured on n independent test
    items (the binomial sampling noise of a test split)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of test items")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p!r}: an accuracy lies in [0, 1]")
    return math.sqrt(p * (1.0 - p) / int(n))


def probe_gaps(by_dataset: Mapping[str, Mapping[str, Any]],
               baselines: Sequence[Tuple[str, str]] = GAP_BASELINES) -> Dict[str, Dict[str, Any]]:
    """The main space's linear probe against each baseline, per dataset (:func:`compare`
    results).

    Returns ``{dataset: {"acc1", "best_C", "n_test", "se" (:func:`binomial_se` of acc1 on the
    test split), "gaps": {baseline: acc1 - baseline's acc1}}}``, as fractions; a baseline a
    result lacks is left out of its ``gaps``.
    """
    out: Dict[str, Dict[str, Any]] = {}
    for name, r in by_dataset.items():
        missing = [k for k in ("acc1", "best_C", "n_test") if k not in r]
        if missing:
            raise KeyError(f"probe_gaps: the result of {name!r} lacks {missing}")
        out[name] = {"acc1": float(r["acc1"]), "best_C": float(r["best_C"]),
                     "n_test": int(r["n_test"]), "se": binomial_se(r["acc1"], r["n_test"]),
                     "gaps": {b: float(r["acc1"] - r[key]) for b, key in baselines if key in r}}
    return out
