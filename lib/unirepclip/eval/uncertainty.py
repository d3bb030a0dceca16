"""Uncertainty of a figure measured on test items, torch-free (NumPy and SciPy only).

Intervals (95% unless ``confidence`` says otherwise), each an :class:`Interval` that names its
method:

* a plain proportion (accuracy, recall@k of one direction: one hit per query) -> Wilson's score
  interval (:func:`wilson_interval`, :func:`proportion_interval`). It keeps its coverage near 0
  and 1 where the percentile bootstrap and the Wald interval fall short (at n = 50 and p = 0.995
  most samples are all-correct, and a resampling interval is then the single point 1).
* anything else (mean per-class recall; the mean of two recalls) -> ``scipy.stats.bootstrap``
  over the test items, BCa (the percentile interval beyond :data:`BCA_MAX_ITEMS` items), seeded (:func:`bootstrap_interval`,
  :func:`mean_per_class_recall_interval`; :func:`retrieval_recall_interval` for DataComp's
  retrieval figure, resampling images with all their captions). Where every resample gives the
  same value (all items right; ``np.ptp`` of the bootstrap distribution is 0) the interval is
  that value with ``method`` saying ``"degenerate"``: the data say nothing about the spread, not
  that there is none. Where BCa is undefined otherwise, or the statistic is undefined (NaN) in
  some resamples (a ratio whose denominator a resample can empty, e.g. the shape bias), the
  interval is the percentile interval of the defined resamples, labelled so, with
  ``n_undefined`` counting the resamples left out; more than ``max_undefined`` of them is refused
  (the interval would be conditioned on the resamples that happen to be defined). An undefined
  estimate gives the undefined interval (``nan``, ``method="undefined"``), which excludes
  nothing.

Paired comparisons of two settings scored on the same items, each a :class:`PairedTest` with the
difference ``a - b``, its interval, the two-sided p-value and a plain verdict (``"not
distinguishable"`` where the p-value is at or above ``alpha``):

* accuracy -> exact McNemar (:func:`paired_accuracy_test`): ``scipy.stats.binomtest`` on the
  discordant items (A right and B wrong: Binomial(discordant, 1/2) under the null); the
  difference's interval is the paired bootstrap's.
* recall@k, mean per-class recall, any statistic of per-item data -> the paired bootstrap
  (:func:`paired_bootstrap_test`, :func:`paired_recall_test`,
  :func:`paired_mean_per_class_recall_test`, :func:`paired_retrieval_recall_test`): items
  resampled together for both settings; the
  p-value is the share of resampled differences at least as far from the observed one as the
  observed one is from 0 (the bootstrap distribution shifted to the null), ``(count + 1) /
  (resamples + 1)``.

And whether a re-measured figure is consistent with a published one
(:func:`consistent_with_published`): the published value lies inside the measured interval
(widened by half a unit of the published value's last digit when ``rounding`` is given).

Every function that resamples takes ``seed`` and gives the same answer on a rerun.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Interval", "PairedTest", "mcnemar_exact", "wilson_interval", "proportion_interval",
           "bootstrap_interval", "mean_per_class_recall", "mean_per_class_recall_interval",
           "paired_accuracy_test", "paired_bootstrap_test", "paired_recall_test",
           "paired_mean_per_class_recall_test", "two_way_recall", "retrieval_recall_interval",
           "paired_retrieval_recall_test", "consistent_with_published", "N_RESAMPLES",
           "BCA_MAX_ITEMS", "save_outcomes", "load_outcomes", "paired_test_of"]

#: Bootstrap resamples unless a caller asks for another number.
N_RESAMPLES = 2000
#: ``method="auto"``: BCa up to this many items, the percentile interval beyond. BCa's jackknife
#: costs items x items (50,000 ImageNet images: 2.5e9 element operations per array), and its
#: correction shrinks as the items grow; small samples near 0 or 1 are where it matters.
BCA_MAX_ITEMS = 5000
_BATCH_ELEMENTS = 4_000_000


@dataclasses.dataclass(frozen=True)
class Interval:
    """``estimate`` with its ``[low, high]`` at ``confidence``, from ``n`` items by ``method``;
    ``n_undefined``: bootstrap resamples whose statistic was undefined and left out."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int
    n_undefined: int = 0

    @property
    def defined(self) -> bool:
        """Both ends are numbers (an undefined interval contains and excludes nothing)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def excludes(self, value: float) -> bool:
        """``value`` lies outside a defined interval (False for an undefined one)."""
        return self.defined and not self.low <= value <= self.high

    def record(self) -> Dict[str, Any]:
        """As JSON data for results.json: ``estimate``, ``low``, ``high`` (``None`` where
        undefined), ``confidence``, ``method``, ``n``."""
        def num(x: float) -> Optional[float]:
            return float(x) if math.isfinite(x) else None

        return {"estimate": num(self.estimate), "low": num(self.low), "high": num(self.high),
                "confidence": float(self.confidence), "method": self.method, "n": int(self.n)}


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Two settings ``a`` and ``b`` on the same ``n`` items: ``difference`` (a - b) and its
    interval, the two-sided ``p_value``, the ``test`` that gave it and a plain ``verdict``."""

    a: float
    b: float
    difference: Interval
    p_value: float
    test: str
    verdict: str
    details: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self) -> Dict[str, Any]:
        """As JSON data for results.json: ``estimate``, ``low``, ``high`` (``None`` where
        undefined), ``confidence``, ``method``, ``n``."""
        def num(x: float) -> Optional[float]:
            return float(x) if math.isfinite(x) else None

        return {"estimate": num(self.estimate), "low": num(self.low), "high": num(self.high),
                "confidence": float(self.confidence), "method": self.method, "n": int(self.n)}


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r}: expected a level in (0, 1), e.g. 0.95")
    return float(confidence)


