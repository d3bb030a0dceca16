"""The probe estimators: a linear probe with the CLIP paper's regularization sweep, and a kNN probe.

Linear probe (Radford et al. 2021, appendix A.3): L2-regularized multinomial logistic regression
fitted with L-BFGS (up to 1000 iterations) on frozen features. The inverse regularization C is
chosen on a validation split by a coarse-to-fine search over 1e-6 .. 1e6 at a resolution of 8
steps per decade (96 steps over 12 decades): evaluate [1e-6, 1e-4, ..., 1e6], then repeatedly
halve the log-interval around the best value until a step is 1/8 of a decade. The chosen C is
refitted on train + validation.

Which swept C is kept (``selection``, :func:`select_C`): CLIP's rule, the best validation score
(``"clip"``; published probe figures use it), or the most regularized C whose validation score
is within noise of the best (``"one_se"``, the one-standard-error rule of Hastie et al.,
*Elements of Statistical Learning* 7.10, judged paired on the same validation items): a
candidate C is within noise when its shortfall from the best C, ``lost - won`` items (``lost``:
items the best C gets right and the candidate wrong; ``won``: the reverse), is at most one
standard error of that difference, ``sqrt(lost + won)`` items (McNemar's: the spread of the
difference when the two C are equally good), and its score is above chance (the larger of 1 /
n_classes and the validation split's majority-class rate) whenever the best is. Neighbouring C
values that change a prediction or two stay within noise; a chance-level C, which disagrees with
the best on many items, does not, however few the validation items. On a flat plateau of large
C, where weakly regularized fits barely converge and one validation item decides, CLIP's rule can
pick another C on another machine; this rule keeps a C the split cannot tell from the best. The
coarse-to-fine search refines around the C the rule picks.

Every fit converges or says so: a fit that stops at ``max_iter`` is resumed from where it
stopped (warm-started from its own state), up to :data:`MAX_ITER_ROUNDS` rounds of ``max_iter``
iterations in all; fits still unconverged after that are listed in ``not_converged_`` and warned
about once. Every fit starts from zero, not from the solution at a neighbouring C: at the
solvers' tolerance a warm start moves a converged fit enough to change a validation item's
prediction, which would make each score depend on the order the sweep visits C (see
``tests/test_probe.py``). The protocol around the estimators (k-shot probes, the
one-call evaluation, the comparison of feature spaces) is :mod:`unirepclip.eval.linear_probe`.

Two solvers minimize the same objective, scikit-learn's for ``LogisticRegression(C=C)``
(scikit-learn 1.6 .. 1.9, ``solver="lbfgs"``, L2 penalty)::

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

Both are scikit-learn estimators (``fit(X, y)``, ``predict``, the inherited ``score``,
``check_is_fitted``; they pass ``sklearn.utils.estimator_checks``). The linear probe's ``fit``
takes the validation split as two optional extra arguments, ``fit(X, y, X_val, y_val)``: the
CLIP protocol keeps its validation split apart, and scikit-learn's ``fit(X, y)`` then draws one
from ``X`` (see :meth:`LinearProbe.fit`).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from tqdm.auto import tqdm

from unirepclip.eval.metrics import ArrayLike, to_numpy
from unirepclip.eval.params import C_RULES, C_SWEEPS, PROBE_BACKENDS

__all__ = [
    "TORCH_SIZE_THRESHOLD", "SWEEP_RANGE", "SWEEP_STEPS_PER_DECADE", "MAX_ITER_ROUNDS", "sweep_grid",
    "select_C", "discordant_with_best", "clip_sweep", "LinearProbe", "KNNProbe",
]

TORCH_SIZE_THRESHOLD = 10 ** 9
SWEEP_RANGE = (-6, 6)            # log10 C bounds of the CLIP sweep
SWEEP_COARSE_STEP = 2            # decades between the first points
SWEEP_STEPS_PER_DECADE = 8       # final resolution: 12 decades x 8 = 96 steps
#: A fit stopped at ``max_iter`` is resumed from where it stopped, up to this many rounds in all.
MAX_ITER_ROUNDS = 5


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


def discordant_with_best(history: Sequence[Tuple[float, float]],
                         correct: Mapping[float, Any]) -> List[Tuple[int, int]]:
    """For each ``(C, score)`` of ``history``, the validation items ``(lost, won)`` against the
    best C (CLIP's choice, :func:`select_C` with ``"clip"``): ``lost`` the best gets right and C
    wrong, ``won`` the reverse. ``correct`` maps every C of ``history`` to its per-item
    correctness on the validation split (booleans, one per item, the same items for every C)."""
    ref = select_C(history, "clip")
    rows = {}
    for c, _ in history:
        if c not in correct:
            raise ValueError(f"select_C: correct has no per-item validation results for C={c:g}")
        rows[c] = np.asarray(correct[c], dtype=bool).ravel()
    n = {len(r) for r in rows.values()}
    if len(n) != 1 or 0 in n:
        raise ValueError(f"select_C: correct must hold the same, non-zero number of validation "
                         f"items for every C, got lengths {sorted(n)}")
    best = rows[ref]
    return [(int(np.sum(best & ~rows[c])), int(np.sum(~best & rows[c]))) for c, _ in history]


def select_C(history: Sequence[Tuple[float, float]], rule: str = "clip",
             correct: Optional[Mapping[float, Any]] = None,
             chance: Optional[float] = None) -> float:
    """The C a rule keeps from ``history``, the ``(C, validation accuracy)`` pairs evaluated.

    ``"clip"``: the best accuracy, equal scores going to the smaller C (CLIP's rule). ``"one_se"``:
    the smallest C (the most regularized) within one paired standard error of the best C (CLIP's
    choice) on the same validation items, ``correct`` (C -> per-item correctness): with ``lost``
    and ``won`` the items of :func:`discordant_with_best`, C is within noise when ``lost - won
    <= sqrt(lost + won)`` (McNemar's standard error of the difference, in items); and, when
    ``chance`` is given and the best score exceeds it, only a C scoring above ``chance`` is kept.
    """
    if rule not in C_RULES:
        raise ValueError(f"selection={rule!r}: expected one of {', '.join(C_RULES)}")
    if not len(history):
        raise ValueError("select_C: no (C, score) pairs to choose from")
    best = max(s for _, s in history)
    if rule == "clip":
        return min(c for c, s in history if s == best)
    if correct is None:
        raise ValueError("select_C: the one_se rule needs correct, the per-item validation "
                         "correctness of every C swept")
    floor = chance if chance is not None and best > chance else -math.inf
    pairs = discordant_with_best(history, correct)
    # integers: the shortfall (lost - won) against sqrt(lost + won), compared exactly
    return min(c for (c, s), (lost, won) in zip(history, pairs)
               if s > floor and (lost <= won or (lost - won) ** 2 <= lost + won))


def clip_sweep(score: Callable[[float], float], *, progress: bool = False,
               select: Optional[Callable[[List[Tuple[float, float]]], float]] = None
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
        select: another rule for "the best C so far" (the search refines around the C it picks
            and returns it), given the evaluations so far sorted by C; e.g. :func:`select_C`'s
            one-SE rule. None: the argmax above.

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
        if select is None:
            return max(seen, key=lambda u: (seen[u], -u))
        chosen = select([(_c_of(u), seen[u]) for u in sorted(seen)])
        return next(u for u in seen if _c_of(u) == chosen)

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
# Solvers: both return (coef (K' x D), intercept (K',), n_iter) for the same objective
# ---------------------------------------------------------------------------------------------

@dataclass
class _Fit:
    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: bool = True


def _resumed(fit_once: Callable[[Any], Tuple[Any, int]], init: Any, max_iter: int
             ) -> Tuple[Any, int, bool]:
    """Run ``fit_once(start) -> (state, n_iter)`` from ``init``; a run that stops at ``max_iter``
    is resumed from its state, up to :data:`MAX_ITER_ROUNDS` runs. Returns (state, iterations
    in all, converged)."""
    state, total = init, 0
    for _ in range(MAX_ITER_ROUNDS):
        state, n_iter = fit_once(state)
        total += n_iter
        if n_iter < max_iter:
            return state, total, True
    return state, total, False


class _SklearnSolver:
    name = "sklearn"

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int, p: "LinearProbe"):
        self.X, self.y, self.n_classes, self.p = X, y, n_classes, p

    def fit(self, C: float) -> _Fit:
        def once(start: Any) -> Tuple[Any, int]:
            clf = LogisticRegression(C=C, solver="lbfgs", max_iter=self.p.max_iter,
                                     tol=self.p.tol, random_state=self.p.random_state,
                                     warm_start=start is not None)
            if start is not None:  # resumed: from where the last round stopped
                clf.coef_, clf.intercept_ = start[0].copy(), start[1].copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # counted by _resumed
                clf.fit(self.X, self.y)
            return (clf.coef_, clf.intercept_, clf.classes_), int(np.max(clf.n_iter_))

        (coef, intercept, classes), n_iter, ok = _resumed(
            lambda st: once(None if st is None else st[:2]), None, self.p.max_iter)
        coef, intercept = coef.copy(), intercept.copy()
        if len(classes) < self.n_classes:
            coef, intercept = _all_classes(coef, intercept, classes, self.n_classes)
        return _Fit(coef, intercept, n_iter, ok)


def _all_classes(coef: np.ndarray, intercept: np.ndarray, present: np.ndarray, n_classes: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """One row per class (K >= 3) from a fit on a split that lacked some classes: an absent
    class gets the logit -inf (never predicted), a binary fit's negative class the logit 0."""
    full = np.zeros((n_classes, coef.shape[1]))
    b = np.full(n_classes, -np.inf)
    if len(present) == 2:
        full[present[1]], b[present[1]], b[present[0]] = coef[0], intercept[0], 0.0
    else:
        full[present], b[present] = coef, intercept
    return full, b


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
        (W, b), n_iter, ok = _resumed(lambda st: self._once(C, st), None, self.p.max_iter)
        return _Fit(W, b, n_iter, ok)

    def _once(self, C: float, start: Optional[Tuple[np.ndarray, np.ndarray]]
              ) -> Tuple[Tuple[np.ndarray, np.ndarray], int]:
        n, d = self.X.shape
        if start is None:
            W = torch.zeros(self.n_out, d, dtype=self.dtype, device=self.device)
            b = torch.zeros(self.n_out, dtype=self.dtype, device=self.device)
        else:
            W = torch.as_tensor(start[0]).to(self.device, self.dtype).clone()
            b = torch.as_tensor(start[1]).to(self.device, self.dtype).clone()
        W.requires_grad_(True)
        b.requires_grad_(True)
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
        return (W.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()), n_iter


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
# Input checks (scikit-learn's validate_data, plus what the probes add)
# ---------------------------------------------------------------------------------------------

def _host(x: Any) -> Any:
    # a torch tensor may live on an accelerator or be bfloat16, which NumPy cannot read directly
    return to_numpy(x) if isinstance(x, torch.Tensor) else x


def _l2(x: np.ndarray) -> np.ndarray:
    # an all-zero row has no direction: it stays zero, as in sklearn.preprocessing.normalize
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def _fit_data(est: BaseEstimator, X: Any, y: Any, normalize: bool
              ) -> Tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` through ``validate_data`` (float32 stays float32, anything else becomes
    float64; finite; sets ``n_features_in_``), ``X`` L2-normalized when asked."""
    x, y = validate_data(est, _host(X), _host(y), dtype=[np.float64, np.float32])
    return (_l2(x) if normalize else x), y


def _features(est: BaseEstimator, X: Any, normalize: bool) -> np.ndarray:
    """``X`` checked as in :func:`_fit_data`, against the fitted feature count."""
    x = validate_data(est, _host(X), reset=False, dtype=[np.float64, np.float32])
    return _l2(x) if normalize else x


def _extra_features(X: Any, name: str, n_features: int, normalize: bool) -> np.ndarray:
    """A second feature matrix (the validation split) checked like the first one."""
    x = check_array(_host(X), dtype=[np.float64, np.float32], input_name=name)
    if x.shape[1] != n_features:
        raise ValueError(f"{name} has {x.shape[1]} features, X has {n_features}")
    return _l2(x) if normalize else x


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


def _classes(y: np.ndarray, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(classes_, y as indices into them); at least two classes."""
    check_classification_targets(y)
    classes, idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name} has {len(classes)} class; a probe needs at least 2")
    return classes, idx.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# The linear probe
# ---------------------------------------------------------------------------------------------

def _middle_C() -> float:
    # the centre of the sweep's range (C = 1): the choice that presumes least about the data
    return _c_of(sum(e * SWEEP_STEPS_PER_DECADE for e in SWEEP_RANGE) // 2)


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic-regression probe with the CLIP paper's regularization sweep.

    Args:
        C: inverse L2 regularization; None chooses it by ``sweep`` on a validation split.
        max_iter: L-BFGS iterations per fit (CLIP: 1000).
        sweep: ``"clip"`` (coarse-to-fine, :func:`clip_sweep`), ``"grid"`` (all 97 points of
            :func:`sweep_grid`, for a full accuracy-vs-C curve) or a sequence of C values.
        backend: ``"auto"``, ``"sklearn"`` or ``"torch"`` (see the module docstring).
        random_state: seeds scikit-learn's solver (L-BFGS itself is deterministic) and the
            validation split :meth:`fit` draws when it is given none.
        device: where the torch backend runs (``"cpu"``, ``"cuda"``, ...).
        normalize: L2-normalize every feature vector first (fit and predict alike).
        tol: gradient tolerance of both solvers (scikit-learn's default 1e-4).
        refit: after the sweep, refit the chosen C on train + validation (the CLIP protocol);
            False keeps the validation data out of the final model (few-shot probes).
        size_threshold: ``n_samples * n_features * n_classes`` above which ``"auto"`` picks torch.
        dtype: the torch backend's float type; None: float64 on the CPU, float32 elsewhere.
        validation_fraction: the share of ``X`` held out to choose C when ``fit`` is given no
            validation split.
        progress: tqdm bar over the sweep.
        selection: which swept C is kept (:func:`select_C`): ``"clip"`` (the best validation
            accuracy, CLIP's rule) or ``"one_se"`` (the most regularized C within one paired
            standard error of the best on the same validation items, and above chance; stable
            where the best is a plateau).

    Attributes (after ``fit``): ``classes_``, ``coef_`` ((1, D) for two classes, else (K, D)),
    ``intercept_``, ``best_C_`` (the C ``selection`` kept), ``clip_C_`` (the best-scoring C among
    those evaluated: CLIP's rule on the same sweep), ``sweep_`` (list of (C, validation accuracy)
    sorted by C; empty when C was given or could not be swept), ``sweep_correct_`` (bool array,
    one row per ``sweep_`` entry, one column per validation item: was that fit right),
    ``chance_`` (the chance level of the validation split: the larger of 1 / n_classes and its
    majority-class rate; None without a sweep), ``backend_``, ``n_iter_`` (of the
    final fit, its resumed rounds included), ``not_converged_`` (the C values of sweep fits still
    unconverged after :data:`MAX_ITER_ROUNDS` rounds of ``max_iter``, then ``"final"`` when the
    final fit is; empty when every fit converged),
    ``n_features_in_``, ``fit_time_`` (seconds, sweep included).
    """

    def __init__(self, C: Optional[float] = None, max_iter: int = 1000,
                 sweep: Union[str, Sequence[float]] = "clip", backend: str = "auto",
                 random_state: Optional[int] = 0, device: Union[str, torch.device] = "cpu",
                 normalize: bool = False, tol: float = 1e-4, refit: bool = True,
                 size_threshold: float = TORCH_SIZE_THRESHOLD,
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 validation_fraction: float = 0.2, progress: bool = False,
                 selection: str = "clip"):
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
        self.validation_fraction = validation_fraction
        self.progress = progress
        self.selection = selection

    # -- helpers ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.backend not in PROBE_BACKENDS:
            raise ValueError(f"backend must be 'auto', 'sklearn' or 'torch', got {self.backend!r}")
        if self.C is not None and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number or None, got {self.C!r}")
        if isinstance(self.sweep, str):
            if self.sweep not in C_SWEEPS:
                raise ValueError(f"sweep must be 'clip', 'grid' or a sequence of C values, got "
                                 f"{self.sweep!r}")
        elif not len(self.sweep) or any(not c > 0 for c in self.sweep):
            raise ValueError(f"sweep: every C must be positive, got {list(self.sweep)!r}")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        if self.selection not in C_RULES:
            raise ValueError(f"selection must be one of {', '.join(map(repr, C_RULES))}, got "
                             f"{self.selection!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got "
                             f"{self.validation_fraction!r}")

    def _choose_backend(self, n: int, d: int, k: int) -> str:
        if self.backend != "auto":
            return self.backend
        return "torch" if n * d * k > self.size_threshold else "sklearn"

    def _solver(self, X: np.ndarray, y: np.ndarray):
        cls = _TorchSolver if self.backend_ == "torch" else _SklearnSolver
        return cls(X, y, len(self.classes_), self)

    def _run_sweep(self, solver, X_val: np.ndarray, y_val: np.ndarray
                   ) -> Tuple[float, List[Tuple[float, float]], Dict[float, _Fit]]:
        fits: Dict[float, _Fit] = {}

        correct: Dict[float, np.ndarray] = {}  # per validation item, for the paired rule
        counts = np.bincount(y_val, minlength=len(self.classes_))
        self.chance_ = float(max(1.0 / len(self.classes_), counts.max() / len(y_val)))

        def score(C: float) -> float:
            fit = fits[C] = solver.fit(C)
            correct[C] = _predict_index(X_val, fit.coef, fit.intercept) == y_val
            return float(np.mean(correct[C]))

        def select(history: List[Tuple[float, float]]) -> float:
            return select_C(history, self.selection, correct, self.chance_)

        if isinstance(self.sweep, str) and self.sweep == "clip":
            _, hist = clip_sweep(score, progress=self.progress, select=select)
        else:
            Cs = sweep_grid() if isinstance(self.sweep, str) else sorted(float(c) for c in self.sweep)
            hist = [(C, score(C)) for C in tqdm(Cs, desc="C sweep", disable=not self.progress,
                                                leave=False)]
        self.clip_C_ = select_C(hist, "clip")
        self.sweep_correct_ = np.array([correct[c] for c, _ in hist], dtype=bool)
        return select(hist), hist, fits

    def _split(self, y: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """Row indices (train, validation) of a seeded split of ``y`` (class indices), stratified
        when every class can give both parts a sample; None when no split leaves two samples on
        each side and two classes to train on."""
        n = len(y)
        n_val = math.ceil(self.validation_fraction * n)  # train_test_split's rounding
        if n_val < 2 or n - n_val < 2:
            return None
        counts = np.bincount(y)
        n_classes = int((counts > 0).sum())
        stratify = (y if counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= n_classes
                    else None)
        tr, va = train_test_split(np.arange(n), test_size=n_val, random_state=self.random_state,
                                  stratify=stratify)
        return (np.sort(tr), np.sort(va)) if len(np.unique(y[tr])) >= 2 else None

    # -- estimator API ------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, X_val: Optional[ArrayLike] = None,
            y_val: Optional[ArrayLike] = None) -> "LinearProbe":
        """Choose C when it is None, then fit the final model.

        C is swept on ``(X_val, y_val)`` when given (the CLIP protocol), else on a seeded split
        of ``(X, y)`` (``validation_fraction`` of it, stratified by class where every class has
        two samples to share, a plain split otherwise); with too few samples for a split (fewer
        than two on a side) C is the middle of the sweep's range, 1, with a warning. The final
        model is fitted on train + validation when ``refit``, on the training part alone
        otherwise.
        """
        self._check_params()
        t0 = time.perf_counter()
        Xtr, ytr_raw = _fit_data(self, X, y, self.normalize)
        self.classes_, ytr = _classes(ytr_raw, "y")
        has_val = X_val is not None or y_val is not None
        if has_val:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be given together")
            Xva = _extra_features(X_val, "X_val", Xtr.shape[1], self.normalize)
            yva_raw = check_array(_host(y_val), ensure_2d=False, dtype=None, input_name="y_val")
            if yva_raw.ndim != 1 or len(yva_raw) != len(Xva):
                raise ValueError(f"y_val must hold one label per row of X_val ({len(Xva)}), got "
                                 f"shape {yva_raw.shape}")
            yva = _encode(yva_raw, self.classes_, "y_val")
        self.backend_ = self._choose_backend(len(Xtr) + (len(Xva) if has_val else 0),
                                             Xtr.shape[1], len(self.classes_))

        fits: Dict[float, _Fit] = {}
        self.clip_C_, self.chance_, self.sweep_correct_ = None, None, np.zeros((0, 0), bool)
        if self.C is not None:
            self.best_C_, self.sweep_ = float(self.C), []
        elif has_val:
            solver = self._solver(Xtr, ytr)
            self.best_C_, self.sweep_, fits = self._run_sweep(solver, Xva, yva)
            del solver  # frees device memory before the refit
        else:
            parts = self._split(ytr)
            if parts is None:
                warnings.warn(f"LinearProbe: {len(ytr)} samples are too few to hold out a "
                              f"validation split for the C sweep; using C={_middle_C():g}, the "
                              f"middle of its range (pass X_val, y_val or set C)", UserWarning,
                              stacklevel=2)
                self.best_C_, self.sweep_ = _middle_C(), []
            else:
                tr, va = parts
                solver = self._solver(Xtr[tr], ytr[tr])
                self.best_C_, self.sweep_, fits = self._run_sweep(solver, Xtr[va], ytr[va])
                del solver
                if not self.refit:
                    Xtr, ytr = Xtr[tr], ytr[tr]
        if has_val and self.refit:
            Xfit, yfit = np.concatenate([Xtr, Xva.astype(Xtr.dtype)]), np.concatenate([ytr, yva])
        else:
            Xfit, yfit = Xtr, ytr
        fit = self._solver(Xfit, yfit).fit(self.best_C_)
        bad = sorted(c for c, f in fits.items() if not f.converged)
        parts = [f"sweep fits at C = {', '.join(f'{c:.3g}' for c in bad)}"] if bad else []
        parts += [] if fit.converged else [f"the final fit (C = {self.best_C_:.3g})"]
        self.not_converged_ = bad + ([] if fit.converged else ["final"])
        if parts:
            warnings.warn(f"LinearProbe: {' and '.join(parts)} still unconverged after "
                          f"{MAX_ITER_ROUNDS} x max_iter={self.max_iter} iterations",
                          ConvergenceWarning, stacklevel=2)
        self.coef_, self.intercept_, self.n_iter_ = fit.coef, fit.intercept, fit.n_iter
        self.fit_time_ = time.perf_counter() - t0
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Logits: (N,) for two classes (positive = ``classes_[1]``), else (N, K)."""
        check_is_fitted(self)
        z = _decision(_features(self, X, self.normalize), self.coef_, self.intercept_)
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
        check_is_fitted(self)
        x = _features(self, X, self.normalize)
        return self.classes_[_predict_index(x, self.coef_, self.intercept_)]


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
        x, yr = _fit_data(self, X, y, self.normalize)
        check_classification_targets(yr)
        self.classes_, idx = np.unique(yr, return_inverse=True)
        dev = torch.device(self.device)
        # a read-only input (a memory map) is copied: torch tensors assume writable memory
        x = x if x.flags.writeable else x.copy()
        self.train_features_ = torch.as_tensor(x, dtype=torch.float32).to(dev)
        self.train_labels_ = torch.as_tensor(idx.astype(np.int64)).to(dev)
        return self

    def votes(self, X: ArrayLike) -> np.ndarray:
        """(N, K) summed vote weights; rows rescaled by a positive constant (shifting the
        similarities by the row's best one keeps exp() finite without changing any argmax)."""
        check_is_fitted(self)
        x = _features(self, X, self.normalize)
        bank, labels = self.train_features_, self.train_labels_
        k = min(int(self.k), len(bank))
        out = []
        with torch.no_grad():
            for a in range(0, len(x), self.batch_size):
                q = torch.tensor(x[a:a + self.batch_size], dtype=torch.float32).to(bank.device)
                sim, idx = (q @ bank.T).topk(k, dim=1)
                w = torch.exp((sim - sim[:, :1]) / self.temperature)
                v = torch.zeros(len(q), len(self.classes_), device=bank.device)
                v.scatter_add_(1, labels[idx], w)
                out.append(v.cpu())
        return torch.cat(out).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (values of ``classes_``)."""
        votes = self.votes(X)
        return self.classes_[votes.argmax(axis=1)]
