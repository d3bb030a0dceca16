"""The linear-probe tables and figures (unirepclip.viz.probe): hand-checked Markdown, the
printed gaps, and figures that draw the numbers they are given."""
import matplotlib
import numpy as np
import pytest

from unirepclip.viz import probe
from unirepclip.viz import style as figures

matplotlib.use("Agg")

def test_comparison_table_hand_checked():
    table = probe.comparison_table({"syn": {"acc1": 0.5, "knn_acc1": 0.25, "majority_acc1": 0.125},
                                    "dig": {"acc1": 0.96}},
                                   columns=(("acc1", "probe"), ("knn_acc1", "kNN")))
    assert table.splitlines() == ["| dataset | probe | kNN |", "|---|---:|---:|",
                                  "| syn | 50.0 | 25.0 |", "| dig | 96.0 | - |"]


def test_plots_draw_the_numbers_they_are_given():
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




def test_paired_tests_table_hand_checked():
    r = {"random_tower_paired_test": {"main_only": 19, "baseline_only": 17, "p_value": 0.8679},
         "pixel_baseline_paired_test": {"main_only": 3, "baseline_only": 40, "p_value": 1.2e-9}}
    assert probe.paired_tests_table({"dig": r, "syn": {}}).splitlines()[2:] == [
        "| dig | random tower | 19 | 17 | 0.87 | - | - |",
        "| dig | raw pixels | 3 | 40 | 1.2e-09 | - | - |"]
    # with the difference's interval and the verdict: 0.925 - 0.92 = +0.5 points
    r = {"acc1": 0.925, "random_tower_acc1": 0.92,
         "random_tower_paired_test": {"main_only": 19, "baseline_only": 17, "p_value": 0.8679,
                                      "difference_ci": [-0.021, 0.032],
                                      "verdict": "not distinguishable (p = 0.868)"}}
    assert probe.paired_tests_table({"dig": r}).splitlines()[2:] == [
        "| dig | random tower | 19 | 17 | 0.87 | +0.5 [-2.1, +3.2] | not distinguishable |"]


def test_comparison_draws_a_recorded_interval_as_an_error_bar():
    fig, ax = figures.subplots(1, 1)
    probe.plot_comparison(ax, {"syn": {"acc1": 0.9, "acc1_ci": [0.85, 0.93]},
                               "dig": {"acc1": 0.5}}, columns=(("acc1", "probe"),))
    (bars,) = ax.containers[1:]  # the bars, then the one error-bar container
    segments = bars.lines[2][0].get_segments()
    assert len(segments) == 1  # only the dataset with an interval
    np.testing.assert_allclose(segments[0], [[0, 85], [0, 93]])


def test_convergence_text_hand_checked():
    r = {"best_C": 0.1, "clip_best_C": 3.16, "not_converged": [],
         "random_tower_best_C": 100.0, "random_tower_clip_best_C": 100.0,
         "random_tower_not_converged": [1e6, "final"]}
    assert probe.convergence_text({"dig": r, "syn": {"best_C": 1.0, "not_converged": []}}) \
        .splitlines() == [
        "dig        C kept: trained 0.1 (CLIP's rule 3.16), random tower 100; NOT converged: "
        "random tower at C = 1e+06, the final fit",
        "syn        C kept: trained 1; every fit converged"]


def test_gaps_text_hand_checked():
    gaps = {"synthetic": {"acc1": 0.9, "best_C": 0.5, "n_test": 100, "se": 0.03,
                          "gaps": {"random_tower": 0.3, "pixel_baseline": 0.6, "zeroshot": -0.05}},
            "digits": {"acc1": 0.8, "best_C": 2.0, "n_test": 400, "se": 0.02,
                       "gaps": {"random_tower": -0.05}}}
    assert probe.gaps_text(gaps).splitlines() == [
        "synthetic  probe 90.0% (C = 0.5, ± 3.0 points s.e. on 100 test images): +30.0 points "
        "over the random tower, +60.0 over raw pixels, -5.0 over zero-shot",
        "digits     probe 80.0% (C = 2, ± 2.0 points s.e. on 400 test images): -5.0 points over "
        "the random tower"]



def test_comparison_marks_a_method_a_dataset_lacks_instead_of_an_empty_slot():
    """The digits group had an empty zero-shot slot, which reads as 0%. Two methods kept (kNN,
    which no dataset has, takes no slot): slots 0.4 wide at -0.2 and +0.2 around each dataset."""
    fig, ax = figures.subplots(1, 1)
    probe.plot_comparison(ax, {"syn": {"acc1": 0.9, "zeroshot_acc1": 0.55, "majority_acc1": 0.2},
                               "dig": {"acc1": 0.5}},
                          columns=(("acc1", "probe"), ("knn_acc1", "kNN"),
                                   ("zeroshot_acc1", "zero-shot")))
    bars = sorted((round(p.get_x() + p.get_width() / 2, 6), round(p.get_height(), 6))
                  for p in ax.patches)
    assert bars == [(-0.2, 90), (0.2, 55), (0.8, 50)]
    marks = [(t.get_position()[0], t.get_text()) for t in ax.texts]
    assert marks == [(pytest.approx(1.2), "not measured")]
    assert sorted(t.get_text() for t in ax.get_legend().texts) == ["majority class", "probe",
                                                                   "zero-shot"]


def test_feature_kinds_are_said_in_words():
    from unirepclip.eval.params import FEATURE_KINDS

    assert set(probe.FEATURE_WORDS) == set(FEATURE_KINDS)
    assert probe.feature_words("pre_projection") == \
        "pooled tower features (before the projection)"
    assert all("_" not in probe.feature_words(k) for k in FEATURE_KINDS)
    with pytest.raises(ValueError, match="feature_kind='logits': expected one of"):
        probe.feature_words("logits")