def _bool_items(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of per-item outcomes, got "
                         f"shape {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name}: per-item outcomes must be booleans or 0/1")
    return a.astype(bool)


def _int_items(x: Any, name: str, n: Optional[int] = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected a non-empty 1-D integer array, got shape {a.shape} "
                         f"and dtype {a.dtype}")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} items, the labels {n}; both must score the "
                         f"same test items")
    return a


def wilson_interval(successes: Any, n: Any, confidence: float = 0.95
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval ``(low, high)`` of ``successes`` out of ``n`` (arrays broadcast;
    NumPy floats for scalars). Equals ``scipy.stats.binomtest(k, n).proportion_ci(method=
    "wilson")``; vectorized for many proportions at once."""
    from scipy.stats import norm

    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval: need 0 <= successes <= n and n > 0")
    z = norm.ppf(0.5 + _check_confidence(confidence) / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def proportion_interval(correct: Any, confidence: float = 0.95) -> Interval:
    """Accuracy (or one direction's recall@k) over per-item booleans, with Wilson's interval."""
    c = _bool_items(correct, "correct")
    lo, hi = wilson_interval(int(c.sum()), c.size, confidence)
    return Interval(float(c.mean()), float(lo), float(hi), float(confidence), "wilson", c.size)


@functools.lru_cache(maxsize=1)
def _rng_keyword() -> str:
    """SciPy >= 1.15 names ``bootstrap``'s generator ``rng``, older ones ``random_state``."""
    from scipy.stats import bootstrap

    return "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"


def _run_bootstrap(data: Tuple[np.ndarray, ...], statistic: Callable, *, seed: int,
                   n_resamples: int, confidence: float, method: str
                   ) -> Tuple[float, float, str, np.ndarray]:
    from scipy.stats import bootstrap

    n = data[0].shape[-1]
    if method == "auto":
        method = "BCa" if n <= BCA_MAX_ITEMS else "percentile"
    # batch bounds the (resamples, items) arrays the statistic sees, the jackknife's included
    kwargs = dict(n_resamples=int(n_resamples), paired=True, vectorized=True, axis=-1,
                  confidence_level=confidence, method=method,
                  batch=max(1, _BATCH_ELEMENTS // max(n, 1)))
    kwargs[_rng_keyword()] = np.random.default_rng(seed)
    res = bootstrap(data, statistic, **kwargs)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi, method.lower(), np.asarray(res.bootstrap_distribution, dtype=float).ravel()


def bootstrap_interval(statistic: Callable[..., Any], *data: Any, seed: int = 0,
                       n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                       method: str = "auto", max_undefined: float = 0.01) -> Interval:
    """The interval of ``statistic(*data)`` over the items (the last axis of each array,
    resampled together), by ``scipy.stats.bootstrap`` (``method``: ``"BCa"``, ``"percentile"``,
    ``"basic"``, or ``"auto"``: BCa up to :data:`BCA_MAX_ITEMS` items), seeded. ``statistic``
    must be vectorized: it takes ``axis=`` and reduces that axis. Where every resample gives the
    same value the interval is that value, ``method="degenerate"``; where the method's interval
    is undefined otherwise, or the statistic is NaN in some resamples (at most a
    ``max_undefined`` share of them, else a ValueError), the percentile interval of the defined
    resamples, ``method="bootstrap-percentile (fallback)"``, ``n_undefined`` counting those left
    out. An undefined estimate gives the undefined interval (``method="undefined"``)."""
    confidence = _check_confidence(confidence)
    arrays = tuple(np.asarray(d) for d in data)
    if not arrays or any(a.shape[-1] != arrays[0].shape[-1] for a in arrays):
        raise ValueError("bootstrap_interval: give one or more arrays with the same number of "
                         "items (last axis)")
    n = arrays[0].shape[-1]
    if n < 2:
        raise ValueError(f"bootstrap_interval: {n} item(s); a bootstrap needs at least 2")
    estimate = float(statistic(*arrays, axis=-1))
    if not np.isfinite(estimate):
        return Interval(estimate, np.nan, np.nan, confidence, "undefined", n, int(n_resamples))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's degenerate-distribution warning: handled below
        lo, hi, used, dist = _run_bootstrap(arrays, statistic, seed=seed,
                                            n_resamples=n_resamples, confidence=confidence,
                                            method=method)
    defined = dist[np.isfinite(dist)]
    n_undefined = int(dist.size - defined.size)
    if not defined.size or n_undefined > max_undefined * dist.size:
        raise ValueError(f"bootstrap_interval: the statistic is undefined (NaN) in {n_undefined} "
                         f"of {dist.size} resamples, more than max_undefined={max_undefined:g} "
                         f"of them; the interval of the rest would not be the statistic's")
    if np.ptp(defined) == 0:
        return Interval(estimate, estimate, estimate, confidence, "degenerate", n, n_undefined)
    if n_undefined or not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = np.percentile(defined, [50 * (1 - confidence), 50 * (1 + confidence)])
        used = "percentile (fallback)"
    return Interval(estimate, float(lo), float(hi), confidence, f"bootstrap-{used}", n,
                    n_undefined)


def mean_per_class_recall(labels: np.ndarray, predictions: np.ndarray, axis: int = -1
                          ) -> np.ndarray:
    """Balanced accuracy along ``axis`` (vectorized for the bootstrap): the recall of each
    class present in ``labels``, averaged with equal weight (CLIP_benchmark's
    ``mean_per_class_recall``, scikit-learn's ``balanced_accuracy_score``). One pass of
    ``bincount`` whatever the number of classes."""
    y = np.moveaxis(np.asarray(labels), axis, -1)
    p = np.moveaxis(np.asarray(predictions), axis, -1)
    lead = y.shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))
    _, inverse = np.unique(y.ravel(), return_inverse=True)
    n_classes = int(inverse.max()) + 1
    flat = (inverse.reshape(rows, -1) + n_classes * np.arange(rows)[:, None]).ravel()
    support = np.bincount(flat, minlength=rows * n_classes).reshape(rows, n_classes)
    hits = np.bincount(flat, weights=(y == p).ravel().astype(float),
                       minlength=rows * n_classes).reshape(rows, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return np.nanmean(recall, axis=-1).reshape(lead)


def mean_per_class_recall_interval(labels: Any, predictions: Any, *, seed: int = 0,
                                   n_resamples: int = N_RESAMPLES, confidence: float = 0.95
                                   ) -> Interval:
    """Mean per-class recall with its BCa bootstrap interval over the test items (a class a
    resample leaves out is left out of that resample's mean)."""
    y = _int_items(labels, "labels")
    p = _int_items(predictions, "predictions", y.size)
    return bootstrap_interval(mean_per_class_recall, y, p, seed=seed, n_resamples=n_resamples,
                              confidence=confidence)


def _verdict(diff: float, p: float, alpha: float, names: Sequence[str]) -> str:
    if not p < alpha:
        return f"not distinguishable (p = {p:.3g})"
    better, worse = (names[0], names[1]) if diff > 0 else (names[1], names[0])
    return f"{better} higher than {worse} by {abs(diff):.3g} (p = {p:.3g})"


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def mcnemar_exact(correct_a: Any, correct_b: Any) -> Dict[str, Any]:
    """McNemar's exact test of two classifiers scored on the same test items.

    ``correct_a`` and ``correct_b`` are per-item booleans (was the prediction right), in the same
    item order. Only the discordant items count: ``a_only`` (A right, B wrong) and ``b_only``;
    under the null hypothesis (equal accuracy) ``a_only`` is Binomial(a_only + b_only, 1/2).
    Returns ``a_only``, ``b_only`` and the two-sided exact ``p_value`` (1.0 with no discordant
    item). A difference of a few items out of hundreds is usually not evidence of anything."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a).astype(bool).ravel()
    b = np.asarray(correct_b).astype(bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"mcnemar_exact: correct_a has {a.size} items, correct_b {b.size}; "
                         "both must score the same test items")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else min(1.0, float(binomtest(a_only, n, 0.5).pvalue))
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_accuracy_test(correct_a: Any, correct_b: Any, *, alpha: float = 0.05, seed: int = 0,
                         n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                         names: Sequence[str] = ("A", "B")) -> PairedTest:
    """Exact McNemar test of two settings' per-item correctness on the same items (``details``:
    ``a_only``, A right and B wrong; ``b_only``); the difference of accuracies with its paired
    bootstrap interval (the point 0 when no item is discordant)."""
    a = _bool_items(correct_a, "correct_a")
    b = _bool_items(correct_b, "correct_b")
    t = mcnemar_exact(a, b)
    a_only, b_only, p = t["a_only"], t["b_only"], t["p_value"]
    diff = bootstrap_interval(_difference, a.astype(float), b.astype(float), seed=seed,
                              n_resamples=n_resamples, confidence=confidence)
    return PairedTest(float(a.mean()), float(b.mean()), diff, p, "mcnemar-exact",
                      _verdict(diff.estimate, p, alpha, names),
                      {"a_only": a_only, "b_only": b_only, "n": int(a.size)})


def _null_shifted_p(stat: Callable, data_a: Tuple[np.ndarray, ...],
                    data_b: Tuple[np.ndarray, ...], observed: float, seed: int,
                    n_resamples: int) -> float:
    n = data_a[0].shape[-1]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(int(n_resamples), 2_000_000 // n))  # bounded memory for large n
    far, done = 0, 0
    while done < n_resamples:
        idx = rng.integers(0, n, size=(min(chunk, int(n_resamples) - done), n))
        diffs = (np.asarray(stat(*(d[..., idx] for d in data_a), axis=-1))
                 - np.asarray(stat(*(d[..., idx] for d in data_b), axis=-1)))
        far += int((np.abs(diffs - observed) >= abs(observed) - 1e-12).sum())
        done += len(idx)
    return float((far + 1) / (done + 1))


def paired_bootstrap_test(statistic: Callable[..., Any], data_a: Sequence[Any],
                          data_b: Sequence[Any], *, alpha: float = 0.05, seed: int = 0,
                          n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                          names: Sequence[str] = ("A", "B")) -> PairedTest:
    """``statistic(*data_a)`` against ``statistic(*data_b)`` on the same items (the last axis of
    every array; shared arrays such as the labels may appear in both), by the paired bootstrap.
    ``statistic`` is vectorized (takes ``axis=``)."""
    da = tuple(np.asarray(d) for d in data_a)
    db = tuple(np.asarray(d) for d in data_b)
    sizes = {d.shape[-1] for d in da + db}
    if not da or not db or len(sizes) != 1:
        raise ValueError(f"paired_bootstrap_test: every array must hold the same items; got "
                         f"item counts {sorted(sizes)}")
    k = len(da)

    def diff(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        return (np.asarray(statistic(*arrays[:k], axis=axis))
                - np.asarray(statistic(*arrays[k:], axis=axis)))

    interval = bootstrap_interval(diff, *da, *db, seed=seed, n_resamples=n_resamples,
                                  confidence=confidence)
    va, vb = float(statistic(*da, axis=-1)), float(statistic(*db, axis=-1))
    p = (1.0 if interval.estimate == 0 and interval.method == "degenerate" else
         _null_shifted_p(statistic, da, db, interval.estimate, seed, n_resamples))
    return PairedTest(va, vb, interval, p, "paired-bootstrap",
                      _verdict(interval.estimate, p, alpha, names), {"n": int(next(iter(sizes)))})


def paired_recall_test(hits_a: Any, hits_b: Any, **options: Any) -> PairedTest:
    """recall@k of two settings from per-query hits (a query's positive within its top k), by
    the paired bootstrap (``options``: those of :func:`paired_bootstrap_test`)."""
    a = _bool_items(hits_a, "hits_a").astype(float)
    b = _bool_items(hits_b, "hits_b").astype(float)
    return paired_bootstrap_test(np.mean, (a,), (b,), **options)


def paired_mean_per_class_recall_test(labels: Any, predictions_a: Any, predictions_b: Any,
                                      **options: Any) -> PairedTest:
    """Mean per-class recall of two settings' predictions for the same labelled items, by the
    paired bootstrap (``options``: those of :func:`paired_bootstrap_test`)."""
    y = _int_items(labels, "labels")
    pa = _int_items(predictions_a, "predictions_a", y.size)
    pb = _int_items(predictions_b, "predictions_b", y.size)
    return paired_bootstrap_test(mean_per_class_recall, (y, pa), (y, pb), **options)


def two_way_recall(image_hits: np.ndarray, caption_hits: np.ndarray, captions: np.ndarray,
                   axis: int = -1) -> np.ndarray:
    """The mean of image -> text and text -> image recall from per-image arrays (vectorized for
    the bootstrap): ``image_hits`` (the image query's hit), ``caption_hits`` (how many of its
    captions hit as queries) and ``captions`` (how many it has)."""
    text = np.sum(caption_hits, axis=axis) / np.sum(captions, axis=axis)
    return 0.5 * (np.mean(image_hits, axis=axis) + text)


def _per_image(image_hits: Any, text_hits: Any, text_to_image: Any, which: str
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    ih = _bool_items(image_hits, f"image_hits{which}").astype(float)
    th = _bool_items(text_hits, f"text_hits{which}").astype(float)
    t2i = _int_items(text_to_image, "text_to_image")
    if t2i.size != th.size:
        raise ValueError(f"text_hits{which} has {th.size} items, text_to_image {t2i.size}; "
                         f"both are one per caption")
    if t2i.min() < 0 or t2i.max() >= ih.size:
        raise ValueError(f"text_to_image holds an image index outside [0, {ih.size})")
    n_caps = np.bincount(t2i, minlength=ih.size).astype(float)
    return ih, np.bincount(t2i, weights=th, minlength=ih.size), n_caps


def retrieval_recall_interval(image_hits: Any, text_hits: Any, text_to_image: Any, *,
                              seed: int = 0, n_resamples: int = N_RESAMPLES,
                              confidence: float = 0.95) -> Interval:
    """DataComp's retrieval figure, the mean of image -> text and text -> image recall@k, with a
    BCa bootstrap over the images, each resampled with all its captions (they are not
    independent items). ``image_hits`` (one per image), ``text_hits`` (one per caption) and
    ``text_to_image`` (each caption's image)."""
    data = _per_image(image_hits, text_hits, text_to_image, "")
    return bootstrap_interval(two_way_recall, *data, seed=seed, n_resamples=n_resamples,
                              confidence=confidence)


def paired_retrieval_recall_test(image_hits_a: Any, text_hits_a: Any, image_hits_b: Any,
                                 text_hits_b: Any, text_to_image: Any, **options: Any
                                 ) -> PairedTest:
    """:func:`two_way_recall` of two settings on the same images and captions, by the paired
    bootstrap over images (``options``: those of :func:`paired_bootstrap_test`)."""
    a = _per_image(image_hits_a, text_hits_a, text_to_image, "_a")
    b = _per_image(image_hits_b, text_hits_b, text_to_image, "_b")
    if a[0].size != b[0].size:
        raise ValueError(f"image_hits_a has {a[0].size} images, image_hits_b {b[0].size}")
    return paired_bootstrap_test(two_way_recall, a, b, **options)


def consistent_with_published(measured: Interval, published: float, *, rounding: float = 0.0
                              ) -> Dict[str, Any]:
    """Is ``published`` inside the measured interval? Both on the same scale (fractions: a
    published 75.7 % is 0.757); ``rounding``: half a unit of the published value's last digit
    (0.0005 for 0.757), by which the interval is widened. Returns ``consistent``, the values and
    a plain ``verdict``."""
    published = float(published)
    if not np.isfinite(published):
        raise ValueError(f"published={published!r}: expected a finite number")
    if rounding < 0:
        raise ValueError(f"rounding={rounding!r}: expected >= 0")
    if 0 <= measured.low <= measured.high <= 1 and not 0 <= published <= 1:
        raise ValueError(f"published={published!r} is not a fraction in [0, 1] like the measured "
                         f"interval; give a percentage divided by 100")
    ok = measured.low - rounding <= published <= measured.high + rounding
    where = (f"published {published:.4g} {'inside' if ok else 'outside'} the measured "
             f"{measured.confidence:.0%} interval [{measured.low:.4g}, {measured.high:.4g}]")
    return {"consistent": bool(ok), "published": published, "measured": measured.estimate,
            "low": measured.low, "high": measured.high,
            "verdict": ("consistent: " if ok else "not consistent: ") + where}


# ---------------------------------------------------------------------------------------------
# Per-item outcomes on disk, for paired tests between runs (a sweep's settings)
# ---------------------------------------------------------------------------------------------

def save_outcomes(path: Any, arrays: Dict[str, Any]) -> None:
    """Write per-item outcomes as one ``.npz``, each array under the result key it explains
    (``"zeroshot.acc1"``: per image, right or not; ``"<key>:labels"`` / ``"<key>:predictions"``
    for a mean per-class recall; ``"<prefix>:items"``: which items were scored, so that two runs
    are paired only on the same items). The folder is created."""
    from pathlib import Path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})


def load_outcomes(path: Any) -> Dict[str, np.ndarray]:
    """:func:`save_outcomes`' arrays; an empty dict when the file is missing or unreadable."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return {}


def _items_key(key: str) -> str:
    return key.split(".", 1)[0] + ":items"


def paired_test_of(key: str, a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], *,
                   seed: int = 0, names: Sequence[str] = ("A", "B")) -> Optional[PairedTest]:
    """The paired test of result ``key`` between two runs' :func:`load_outcomes`: exact McNemar
    for an accuracy, the paired bootstrap for a recall (``retrieval.*``) and for a mean per-class
    recall (``*mean_per_class_recall``). None when either run lacks the key's outcomes or the
    two did not score the same items (``<prefix>:items`` differ)."""
    ik = _items_key(key)
    if ik not in a or ik not in b or not np.array_equal(a[ik], b[ik]):
        return None
    if key.endswith("mean_per_class_recall"):
        parts = [f"{key}:labels", f"{key}:predictions"]
        if not all(p in a and p in b for p in parts) or \
                not np.array_equal(a[parts[0]], b[parts[0]]):
            return None
        return paired_mean_per_class_recall_test(a[parts[0]], a[parts[1]], b[parts[1]],
                                                 seed=seed, names=names)
    if key not in a or key not in b or a[key].shape != b[key].shape:
        return None
    if key.startswith("retrieval."):
        return paired_recall_test(a[key], b[key], seed=seed, names=names)
    return paired_accuracy_test(a[key], b[key], seed=seed, names=names)
