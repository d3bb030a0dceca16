"""Linear and kNN probes on frozen features, with the CLIP paper's protocol.

Linear probe (Radford et al. 2021, appendix A.3): L2-regularized multinomial logistic regression
fitted with L-BFGS (up to 1000 iterations) on frozen features. The inverse regularization C is
chosen on a validation split by a coarse-to-fine search over 1e-6 .. 1e6 at a resolution of 8
steps per decade (96 steps over 12 decades): evaluate [1e-6, 1e-4, ..., 1e6], then repeatedly
halve the log-interval around the best value until a step is 1/8 of a decade. The chosen C is
refitted on train + validation and scored once on the test split.

Two solvers minimize the same objective, scikit-learn's for ``LogisticRegression(C=C)``
(scikit-learn 1.3 .. 1.9, ``solver="lbfgs"``, L2 penalty)::

    C * sum_i loss(x_i, y_i) + 0.5 * ||W||_F^2      (the intercept b is not penalized)

where ``loss`` is the softmax cross-entropy over all K classes (W is K x D) for K >= 3, and the
binary logistic loss with one weight vector (W is 1 x D) for K = 2, as scikit-learn does:

* ``backend="sklearn"``: ``sklearn.linear_model.LogisticRegression``.
* ``backend="torch"``: full-batch ``torch.optim.LBFGS`` (strong-Wolfe line search, history 10
  as in SciPy's L-BFGS-B) on ``device``, the loss summed over row chunks so that memory stays
  bounded for ImageNet-train-sized problems (1.28M x 1536 features, 1000 classes), which
  scikit-learn's single-machine solver cannot handle in reasonable time. Both solvers stop when
  the largest gradient entry of the per-sample-averaged objective falls below ``tol``.
* ``backend="auto"``: torch when ``n_samples * n_features * n_classes`` exceeds
  ``size_threshold`` (default :data:`TORCH_SIZE_THRESHOLD` = 1e9, e.g. 100k samples x 1000
  features x 10 classes, where one scikit-learn fit takes minutes; ImageNet-train is 2e12),
  scikit-learn otherwise.

kNN probe (Caron et al. 2021, DINO; Wu et al. 2018): L2-normalized features, cosine similarity to
every training feature, the k nearest vote for their class with weight exp(sim / 0.07).

Building blocks of notebook 05: :func:`probe_dataset` (train / val / test splits of the synthetic
world, scikit-learn's digits or an image folder), :class:`FeatureSplits` (one feature space of a
dataset: the tower's features, optionally centred, or :func:`pixel_splits` for raw pixels),
:func:`compare` / :func:`compare_many` (every probe in every space, one JSON-ready dict per
dataset, the fits spread over ``n_jobs`` processes), :func:`comparison_table` and the figures
:func:`plot_comparison`, :func:`plot_sweep`, :func:`plot_kshot`.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from unirepclip.eval.metrics import ArrayLike, check_features, mcnemar_exact, mean_per_class_recall, to_numpy

__all__ = [
    "TORCH_SIZE_THRESHOLD", "SWEEP_RANGE", "SWEEP_STEPS_PER_DECADE",
    "sweep_grid", "clip_sweep", "LinearProbe", "KNNProbe", "kshot_indices", "kshot_evaluate",
    "pixel_features", "evaluate",
    "PROBE_DATASETS", "FEATURE_KINDS", "FeatureSplits", "feature_matrix", "ProbeDataset",
    "probe_dataset", "pixel_matrix", "pixel_splits", "start_workers", "compare", "compare_many",
    "TABLE_COLUMNS", "comparison_table", "paired_tests_table",
    "plot_sweep", "plot_kshot", "plot_comparison",
]

TORCH_SIZE_THRESHOLD = 10 ** 9
SWEEP_RANGE = (-6, 6)            # log10 C bounds of the CLIP sweep
SWEEP_COARSE_STEP = 2            # decades between the first points
SWEEP_STEPS_PER_DECADE = 8       # final resolution: 12 decades x 8 = 96 steps


# ---------------------------------------------------------------------------------------------
# The regularization sweep
# ---------------------------------------------------------------------------------------------

def _c_of(unit: int) -> float:
    # C on the grid as 10 ** (unit / 8): integers keep the points exact and comparable
    return float(10.0 ** (unit / SWEEP_STEPS_PER_DECADE))


def sweep_grid() -> np.ndarray:
    """All 97 values of C the CLIP sweep can visit (1e-6 .. 1e6, 8 per decade)."""
    lo, hi = (e * SWEEP_STEPS_PER_DECADE for e in SWEEP_RANGE)
    return np.array([_c_of(u) for u in range(lo, hi + 1)])


def clip_sweep(score: Callable[[float], float], *, progress: bool = False
               ) -> Tuple[float, List[Tuple[float, float]]]:
    """The CLIP paper's coarse-to-fine search for the C that maximizes ``score(C)``.

    Evaluates C = 1e-6, 1e-4, ..., 1e6, then, with the step halved each round (2 decades, 1,
    1/2, 1/4, 1/8), the two neighbours of the best C so far that lie inside the range and were
    not evaluated yet. The best C is the argmax over every evaluation; equal scores go to the
    smaller C (the stronger regularization). At most 7 + 2 * 4 = 15 evaluations; the answer is a
    point of :func:`sweep_grid` and equals the grid's argmax when ``score`` is unimodal in log C.

    Args:
        score: the validation accuracy (or any higher-is-better figure) of a model fitted with C.
        progress: show a tqdm bar.

    Returns:
        ``(best_C, [(C, score), ...])`` with the evaluations sorted by C.
    """
    lo, hi = (e * SWEEP_STEPS_PER_DECADE for e in SWEEP_RANGE)
    step = SWEEP_COARSE_STEP * SWEEP_STEPS_PER_DECADE
    seen: Dict[int, float] = {}
    bar = tqdm(total=None, desc="C sweep", disable=not progress, leave=False)

    def visit(u: int) -> None:
        if lo <= u <= hi and u not in seen:
            s = float(score(_c_of(u)))
            if math.isnan(s):
                raise ValueError(f"score returned NaN for C={_c_of(u):g}")
            seen[u] = s
            bar.update(1)
            bar.set_postfix(C=f"{_c_of(u):.3g}", score=f"{s:.4f}")

    def best() -> int:
        return max(seen, key=lambda u: (seen[u], -u))

    for u in range(lo, hi + 1, step):
        visit(u)
    while step > 1:
        step //= 2
        b = best()
        visit(b - step)
        visit(b + step)
    bar.close()
    return _c_of(best()), [(_c_of(u), seen[u]) for u in sorted(seen)]


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

def _as_features(X: ArrayLike, name: str, normalize: bool = False) -> np.ndarray:
    return check_features(X, name, normalize)


def _as_labels(y: ArrayLike, name: str, n: int) -> np.ndarray:
    t = to_numpy(y, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {t.shape}")
    if len(t) != n:
        raise ValueError(f"{name} has {len(t)} labels for {n} samples")
    return t


def _py(v: Any) -> Any:
    # NumPy scalars print as np.int64(3) since NumPy 2; messages should show the plain value
    return v.item() if isinstance(v, np.generic) else v


def _encode(y: np.ndarray, classes: np.ndarray, name: str) -> np.ndarray:
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != y
    if unknown.any():
        raise ValueError(f"{name} holds label {_py(y[unknown][0])!r}, which is not among the "
                         f"training labels {classes.tolist()[:20]}")
    return idx.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Solvers: both return (coef (K' x D), intercept (K',), n_iter) for the same objective
# ---------------------------------------------------------------------------------------------

@dataclass
class _Fit:
    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int


class _SklearnSolver:
    name = "sklearn"

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int, p: "LinearProbe"):
        self.X, self.y, self.p = X, y, p

    def fit(self, C: float) -> _Fit:
        clf = LogisticRegression(C=C, solver="lbfgs", max_iter=self.p.max_iter, tol=self.p.tol,
                                 random_state=self.p.random_state)
        clf.fit(self.X, self.y)
        return _Fit(clf.coef_.copy(), clf.intercept_.copy(), int(np.max(clf.n_iter_)))


class _TorchSolver:
    name = "torch"
    chunk_elements = 1 << 24  # logits held at once per chunk (64 MiB in float32)

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int, p: "LinearProbe"):
        self.device = torch.device(p.device)
        self.dtype = _torch_dtype(p.dtype, self.device)
        self.X = torch.as_tensor(X).to(self.device, self.dtype)
        self.binary = n_classes == 2
        self.y = torch.as_tensor(y).to(self.device)
        self.yf = self.y.to(self.dtype)
        self.n_out = 1 if self.binary else n_classes
        self.chunk = max(1, self.chunk_elements // max(self.n_out, 1))
        self.p = p

    def fit(self, C: float) -> _Fit:
        n, d = self.X.shape
        W = torch.zeros(self.n_out, d, dtype=self.dtype, device=self.device, requires_grad=True)
        b = torch.zeros(self.n_out, dtype=self.dtype, device=self.device, requires_grad=True)
        eps = torch.finfo(self.dtype).eps
        # history 10 and the stopping rules mirror SciPy's L-BFGS-B as scikit-learn calls it
        # (gtol = tol on the mean-scaled objective, ftol = 64 eps)
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=self.p.max_iter,
                                max_eval=2 * self.p.max_iter, tolerance_grad=self.p.tol,
                                tolerance_change=64 * eps, history_size=10,
                                line_search_fn="strong_wolfe")
        # the objective divided by C * n (same minimizer): per-sample scale keeps tol meaningful
        lam = 1.0 / (C * n)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            total = torch.zeros((), dtype=self.dtype, device=self.device)
            for a in range(0, n, self.chunk):
                z = torch.addmm(b, self.X[a:a + self.chunk], W.T)
                if self.binary:
                    loss = F.binary_cross_entropy_with_logits(z[:, 0], self.yf[a:a + self.chunk],
                                                              reduction="sum")
                else:
                    loss = F.cross_entropy(z, self.y[a:a + self.chunk], reduction="sum")
                (loss / n).backward()  # gradients accumulate chunk by chunk: one full batch
                total += loss.detach()
            reg = 0.5 * lam * (W * W).sum()
            reg.backward()
            return total / n + reg.detach()

        with torch.enable_grad():
            opt.step(closure)
        n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
        return _Fit(W.detach().cpu().double().numpy(), b.detach().cpu().double().numpy(), n_iter)


def _torch_dtype(dtype: Optional[Union[str, torch.dtype]], device: torch.device) -> torch.dtype:
    if dtype is None:
        # float64 matches scikit-learn on the CPU; float32 is what accelerators run fast
        return torch.float64 if device.type == "cpu" else torch.float32
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")
        return getattr(torch, dtype)
    return dtype


def _decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    return X @ coef.T.astype(X.dtype, copy=False) + intercept.astype(X.dtype, copy=False)


def _predict_index(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    z = _decision(X, coef, intercept)
    if coef.shape[0] == 1:
        return (z[:, 0] > 0).astype(np.int64)
    return z.argmax(axis=1)


# ---------------------------------------------------------------------------------------------
# The linear probe
# ---------------------------------------------------------------------------------------------

class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic-regression probe with the CLIP paper's regularization sweep.

    Args:
        C: inverse L2 regularization; None chooses it by ``sweep`` on the validation split.
        max_iter: L-BFGS iterations per fit (CLIP: 1000).
        sweep: ``"clip"`` (coarse-to-fine, :func:`clip_sweep`), ``"grid"`` (all 97 points of
            :func:`sweep_grid`, for a full accuracy-vs-C curve) or a sequence of C values.
        backend: ``"auto"``, ``"sklearn"`` or ``"torch"`` (see the module docstring).
        random_state: passed to scikit-learn (L-BFGS itself is deterministic).
        device: where the torch backend runs (``"cpu"``, ``"cuda"``, ...).
        normalize: L2-normalize every feature vector first (fit and predict alike).
        tol: gradient tolerance of both solvers (scikit-learn's default 1e-4).
        refit: after the sweep, refit the chosen C on train + validation (the CLIP protocol);
            False keeps the validation data out of the final model (few-shot probes).
        size_threshold: ``n_samples * n_features * n_classes`` above which ``"auto"`` picks torch.
        dtype: the torch backend's float type; None: float64 on the CPU, float32 elsewhere.
        progress: tqdm bar over the sweep.

    Attributes (after ``fit``): ``classes_``, ``coef_`` ((1, D) for two classes, else (K, D)),
    ``intercept_``, ``best_C_``, ``sweep_`` (list of (C, validation accuracy) sorted by C; empty
    when C was given), ``backend_``, ``n_iter_`` (of the final fit), ``n_features_in_``,
    ``fit_time_`` (seconds, sweep included).
    """

    def __init__(self, C: Optional[float] = None, max_iter: int = 1000,
                 sweep: Union[str, Sequence[float]] = "clip", backend: str = "auto",
                 random_state: Optional[int] = 0, device: Union[str, torch.device] = "cpu",
                 normalize: bool = False, tol: float = 1e-4, refit: bool = True,
                 size_threshold: float = TORCH_SIZE_THRESHOLD,
                 dtype: Optional[Union[str, torch.dtype]] = None, progress: bool = False):
        self.C = C
        self.max_iter = max_iter
        self.sweep = sweep
        self.backend = backend
        self.random_state = random_state
        self.device = device
        self.normalize = normalize
        self.tol = tol
        self.refit = refit
        self.size_threshold = size_threshold
        self.dtype = dtype
        self.progress = progress

    # -- helpers ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.backend not in ("auto", "sklearn", "torch"):
            raise ValueError(f"backend must be 'auto', 'sklearn' or 'torch', got {self.backend!r}")
        if self.C is not None and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number or None, got {self.C!r}")
        if isinstance(self.sweep, str):
            if self.sweep not in ("clip", "grid"):
                raise ValueError(f"sweep must be 'clip', 'grid' or a sequence of C values, got "
                                 f"{self.sweep!r}")
        elif not len(self.sweep) or any(not c > 0 for c in self.sweep):
            raise ValueError(f"sweep: every C must be positive, got {list(self.sweep)!r}")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")

    def _choose_backend(self, n: int, d: int, k: int) -> str:
        if self.backend != "auto":
            return self.backend
        return "torch" if n * d * k > self.size_threshold else "sklearn"

    def _solver(self, X: np.ndarray, y: np.ndarray):
        cls = _TorchSolver if self.backend_ == "torch" else _SklearnSolver
        return cls(X, y, len(self.classes_), self)

    def _run_sweep(self, solver, X_val: np.ndarray, y_val: np.ndarray
                   ) -> Tuple[float, List[Tuple[float, float]]]:
        hit_limit = []

        def score(C: float) -> float:
            with warnings.catch_warnings():
                # one summary warning below instead of one per fit
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit = solver.fit(C)
            if fit.n_iter >= self.max_iter:
                hit_limit.append(C)
            return float(np.mean(_predict_index(X_val, fit.coef, fit.intercept) == y_val))

        if isinstance(self.sweep, str) and self.sweep == "clip":
            best, hist = clip_sweep(score, progress=self.progress)
        else:
            Cs = sweep_grid() if isinstance(self.sweep, str) else sorted(float(c) for c in self.sweep)
            hist = [(C, score(C)) for C in tqdm(Cs, desc="C sweep", disable=not self.progress,
                                                leave=False)]
            best = max(hist, key=lambda t: (t[1], -t[0]))[0]
        if hit_limit:
            warnings.warn(f"LinearProbe: {len(hit_limit)} of {len(hist)} sweep fits stopped at "
                          f"max_iter={self.max_iter} (C = {', '.join(f'{c:.3g}' for c in hit_limit)})",
                          ConvergenceWarning, stacklevel=3)
        return best, hist

    # -- estimator API ------------------------------------------------------------------------
    def fit(self, X_train: ArrayLike, y_train: ArrayLike, X_val: Optional[ArrayLike] = None,
            y_val: Optional[ArrayLike] = None) -> "LinearProbe":
        """Sweep C on (X_val, y_val) when ``C`` is None, then fit the final model.

        The final model is fitted on train + validation when ``refit`` (and validation data is
        given), on train alone otherwise.
        """
        self._check_params()
        t0 = time.perf_counter()
        Xtr = _as_features(X_train, "X_train", self.normalize)
        ytr_raw = _as_labels(y_train, "y_train", len(Xtr))
        self.classes_ = np.unique(ytr_raw)
        if len(self.classes_) < 2:
            raise ValueError(f"y_train has {len(self.classes_)} class; a probe needs at least 2")
        ytr = _encode(ytr_raw, self.classes_, "y_train")
        has_val = X_val is not None or y_val is not None
        if has_val:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be given together")
            Xva = _as_features(X_val, "X_val", self.normalize)
            if Xva.shape[1] != Xtr.shape[1]:
                raise ValueError(f"X_val has {Xva.shape[1]} features, X_train {Xtr.shape[1]}")
            yva = _encode(_as_labels(y_val, "y_val", len(Xva)), self.classes_, "y_val")
        elif self.C is None:
            raise ValueError("C=None chooses C on a validation split: pass X_val and y_val, "
                             "or set C")
        n_total = len(Xtr) + (len(Xva) if has_val else 0)
        self.backend_ = self._choose_backend(n_total, Xtr.shape[1], len(self.classes_))
        self.n_features_in_ = Xtr.shape[1]

        if self.C is None:
            solver = self._solver(Xtr, ytr)
            self.best_C_, self.sweep_ = self._run_sweep(solver, Xva, yva)
            del solver  # frees device memory before the refit
        else:
            self.best_C_, self.sweep_ = float(self.C), []
        if has_val and self.refit:
            Xfit, yfit = np.concatenate([Xtr, Xva.astype(Xtr.dtype)]), np.concatenate([ytr, yva])
        else:
            Xfit, yfit = Xtr, ytr
        fit = self._solver(Xfit, yfit).fit(self.best_C_)
        if fit.n_iter >= self.max_iter:
            warnings.warn(f"LinearProbe: the final fit (C={self.best_C_:.3g}) stopped at "
                          f"max_iter={self.max_iter}", ConvergenceWarning, stacklevel=2)
        self.coef_, self.intercept_, self.n_iter_ = fit.coef, fit.intercept, fit.n_iter
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _check_fitted(self, X: ArrayLike, name: str = "X") -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("LinearProbe is not fitted yet; call fit first")
        x = _as_features(X, name, self.normalize)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {x.shape[1]} features, the probe was fitted on "
                             f"{self.n_features_in_}")
        return x

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Logits: (N,) for two classes (positive = ``classes_[1]``), else (N, K)."""
        z = _decision(self._check_fitted(X), self.coef_, self.intercept_)
        return z[:, 0] if self.coef_.shape[0] == 1 else z

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """(N, K) class probabilities (sigmoid for two classes, softmax otherwise)."""
        z = self.decision_function(X).astype(np.float64)
        if z.ndim == 1:
            p1 = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (values of ``classes_``)."""
        return self.classes_[_predict_index(self._check_fitted(X), self.coef_, self.intercept_)]

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight=None) -> float:
        """Accuracy on (X, y) as a fraction (``sample_weight`` is not supported)."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by the probes' score")
        yt = _as_labels(y, "y", len(to_numpy(X, "X")))
        return float(np.mean(self.predict(X) == yt))


# ---------------------------------------------------------------------------------------------
# The kNN probe
# ---------------------------------------------------------------------------------------------

class KNNProbe(ClassifierMixin, BaseEstimator):
    """Weighted k-nearest-neighbour classifier (DINO's evaluation).

    Args:
        k: neighbours that vote (clipped to the training size); DINO reports 10, 20, 100, 200.
        temperature: a neighbour with similarity s votes with weight exp(s / temperature).
        normalize: L2-normalize features so that similarity is cosine (the protocol); False
            uses raw dot products.
        batch_size: test rows compared with the whole training set at once.
        device: where the similarity matrix is computed.

    Ties between classes go to the first class in ``classes_``.
    """

    def __init__(self, k: int = 20, temperature: float = 0.07, normalize: bool = True,
                 batch_size: int = 1024, device: Union[str, torch.device] = "cpu"):
        self.k = k
        self.temperature = temperature
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device

    def fit(self, X: ArrayLike, y: ArrayLike) -> "KNNProbe":
        """Store the (normalized) training features and their labels."""
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        x = _as_features(X, "X", self.normalize)
        yr = _as_labels(y, "y", len(x))
        self.classes_ = np.unique(yr)
        dev = torch.device(self.device)
        self.train_features_ = torch.as_tensor(x, dtype=torch.float32).to(dev)
        self.train_labels_ = torch.as_tensor(_encode(yr, self.classes_, "y")).to(dev)
        self.n_features_in_ = x.shape[1]
        return self

    def votes(self, X: ArrayLike) -> np.ndarray:
        """(N, K) summed vote weights; rows rescaled by a positive constant (shifting the
        similarities by the row's best one keeps exp() finite without changing any argmax)."""
        if not hasattr(self, "train_features_"):
            raise RuntimeError("KNNProbe is not fitted yet; call fit first")
        x = _as_features(X, "X", self.normalize)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, the probe was fitted on "
                             f"{self.n_features_in_}")
        bank, labels = self.train_features_, self.train_labels_
        k = min(int(self.k), len(bank))
        out = []
        with torch.no_grad():
            for a in range(0, len(x), self.batch_size):
                q = torch.as_tensor(x[a:a + self.batch_size], dtype=torch.float32).to(bank.device)
                sim, idx = (q @ bank.T).topk(k, dim=1)
                w = torch.exp((sim - sim[:, :1]) / self.temperature)
                v = torch.zeros(len(q), len(self.classes_), device=bank.device)
                v.scatter_add_(1, labels[idx], w)
                out.append(v.cpu())
        return torch.cat(out).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (values of ``classes_``)."""
        return self.classes_[self.votes(X).argmax(axis=1)]

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight=None) -> float:
        """Accuracy on (X, y) as a fraction (``sample_weight`` is not supported)."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by the probes' score")
        yt = _as_labels(y, "y", len(to_numpy(X, "X")))
        return float(np.mean(self.predict(X) == yt))


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

    Returns a dict: ``acc1``, ``mean_per_class_recall`` (linear probe on test), ``best_C``,
    ``sweep`` (list of (C, val accuracy)), ``backend``, ``test_correct`` (per test item: was the
    linear probe right; for :func:`unirepclip.metrics.mcnemar_exact`), ``knn_acc1`` (kNN fitted
    on train + val, the same data as the final linear model; absent when ``knn_k`` is None).
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
        "best_C": probe.best_C_,
        "sweep": probe.sweep_,
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

