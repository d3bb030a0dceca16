"""Every function whose values notebooks 01-06 record in results.json, on a small input whose
answer is worked out by hand in the comments: the summary statistics (means, medians, standard
deviations over seeds, shares) on inputs where a mean and a median differ, and every threshold
with a value exactly AT it (the inclusive rule each docstring states).

The model-dependent steps (a probe's fit, an attribution map, a text encoding) are replaced by
hand-made answers where the function under test only summarizes them; those steps have their own
tests (test_probe.py, test_attribution.py, test_explore.py).
"""
import importlib
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.benchmark.utils.common import Measurement, TaskSpec

from unirepclip.analysis import cost, erf
from unirepclip.analysis import explore as ex
from unirepclip.analysis.attribution import (attribution_records, cascading_randomization,
                                             compare_baselines, completeness_records,
                                             completeness_summary, gradcam_stage_records,
                                             gradcam_stage_scores, mask_metrics,
                                             resolve_gradcam_stage)
from unirepclip.eval import linear_probe as probe
from unirepclip.eval import zeroshot

completeness_mod = importlib.import_module("unirepclip.analysis.attribution.completeness")
randomization_mod = importlib.import_module("unirepclip.analysis.attribution.randomization")
stages_mod = importlib.import_module("unirepclip.analysis.attribution.stages")
defaults_mod = importlib.import_module("unirepclip.analysis.explore.defaults")


# --- 03 (and 06's receptive field): ERF area ratios, and the mean map they are read from ---------

def _ring_map():
    """7 x 7 ERF: the centre 99 (log10(100) = 2 -> 1 after /max), 3 pixels of the first ring and
    5 of the second 9 (log10(10) = 1 -> 1/2). Total 1 + 1.5 + 2.5 = 5: the centre holds exactly
    1/5 = 20 %, the 3 x 3 square exactly 2.5/5 = 50 %, the 5 x 5 square all of it."""
    m = np.zeros((7, 7))
    m[3, 3] = 99.0
    m[2, 2] = m[2, 3] = m[4, 4] = 9.0
    m[1, 1] = m[1, 5] = m[5, 1] = m[5, 5] = m[1, 3] = 9.0
    return m


RING_RATIOS = {"t20": 1 / 49, "t30": 9 / 49, "t50": 9 / 49, "t99": 25 / 49}


def test_area_ratio_at_exactly_the_threshold_takes_that_square():
    r = erf.area_ratios(_ring_map())
    assert {t: v["side"] for t, v in r.items()} == {"t20": 1, "t30": 3, "t50": 3, "t99": 5}
    assert {t: v["area_ratio"] for t, v in r.items()} == RING_RATIOS
    rec = erf.erf_records({"stage3": _ring_map()}, "m")
    assert rec["erf.m.stage3.area_ratio.t20"] == 1 / 49 and rec["erf.m.stage3.side.t50"] == 3


def test_erf_is_the_mean_over_images_of_the_per_image_maps():
    # f(x) = all-ones 3x3 depthwise conv of x**2: the gradient of the centre unit is 2 x in its
    # 3 x 3 window, per colour channel. Images constant at 1, 2 and 6 give maps 6, 12 and 36 in
    # the window (3 channels); their mean is 18 (the median would be 12, the sum 54).
    conv = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.stack([torch.full((3, 9, 9), v) for v in (1.0, 2.0, 6.0)])
    got = erf.compute_erf(lambda t: conv(t * t), x, batch_size=2, progress=False)
    want = np.zeros((9, 9))
    want[3:6, 3:6] = 18.0
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


# --- 04: mask metrics, completeness, the Grad-CAM stage, the randomization check ----------------