PROBE_DATASETS = ("synthetic", "digits", "imagefolder")
FEATURE_KINDS = ("pre_projection", "embedding")
PROBE_SPLITS = ("train", "val", "test")


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
    ``"pre_projection"`` (the trunk's pooled features, the CLIP paper's probe input) or
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


def _cap(ds: Any, n: int, seed: int) -> Any:
    """A seeded random subset of ``n`` rows (in ascending order), or all rows when ``n`` is 0 or
    not smaller; random because image folders are sorted by class."""
    if n <= 0 or n >= len(ds):
        return ds
    from unirepclip.data.sets import Subset
    return Subset(ds, np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False)))


def probe_dataset(dataset: str, *, n_train: int, n_val: int, n_test: int, image_size: int = 64,
                  seed: int = 0, name: str = "", data_dir: Optional[str] = None,
                  classnames_file: str = "", synthetic_task: str = "shape") -> ProbeDataset:
    """The train / val / test splits a notebook's parameters name.

    Args:
        dataset: ``"synthetic"`` (the synthetic world's own train / val / test splits, classes
            ``synthetic_task``: ``"shape"`` or ``"colour"``), ``"digits"`` (scikit-learn's
            handwritten digits, the stratified 60/20/20 split of ``SklearnDigits``) or
            ``"imagefolder"`` (``data_dir/{train,val,test}/<class>/<image>``).
        n_train, n_val, n_test: images per split: the synthetic world renders exactly that many
            (> 0); finite sets take a seeded random subset when smaller than the split (0: all).
        image_size: side of the synthetic images and of the upscaled digits.
        seed: the synthetic world's seed, the digits' split seed and the subsets' seed.
        name: the name in results (default: ``dataset``).
        data_dir, classnames_file: the image folder and its vocabulary
            (:func:`unirepclip.evalsets.resolve_vocabulary`).
    """
    if dataset not in PROBE_DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {PROBE_DATASETS}")
    sizes = {"train": _check_size("n_train", n_train), "val": _check_size("n_val", n_val),
             "test": _check_size("n_test", n_test)}
    name = name or dataset
    if dataset == "synthetic":
        from unirepclip.data import SyntheticShapes, zeroshot_task

        if synthetic_task not in ("shape", "colour"):
            raise ValueError(f"synthetic_task={synthetic_task!r} is not 'shape' or 'colour'")
        zero = [f"n_{s}" for s, n in sizes.items() if n == 0]
        if zero:
            raise ValueError(f"{', '.join(zero)} = 0: the synthetic world is endless, give a size")
        splits = {s: SyntheticShapes(s, n=n, image_size=image_size, seed=seed,
                                     target=synthetic_task) for s, n in sizes.items()}
        classnames, templates = zeroshot_task(synthetic_task)
        desc = (f"synthetic world (seed {seed}), task '{synthetic_task}': "
                f"{'/'.join(str(len(d)) for d in splits.values())} train/val/test images of "
                f"{image_size} px")
        return ProbeDataset(name, dataset, splits, list(classnames), list(templates), desc)
    if dataset == "digits":
        from unirepclip.data import SklearnDigits, digits_zeroshot_task

        splits = {s: _cap(SklearnDigits(s, seed=seed, image_size=image_size), n, seed)
                  for s, n in sizes.items()}
        classnames, templates = digits_zeroshot_task()
        desc = (f"scikit-learn digits (split seed {seed}): "
                f"{'/'.join(str(len(d)) for d in splits.values())} train/val/test images, "
                f"8 x 8 px upscaled to {image_size} px")
        return ProbeDataset(name, dataset, splits, list(classnames), list(templates), desc)
    from unirepclip.data import ImageFolderDataset
    from unirepclip.data.sets import resolve_vocabulary

    if not data_dir:
        raise ValueError("dataset='imagefolder' needs data_dir, a folder holding train/, val/ "
                         "and test/ class folders")
    root = Path(data_dir)
    missing = [s for s in PROBE_SPLITS if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"data_dir={data_dir!r} lacks the split folder(s) "
                                f"{', '.join(missing)} (expected "
                                f"{root}/{{train,val,test}}/<class>/<image>)")
    # verify=False: unreadable files are skipped (and reported) when features are extracted
    folders = {s: ImageFolderDataset(root / s, verify=False) for s in PROBE_SPLITS}
    for s in ("val", "test"):
        if folders[s].folders != folders["train"].folders:
            raise ValueError(f"{root / s} has other class folders than {root / 'train'} "
                             f"({len(folders[s].folders)} vs {len(folders['train'].folders)})")
    classnames, templates, source = resolve_vocabulary(classnames_file, folders["train"].folders)
    if len(classnames) != len(folders["train"].folders):
        raise ValueError(f"classnames_file={classnames_file!r} gives {len(classnames)} names but "
                         f"{root / 'train'} has {len(folders['train'].folders)} class folders")
    for f in folders.values():
        f.classes = list(classnames)
    splits = {s: _cap(folders[s], sizes[s], seed) for s in PROBE_SPLITS}
    desc = (f"image folder {root}: {'/'.join(str(len(d)) for d in splits.values())} "
            f"train/val/test images, {len(classnames)} classes named by {source}")
    return ProbeDataset(name, dataset, splits, list(classnames), list(templates), desc)


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
        for name, data in spaces.items():
            pre = "" if name == main else f"{name}_"
            r = done[(d, "full", name, None, None)]
            res[pre + "acc1"] = r["acc1"]
            res[pre + "mean_per_class_recall"] = r["mean_per_class_recall"]
            res[pre + "best_C"] = r["best_C"]
            res[pre + "sweep"] = [[float(c), float(a)] for c, a in r["sweep"]]
            res[pre + "n_features"] = int(np.shape(data.X_train)[1])
            if knn_k is not None:
                res[pre + "knn_acc1"] = r["knn_acc1"]
            if name != main:  # paired on the same test items: is the difference evidence?
                t = mcnemar_exact(done[(d, "full", main, None, None)]["test_correct"],
                                  r["test_correct"])
                res[pre + "paired_test"] = {"main_only": t["a_only"], "baseline_only": t["b_only"],
                                            "p_value": t["p_value"]}
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
        A JSON-ready dict. For ``main``: ``acc1``, ``mean_per_class_recall``, ``best_C``,
        ``sweep`` ([[C, val accuracy], ...]), ``knn_acc1``, ``kshot`` (``{"1": {"mean", "std",
        "accs", "best_C"}, ...}``, std over seeds with ddof=1); the same for every other space
        with ``<name>_`` in front (``random_tower_acc1``, ``pixel_baseline_acc1``, ...);
        ``n_features`` / ``<name>_n_features``; and ``n_train``, ``n_val``, ``n_test``,
        ``n_classes``, ``majority_acc1`` (a constant guess of the commonest test class),
        ``zeroshot_acc1``.
    """
    zs = None if zeroshot_acc1 is None else {"_": zeroshot_acc1}
    return compare_many({"_": spaces}, main=main, knn_k=knn_k, shots=shots, seeds=seeds,
                        kshot_spaces=kshot_spaces, space_params=space_params, zeroshot_acc1=zs,
                        n_jobs=n_jobs, progress=progress, **probe_params)["_"]


#: Columns of :func:`comparison_table`: (result key, header).
TABLE_COLUMNS = (("acc1", "linear probe"), ("knn_acc1", "kNN"), ("zeroshot_acc1", "zero-shot"),
                 ("random_tower_acc1", "random tower (probe)"),
                 ("pixel_baseline_acc1", "raw pixels (probe)"), ("majority_acc1", "majority"))


def comparison_table(by_dataset: Mapping[str, Mapping[str, Any]],
                     columns: Sequence[Tuple[str, str]] = TABLE_COLUMNS, digits: int = 1) -> str:
    """A Markdown table of test top-1 accuracy (%): one row per dataset (:func:`compare`
    results), one column per method; a method a dataset lacks shows as "-"."""
    lines = ["| dataset | " + " | ".join(h for _, h in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, r in by_dataset.items():
        cells = [f"{100 * r[k]:.{digits}f}" if k in r else "-" for k, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_tests_table(by_dataset: Mapping[str, Mapping[str, Any]],
                       baselines: Sequence[Tuple[str, str]] = (("random_tower_", "random tower"),
                                                               ("pixel_baseline_", "raw pixels"))
                       ) -> str:
    """A Markdown table of McNemar's exact test, the main space's linear probe against each
    baseline on the same test items: items only the main probe got right, items only the
    baseline got right, the two-sided p-value. Rows a result lacks are left out."""
    lines = ["| dataset | baseline | right only with the trained tower | right only with the "
             "baseline | p (McNemar, exact) |", "|---|---|---:|---:|---:|"]
    for name, r in by_dataset.items():
        for prefix, label in baselines:
            t = r.get(prefix + "paired_test")
            if t is not None:
                lines.append(f"| {name} | {label} | {t['main_only']} | {t['baseline_only']} | "
                             f"{t['p_value']:.2g} |")
    return "\n".join(lines)


def _space_label(result: Mapping[str, Any], prefix: str, label: str) -> str:
    d = result.get(prefix + "n_features")
    return f"{label} ({d}-d)" if d is not None else label


def plot_sweep(ax, result: Mapping[str, Any], spaces: Mapping[str, str], *,
               title: Optional[str] = None):
    """Validation accuracy against C for each space of a :func:`compare` result.

    ``spaces`` maps a result prefix (``""`` for the main space, ``"random_tower_"`` ...) to a
    legend label. Each curve shows the C values the sweep evaluated; the chosen C is a filled
    star (the sweep's argmax; ties go to the smaller C).
    """
    from unirepclip.viz.style import PALETTE

    for i, (prefix, label) in enumerate(spaces.items()):
        if prefix + "sweep" not in result:
            raise KeyError(f"plot_sweep: the result has no {prefix + 'sweep'!r}")
        pts = np.asarray(result[prefix + "sweep"], dtype=float)
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(pts[:, 0], 100 * pts[:, 1], "o-", ms=3, color=colour,
                label=_space_label(result, prefix, label))
        best = float(result[prefix + "best_C"])
        acc = pts[np.argmin(np.abs(np.log(pts[:, 0]) - np.log(best))), 1]
        ax.plot([best], [100 * acc], "*", ms=10, color=colour, markeredgecolor="black",
                markeredgewidth=0.5, zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("inverse regularization C")
    ax.set_ylabel("validation top-1 (%)")
    ax.plot([], [], "*", ms=8, color="0.5", markeredgecolor="black", markeredgewidth=0.5,
            label="chosen C")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_kshot(ax, result: Mapping[str, Any], spaces: Mapping[str, str], *,
               title: Optional[str] = None, show_full: bool = True):
    """Test accuracy against labelled examples per class (mean ± sample std over seeds).

    ``spaces`` as in :func:`plot_sweep`. The zero-shot accuracy, when the result has one, is a
    dashed horizontal line (what the text tower gives with no labelled image at all); with
    ``show_full`` the main space's full-data probe is a dotted line.
    """
    from unirepclip.viz.style import OKABE_ITO, PALETTE

    shots_seen: List[int] = []
    for i, (prefix, label) in enumerate(spaces.items()):
        ks = result.get(prefix + "kshot")
        if not ks:
            continue
        k = np.array(sorted(int(s) for s in ks))
        mean = np.array([ks[str(s)]["mean"] for s in k])
        std = np.array([ks[str(s)]["std"] for s in k])
        ax.errorbar(k, 100 * mean, yerr=100 * std, fmt="o-", ms=3, capsize=2,
                    color=PALETTE[i % len(PALETTE)], label=label)
        shots_seen += k.tolist()
    if "zeroshot_acc1" in result:
        ax.axhline(100 * result["zeroshot_acc1"], color=OKABE_ITO["black"], ls="--", lw=1,
                   label=f"zero-shot ({100 * result['zeroshot_acc1']:.1f}%)")
    if show_full and "acc1" in result:
        n = f" {result['n_train']}" if "n_train" in result else ""
        ax.axhline(100 * result["acc1"], color=PALETTE[0], ls=":", lw=1,
                   label=f"probe, all{n} training images")
    if shots_seen:
        ax.set_xscale("log", base=2)
        ticks = sorted(set(shots_seen))
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)  # one scale for every dataset: the curves' distance to 100% is the point
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def plot_comparison(ax, by_dataset: Mapping[str, Mapping[str, Any]],
                    columns: Sequence[Tuple[str, str]] = TABLE_COLUMNS[:-1], *,
                    title: Optional[str] = None):
    """Grouped bars of test top-1 (%): datasets along x, one bar per method a dataset has; the
    majority-class rate of each dataset as a short black line (the floor)."""
    from unirepclip.viz.style import PALETTE

    names = list(by_dataset)
    width = 0.8 / max(len(columns), 1)
    for j, (key, label) in enumerate(columns):
        xs = [i + (j - (len(columns) - 1) / 2) * width for i, n in enumerate(names)
              if key in by_dataset[n]]
        ys = [100 * by_dataset[n][key] for n in names if key in by_dataset[n]]
        if xs:
            ax.bar(xs, ys, width=width, color=PALETTE[j % len(PALETTE)], label=label)
    for i, n in enumerate(names):
        if "majority_acc1" in by_dataset[n]:
            m = 100 * by_dataset[n]["majority_acc1"]
            ax.plot([i - 0.45, i + 0.45], [m, m], color="black", lw=1,
                    label="majority class" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("dataset")
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return ax