def _mask(*cells):
    m = np.zeros((4, 4), dtype=bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_mask_metrics_means_leave_out_only_the_undefined_mass():
    """Four 4 x 4 images. A: the map is the mask (mass 1, pointing 1, chance 4/16). B: no positive
    attribution (mass undefined; the 16 tied maxima give pointing 4/16; chance 4/16). C: four
    maxima of 2, one inside a one-pixel mask (mass 2/8, pointing 1/4, chance 1/16). D: the map is
    1 outside a two-pixel mask (mass 0, pointing 0, chance 2/16)."""
    a_mask = _mask((0, 0), (0, 1), (1, 0), (1, 1))
    b_mask = _mask((0, 0), (0, 1), (0, 2), (0, 3))
    c_mask, d_mask = _mask((0, 0)), _mask((3, 3), (3, 2))
    c_map = np.zeros((4, 4))
    c_map[0, 0] = c_map[3, 3] = c_map[3, 2] = c_map[2, 3] = 2.0
    maps = np.stack([a_mask.astype(float), -np.ones((4, 4)), c_map, (~d_mask).astype(float)])
    r = mask_metrics(maps, np.stack([a_mask, b_mask, c_mask, d_mask]))
    # mass over the three defined images: (1 + 1/4 + 0) / 3 (median 1/4; NaN as 0: 5/16)
    assert r["mass_in_mask"] == pytest.approx(5 / 12, abs=1e-15)
    assert r["pointing_game"] == (1 + 0.25 + 0.25 + 0) / 4  # median 1/4
    assert r["chance"] == (0.25 + 0.25 + 1 / 16 + 2 / 16) / 4  # median 3/16
    assert (r["n"], r["n_no_positive_mass"]) == (4, 1)
    rec = attribution_records({"saliency": r})
    assert rec == {"attribution.saliency.mass_in_mask": pytest.approx(5 / 12, abs=1e-15),
                   "attribution.saliency.pointing_game": 0.375,
                   "attribution.saliency.chance": 0.171875,
                   "attribution.saliency.n_no_positive_mass": 1}


def test_completeness_error_is_the_median_and_a_median_at_the_tolerance_is_not_large(
        monkeypatch):
    """Hand-made per-image errors and gaps stand in for IG (its own tests check them):
    zero: errors 0.01, 0.02, 0.04, 0.30 -> median (0.02 + 0.04) / 2 = 0.03 (mean 0.0925);
    grey: 0.01, 0.05, 0.30 and NaN (a zero gap) -> median 0.05, exactly the 5 % tolerance."""
    per_kind = iter([
        {"error": np.array([0.01, 0.30, 0.02, 0.04]), "gap": np.array([0.1, 0.2, 0.3, 1.0])},
        {"error": np.array([0.30, np.nan, 0.05, 0.01]), "gap": np.array([0.2, 0.0, 0.1, 0.1])},
    ])

    def fake_ig(model, x, text, *, n_steps, baseline, **kw):
        return {"maps": np.zeros((4, 8, 8)), **next(per_kind)}

    monkeypatch.setattr(completeness_mod, "integrated_gradients_completeness", fake_ig)
    checks = compare_baselines(None, torch.zeros(4, 3, 8, 8), torch.zeros(1, 4),
                               kinds=("zero", "grey"), n_steps=8)
    assert checks["zero"]["median_error"] == pytest.approx(0.03, abs=1e-15)
    assert checks["zero"]["max_error"] == 0.30 and checks["grey"]["max_error"] == 0.30
    assert checks["zero"]["mean_gap"] == pytest.approx(0.4) and checks["grey"]["mean_gap"] == 0.1
    assert checks["grey"]["median_error"] == 0.05
    s = completeness_summary(checks, "grey")
    assert s["used_median_error"] == 0.05 and s["large"] is False  # at the tolerance: not above
    assert completeness_records(checks) == {
        "attribution.integrated_gradients.completeness_error.zero": pytest.approx(0.03, abs=1e-15),
        "attribution.integrated_gradients.completeness_error.grey": 0.05}


def test_gradcam_stage_score_is_the_mean_of_the_two_metrics_over_chance(monkeypatch):
    """Masks: left half (chance 1/2) and top-left quadrant (1/4): mean chance 3/8. Stage 1's maps
    are the masks (mass 1, pointing 1: score (1 + 1) / 2 / (3/8) = 8/3); stage 2's are uniform
    (each metric equals its chance level: score exactly 1, what a map that knows nothing gets)."""
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :, :2] = True
    masks[1, :2, :2] = True
    maps = {1: masks.astype(np.float32), 2: np.ones((2, 4, 4), dtype=np.float32)}
    monkeypatch.setattr(stages_mod, "attribute",
                        lambda method, model, x, t, stage, **kw: maps[stage])
    monkeypatch.setattr(stages_mod, "_stage_map_sizes",
                        lambda model, x, dev: {1: (4, 4), 2: (2, 2)})
    scores = gradcam_stage_scores(None, torch.zeros(2, 3, 4, 4), torch.zeros(2, 8), masks,
                                  stages=[1, 2])
    assert scores[1]["score"] == pytest.approx(8 / 3) and scores[2]["score"] == 1.0
    assert scores[2]["mass_in_mask"] == scores[2]["pointing_game"] == scores[2]["chance"] == 0.375
    used = resolve_gradcam_stage("auto", scores)
    assert gradcam_stage_records(scores, used) == {
        "attribution.gradcam.stage_scores.stage1": pytest.approx(8 / 3),
        "attribution.gradcam.stage_scores.stage2": 1.0, "attribution.gradcam.stage": 1}


class _Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(1, 1)


def test_randomization_mean_rank_corr_exactly_at_the_threshold_is_insensitive(monkeypatch):
    """Four images of five pixels, originals ranked 1..5. After the head step every map is
    unchanged; after the last step the ranks read 1 2 3 4 5 (rho 1), 1 2 3 5 4 (sum of squared
    rank gaps 2: rho = 1 - 6 * 2 / 120 = 0.9), 2 1 5 4 3 (gaps 10: rho 0.5), and a constant map
    (rho undefined, left out). Mean (1 + 0.9 + 0.5) / 3 = 0.8 (the median is 0.9), exactly the
    threshold: "still at least 0.8" flags the method insensitive."""
    original = np.tile(np.arange(1.0, 6.0), (4, 1))[:, None, :]
    final = np.array([[1, 2, 3, 4, 5], [1, 2, 3, 5, 4], [2, 1, 5, 4, 3], [7, 7, 7, 7, 7]],
                     dtype=float)[:, None, :]
    calls = iter([original, original, final])
    monkeypatch.setattr(randomization_mod, "attribute", lambda *a, **k: next(calls))
    monkeypatch.setattr(randomization_mod, "randomization_steps",
                        lambda tower: [("head", []), ("stem", [])])
    c = cascading_randomization(_Tower(), "saliency", torch.zeros(4, 3, 1, 5), torch.zeros(4, 2),
                                progress=False)
    assert c["steps"] == ["head", "stem"]
    assert c["rank_corr"] == [pytest.approx(1.0), pytest.approx(0.8)]
    assert np.isnan(c["rank_corr_per_image"][1, 3])
    assert c["final"] == pytest.approx(0.8) and c["threshold"] == 0.8
    assert c["insensitive"] is True
    rec = attribution_records({}, {"saliency": c})
    assert rec["attribution.saliency.randomization_rank_corr"] == pytest.approx(0.8)
    assert rec["attribution.saliency.insensitive"] is True


# --- 01: the speed of each form is the median of the timed runs ----------------------------------

def test_images_per_second_is_the_batch_over_the_median_time(monkeypatch):
    """Runs of 0.1, 0.9 and 0.2 s on a batch of 4: 4 / 0.2 = 20 images/s (the mean, 0.4 s, would
    give 10); with a fourth run of 0.3 s the median is 0.25 s: 16 images/s."""
    for times, want in (([0.1, 0.9, 0.2], 20.0), ([0.1, 0.9, 0.2, 0.3], 16.0)):
        runs = iter(times)

        class FakeTimer:
            def __init__(self, stmt, globals, num_threads):
                self.spec = TaskSpec(stmt=stmt, setup="pass")

            def timeit(self, number):  # one run of the hand-made length
                return Measurement(number, [next(runs)], self.spec)

        monkeypatch.setattr(cost, "benchmark",
                            types.SimpleNamespace(Timer=FakeTimer, Measurement=Measurement))
        got = cost.images_per_second(lambda x: None, torch.zeros(4, 3), repeats=len(times),
                                     warmup=1)
        assert got == pytest.approx(want, rel=1e-12)


# --- 02: the prompt templates' summary -----------------------------------------------------------

def test_template_summary_mean_is_a_mean_not_a_median():
    # 0.1, 0.2, 0.9: mean 0.4, median 0.2; the best (0.9) is the third template
    s = zeroshot.template_summary([0.1, 0.9, 0.2], ["a", "b", "c"], 0.5)
    assert s["single_acc1_mean"] == pytest.approx(0.4, abs=1e-15)
    assert (s["single_acc1_best"], s["single_acc1_worst"], s["best_template"]) == (0.9, 0.1, "b")


# --- 05: what the comparison of feature spaces makes of the fits --------------------------------

def _splits(width):
    # class counts in training: 3, 2 and 4 (the smallest is 2); test labels 0 0 0 1 1 2
    y_train = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_test = np.array([0, 0, 0, 1, 1, 2])
    return probe.FeatureSplits(np.zeros((9, width)), y_train, np.zeros((3, width)),
                               np.array([0, 1, 2]), np.zeros((6, width)), y_test)


def test_compare_summarizes_the_fits_by_hand(monkeypatch):
    """Hand-made fits stand in for the probes (their own tests compare them with scikit-learn).
    k-shot accuracies over seeds 0, 1, 2 at k = 1: 0.25, 0.5, 1.0 -> mean 7/12 (median 0.5),
    sample std sqrt(((1/3)^2 + (1/12)^2 + (5/12)^2) / 2) = sqrt(21) / 12 (with ddof 0:
    sqrt(14) / 12). k = 2 equals the smallest training class: probed; k = 3 exceeds it:
    skipped. The commonest test class holds 3 of 6 images: majority 0.5. Paired test: the main
    probe alone is right on 4 items, the baseline alone on none: p = 2 / 2^4 = 0.125."""
    main, base = _splits(2), _splits(5)
    right = {2: np.array([1, 1, 1, 1, 0, 1], bool), 5: np.array([0, 0, 0, 0, 0, 1], bool)}
    kshot = {(2, 1): [0.25, 0.5, 1.0], (2, 2): [1.0, 1.0, 0.5]}

    def full(data, knn_k, params):
        w = data.X_train.shape[1]
        # a wrong answer is the next class: predictions consistent with test_correct
        pred = np.where(right[w], data.y_test, (data.y_test + 1) % 3)
        return {"acc1": right[w].mean(), "mean_per_class_recall": 0.5, "best_C": 1.0,
                "clip_best_C": 1.0, "not_converged": [], "sweep": [(1.0, 0.5)],
                "sweep_discordant": [(0, 0)], "val_chance": 1 / 3, "knn_acc1": 0.5,
                "test_correct": right[w], "test_labels": data.y_test, "test_predictions": pred}

    def shot(data, k, seed, params):
        return kshot[(data.X_train.shape[1], k)][seed], float(seed)

    monkeypatch.setattr(probe, "_full_task", full)
    monkeypatch.setattr(probe, "_kshot_task", shot)
    r = probe.compare({"trained": main, "pixels": base}, main="trained", shots=(1, 2, 3),
                      seeds=(0, 1, 2), kshot_spaces=["trained"], zeroshot_acc1=0.25)
    assert r["kshot_skipped"] == [3] and list(r["kshot"]) == ["1", "2"]
    one = r["kshot"]["1"]
    assert one["accs"] == [0.25, 0.5, 1.0] and one["best_C"] == [0.0, 1.0, 2.0]
    assert one["mean"] == pytest.approx(7 / 12, abs=1e-15)
    assert one["std"] == pytest.approx(np.sqrt(21) / 12, abs=1e-15)
    assert r["kshot"]["2"]["mean"] == pytest.approx(2.5 / 3, abs=1e-15)
    assert r["majority_acc1"] == 0.5 and r["n_classes"] == 3 and r["zeroshot_acc1"] == 0.25
    assert (r["acc1"], r["pixels_acc1"]) == (pytest.approx(5 / 6), pytest.approx(1 / 6))
    test = r["pixels_paired_test"]
    assert {k: test[k] for k in ("main_only", "baseline_only", "p_value")} == {
        "main_only": 4, "baseline_only": 0, "p_value": pytest.approx(0.125, rel=1e-12)}
    # the difference of top-1 is 4/6 on these items; its paired interval holds it; p > 0.05
    lo, hi = test["difference_ci"]
    assert lo <= 4 / 6 <= hi and -1 <= lo and hi <= 1
    assert test["verdict"] == "not distinguishable (p = 0.125)"
    assert "pixels_kshot" not in r and r["pixels_n_features"] == 5


# --- 06: the explorer's default queries on a hand-made gallery -----------------------------------

def _unit(deg):
    a = np.deg2rad(np.asarray(deg, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=-1).astype(np.float32)


CAPTIONS = ["a red circle", "a red circle", "a blue square", "a green square", "a blue circle"]
TEXT_ANGLES = {"a red circle": 15, "a blue square": 80, "a green square": 110,
               "a blue circle": -5}


def test_default_queries_record_by_hand(monkeypatch):
    """Five images on the unit circle at 0, 20, 90, 100 and -10 degrees, labels circle, square,
    square, square, circle; captions as in CAPTIONS, their text embeddings at TEXT_ANGLES.
    - search for image 0's caption (15 deg): images by angle gap 1 (5), 0 (15), 4 (25), 2, 3:
      image 0 ranks 2nd; of the top 3 (1, 0, 4) two carry "a red circle"; best score cos 5.
    - image -> text for image 0 over the 4 distinct captions: "a blue circle" (5 deg) first,
      its own caption (15 deg) 2nd.
    - zero-shot, classes at 44 (circle) and 46 deg (square): every image takes the nearer class:
      circle, circle, square, square, circle against the labels: 4 of 5; image 0 is a circle
      with p = 1 / (1 + exp(100 (cos 46 - cos 44))).
    - neighbours of image 0 (top 3, itself left out): 4 (10 deg), 1 (20), 2 (90): labels circle,
      square, square: 1/3 share its class.
    - the ERF of the ring map above: the area ratios RING_RATIOS."""
    emb = _unit([0, 20, 90, 100, -10])
    labels = np.array([0, 1, 1, 1, 0])
    pixels = [(Image.new("RGB", (4, 4)), int(y)) for y in labels]
    gallery = ex.Gallery("synthetic", pixels, [f"#{i}" for i in range(5)], "hand-made",
                         labels=labels, classnames=["circle", "square"], captions=CAPTIONS)
    monkeypatch.setattr(defaults_mod, "text_classifier",
                        lambda model, tok, names, templates, **kw: _unit([44, 46]).T)
    monkeypatch.setattr(defaults_mod, "encode_queries", lambda model, tok, texts, **kw: (
        _unit([TEXT_ANGLES[t] for t in texts]), [""] * len(texts)))
    monkeypatch.setattr(defaults_mod, "explain", lambda *a, **k: {
        "similarity": 0.25, "mass_in_mask": 0.5, "pointing_game": 1.0, "chance": 0.125})
    monkeypatch.setattr(defaults_mod, "runnable_resolution", lambda model, size: size)
    monkeypatch.setattr(defaults_mod, "receptive_field", lambda model, q, seed: {
        "stage": q.stage, "resolution": q.resolution, "n_images": q.n_images,
        "area_ratios": erf.area_ratios(_ring_map())})
    out = ex.default_queries(None, None, gallery, emb, transform=None,
                             options=ex.QueryOptions(query_index=0, top_k=3))
    rec = out["record"]
    assert rec["n_images"] == 5
    assert rec["search"] == {"query": "a red circle", "top_k": 3, "own_image_rank": 2,
                             "top1_score": pytest.approx(np.cos(np.deg2rad(5)), rel=1e-6),
                             "hits_with_query_caption": 2}
    assert rec["image_to_text"] == {"n_captions": 4, "top1": "a blue circle",
                                    "own_caption_rank": 2}
    p = 1 / (1 + np.exp(100 * (np.cos(np.deg2rad(46)) - np.cos(np.deg2rad(44)))))
    zs = rec["zeroshot"]
    assert (zs["n_classes"], zs["first_image_class"], zs["acc1"]) == (2, "circle", 0.8)
    assert zs["first_image_probability"] == pytest.approx(p, rel=1e-4)
    assert rec["embedding_map"]["neighbours_same_class"] == pytest.approx(1 / 3)
    centred = emb.astype(np.float64) - emb.mean(0)
    var = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
    assert rec["embedding_map"]["explained_variance_ratio"] == pytest.approx(list(var / var.sum()))
    assert rec["explain"] == {"method": "integrated_gradients", "similarity": 0.25,
                              "mass_in_mask": 0.5, "pointing_game": 1.0, "chance": 0.125}
    assert rec["erf"] == {"stage": 3, "resolution": 64, "n_images": 8, "area_ratio": RING_RATIOS}
