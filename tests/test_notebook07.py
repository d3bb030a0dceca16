"""What notebook 07 records (unirepclip.analysis.shape_study) and draws (unirepclip.viz.shape_bias).

Truth: Wilson intervals from scipy's binomial test on hand counts; the design choice on hand-built
control tables (readable = both Wilson lower bounds above chance); the surgery sweep against each
cut recomputed directly (a copy cut by analysis.surgery, encoded and scored here; its ERF measured
by analysis.erf), no-op rows against the uncut model, and the loaded model's state dict before and
after; the generated sentences on fake results of both signs (each must say the opposite of the
other); the model-vs-human path on a small folder in the toolbox's layout, against the metric
applied by hand to the decisions it returns.
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from unirepclip.analysis import shape_study as study
from unirepclip.analysis.cue_conflict import navon_classifier
from unirepclip.analysis.erf import area_ratios, stage_erfs
from unirepclip.analysis.surgery import cut_kernels
from unirepclip.data.navon import navon_set
from unirepclip.eval.shape_bias import ShapeBias, shape_bias
from unirepclip.eval.uncertainty import Interval, proportion_interval
from unirepclip.eval.zeroshot import encode_images, zeroshot_logits


@pytest.fixture(scope="module")
def demo():
    from unirepclip import create_model, get_tokenizer
    from unirepclip.models.pretrained import MODEL_NAME, resolve_checkpoint

    model = create_model(MODEL_NAME, resolve_checkpoint("demo", MODEL_NAME))
    tok = get_tokenizer(MODEL_NAME)
    return model, tok, navon_classifier(model, tok)


def _counts(n_shape, n_texture, n_other=0):
    return ShapeBias(n_shape / (n_shape + n_texture) if n_shape + n_texture else math.nan,
                     n_shape, n_texture, n_other, 0, {})


def test_shape_bias_interval_is_wilson_over_the_decided_stimuli():
    iv = study.shape_bias_interval(_counts(3, 1, n_other=6))
    ci = binomtest(3, 4).proportion_ci(method="wilson")
    assert (iv.estimate, iv.n, iv.method) == (0.75, 4, "wilson")  # the 6 others count for neither
    assert iv.low == pytest.approx(ci.low) and iv.high == pytest.approx(ci.high)
    none = study.shape_bias_interval(_counts(0, 0, n_other=5))
    assert math.isnan(none.estimate) and not none.defined and none.n == 0
    rec = none.record()
    assert rec["estimate"] is None and rec["low"] is None and rec["n"] == 0


def _row(plain, alone, n=16, **extra):
    return {"image_size": 64, "global_scale": 0.95, "element_scale": 0.15, "element_px": 10,
            "plain": proportion_interval([True] * plain + [False] * (n - plain)),
            "elements_alone": proportion_interval([True] * alone + [False] * (n - alone)),
            "error": None, **extra}


def test_the_design_chosen_is_the_readable_one_with_the_best_worse_control():
    # Wilson lower bounds on 16 items: 2/16 -> 0.035, 10/16 -> 0.39, 12/16 -> 0.51, 16/16 -> 0.81
    rows = [_row(16, 2), _row(10, 12), {"image_size": 64, "global_scale": 0.95,
                                        "element_scale": 0.3, "error": "no element fits"},
            _row(12, 16)]
    choice = study.choose_design(rows, chance=1 / 8)
    assert choice == {"index": 3, "readable": True, "n_readable": 2, "chance": 0.125}
    # none readable: the best worse-of-the-two anyway, flagged
    rows = [_row(16, 2), _row(3, 4), _row(2, 16)]
    assert study.choose_design(rows, 1 / 8) == {"index": 1, "readable": False, "n_readable": 0,
                                                "chance": 0.125}
    with pytest.raises(ValueError, match="navon_designs"):
        study.choose_design([rows[0] | {"error": "x"}], 1 / 8)
    rec = study.design_records(rows, study.choose_design(rows, 1 / 8))
    assert rec["chosen"] == {"image_size": 64, "global_scale": 0.95, "element_scale": 0.15,
                             "element_px": 10}
    assert rec["candidates"][1]["plain_accuracy"]["estimate"] == 3 / 16 and not rec["readable"]


def test_the_design_sentence_says_readable_or_not_from_the_numbers():
    good = [_row(12, 16)]
    bad = [_row(2, 16)]
    yes = study.describe_design(good, study.choose_design(good, 1 / 8))
    no = study.describe_design(bad, study.choose_design(bad, 1 / 8))
    assert yes.startswith("1 of 1 designs have both controls recognized above chance")
    assert "0.75" in yes and "1.00" in yes and "cannot read" not in yes
    assert no.startswith("None of the 1 designs") and "cannot read the Navon cue conflict" in no
    assert "0.12" in no


def _fake_sweep(acc_after, bias_after, p_value):
    n = 100

    def iv(x, m=n):
        return Interval(x, max(0.0, x - 0.05), min(1.0, x + 0.05), 0.95, "wilson", m)

    uncut = {"accuracy": iv(0.9), "shape_bias": iv(0.5, 40)}
    rows = [{"stage": 1, "keep": 1, "full": 13, "drop_dilated": False, "noop": False, "ran": True,
             "accuracy": iv(acc_after), "shape_bias": iv(bias_after, 40),
             "mcnemar": {"a_only": 0, "b_only": 0, "p_value": p_value}},
            {"stage": 1, "keep": 11, "full": 13, "drop_dilated": False, "noop": True,
             "ran": False, "accuracy": iv(0.9), "shape_bias": iv(0.5, 40),
             "mcnemar": {"a_only": 0, "b_only": 0, "p_value": 1.0}}]
    return {"uncut": uncut, "rows": rows, "skipped": {}}


def test_the_surgery_sentence_says_the_opposite_for_results_of_the_opposite_sign():
    down = study.describe_surgery(_fake_sweep(0.4, 0.8, 1e-9))
    up = study.describe_surgery(_fake_sweep(0.95, 0.47, 0.4))
    assert "accuracy falls from 0.90 to 0.40" in down and "accuracy rises from 0.90 to 0.95" in up
    assert "shape bias rises from 0.50 to 0.80" in down and "shape bias falls from 0.50 to 0.47" in up
    assert ": distinguishable on these 100 images" in down
    assert "not distinguishable on these 100 images" in up
    assert "do not overlap" in down and "Wilson intervals overlap" in up
    # the harshest real cut is the one described; the no-op is listed as such
    assert "kept to 1x1 of 13x13" in down and "the cuts to 11 are no-ops by construction" in down
    same = study.describe_surgery(_fake_sweep(0.9, 0.5, 1.0))
    assert "accuracy stays at 0.90" in same and "shape bias stays at 0.50" in same


def test_the_headline_cut_is_the_real_cut_that_costs_most_accuracy():
    sweep = _fake_sweep(0.4, 0.8, 1e-9)
    n = 100
    drop = dict(sweep["rows"][0], keep=None, drop_dilated=True,
                accuracy=Interval(0.3, 0.25, 0.35, 0.95, "wilson", n))
    cut = study.harshest_cut(dict(sweep, rows=sweep["rows"] + [drop]))
    assert cut["key"] == "stage1_no_dilated"
    assert cut["label"] == ("zero-shot accuracy, stage 1 with its dilated branches dropped "
                            "(uncut 0.90)")
    # the no-op (accuracy 0.9, never run) is never the headline; the real 1x1 cut is
    cut = study.harshest_cut(sweep)
    assert cut["key"] == "stage1_keep1" and "kernels cut to 1x1" in cut["label"]
    assert study.harshest_cut(dict(sweep, rows=[r for r in sweep["rows"] if not r["ran"]])) is None


def test_navon_result_counts_global_as_shape_and_local_as_texture():
    stim = navon_set(image_size=32, element_scale=0.15, shapes=["circle", "square", "star"],
                     colours=("blue",))
    g, loc = np.asarray(stim.global_shape), np.asarray(stim.local_shape)
    conflict = stim.select("conflict")  # 6 ordered pairs
    d = g.copy().astype(object)
    d[conflict[:2]] = loc[conflict[:2]]  # two local answers
    d[conflict[2]] = "heart"             # one other answer
    res = study.navon_result(stim, d)
    assert (res["counts"].n_shape, res["counts"].n_texture, res["counts"].n_other) == (3, 2, 1)
    assert res["shape_bias"].estimate == 3 / 5 and res["shape_bias"].n == 5
    assert res["plain"].estimate == 1.0 and res["elements_alone"].estimate == 1.0
    rec = study.navon_records(res)
    assert (rec["n_global"], rec["n_local"], rec["n_other"], rec["n_conflict"]) == (3, 2, 1, 6)


@pytest.fixture(scope="module")
def sweep(demo):
    model, _, clf = demo
    from unirepclip.data.synthetic import SyntheticShapes

    test = SyntheticShapes("test", n=40, image_size=64, seed=0)
    inputs = study.encode_test_images(model, test.samples.images, image_size=64)
    labels = np.asarray(test.samples.shape)
    stim = navon_set(image_size=64, shapes=["circle", "star", "cross"], colours=("blue",))
    erf_x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = study.surgery_plan(model, [1, 3], [1, 3, 13, 15, 4], 64)
    out = study.surgery_sweep(model, clf, plan, test_inputs=inputs, test_labels=labels,
                              stimuli=stim, erf_inputs=erf_x, batch_size=64)
    after = model.state_dict()
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    return out, plan, dict(inputs=inputs, labels=labels, stim=stim, erf_x=erf_x), unchanged


def test_the_sweep_plans_odd_cuts_below_full_size_and_marks_the_noops(sweep):
    _, plan, _, _ = sweep
    got = [(c["stage"], c["keep"], c["drop_dilated"], c["noop"]) for c in plan["cuts"]]
    # 13 is the full size, 15 beyond it, 4 even: none is a cut; at 64 px stage 3's map is 2 wide
    assert got == [(1, 1, False, False), (1, 3, False, False), (1, None, True, False),
                   (3, 1, False, False), (3, 3, False, True), (3, None, True, False)]


def test_the_sweep_never_modifies_the_loaded_model(sweep):
    assert sweep[3]


def test_every_cut_the_sweep_marks_noop_leaves_the_outputs_bit_for_bit(demo, sweep):
    """Why a no-op is not rerun: cut for real, it gives the uncut inference form's embeddings
    exactly (and a real cut of the same stage does not)."""
    from unirepclip.analysis.surgery import inference_form

    model = demo[0]
    _, plan, _, _ = sweep
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = inference_form(model).encode_image(x)
        for entry in plan["cuts"]:
            out = cut_kernels(model, entry["cut"]).encode_image(x)
            assert torch.equal(out, ref) == entry["noop"], entry["cut"].label
    assert any(e["noop"] for e in plan["cuts"]) and not all(e["noop"] for e in plan["cuts"])


def test_each_real_cut_scores_as_the_cut_copy_recomputed_and_noops_as_uncut(demo, sweep):
    model, _, clf = demo
    out, plan, data, _ = sweep
    for entry, row in zip(plan["cuts"], out["rows"]):
        if row["noop"]:
            assert not row["ran"] and row["accuracy"] == out["uncut"]["accuracy"]
            assert row["mcnemar"] == {"a_only": 0, "b_only": 0, "p_value": 1.0}
            assert row["erf"] == out["uncut"]["erf"][f"stage{row['stage']}"]
            continue
        cut = cut_kernels(model, entry["cut"])
        feats, _ = encode_images(cut, [data["inputs"]], progress=False)
        correct = zeroshot_logits(feats, clf).argmax(1) == data["labels"]
        assert row["ran"] and row["accuracy"].estimate == pytest.approx(correct.mean())
        # the ERF area after the cut: the cut stage's centre unit, measured on the cut copy
        erf = stage_erfs(cut, data["erf_x"], [row["stage"]], batch_size=2, progress=False)
        assert row["erf"] == area_ratios(erf[f"stage{row['stage']}"])


def test_cutting_stage_1_to_one_shrinks_its_erf_and_costs_accuracy(sweep):
    """The shipped demo's figures: stage 1's 13x13 kernels cut to 1x1 leave a smaller ERF core
    (t = 20 %) and a lower accuracy than the uncut tower."""
    out = sweep[0]
    row = out["rows"][0]
    uncut = out["uncut"]
    assert (row["stage"], row["keep"]) == (1, 1)
    assert row["erf"]["t20"]["area_ratio"] < uncut["erf"]["stage1"]["t20"]["area_ratio"]
    assert row["accuracy"].estimate < uncut["accuracy"].estimate


def test_surgery_records_hold_each_row_under_its_key(sweep):
    out = sweep[0]
    rec = study.surgery_records(out, "shape.surgery.demo")
    keys = sorted(k.split(".")[-1] for k in rec if ".cuts." in k)
    assert keys == ["stage1_keep1", "stage1_keep3", "stage1_no_dilated", "stage3_keep1",
                    "stage3_keep3", "stage3_no_dilated"]
    noop = rec["shape.surgery.demo.cuts.stage3_keep3"]
    assert noop["noop"] and not noop["ran"]
    assert noop["accuracy"] == rec["shape.surgery.demo.uncut.accuracy"]
    r = rec["shape.surgery.demo.cuts.stage1_keep1"]
    assert r["accuracy"]["estimate"] == out["rows"][0]["accuracy"].estimate
    assert r["erf_area_ratio"]["t20"] == out["rows"][0]["erf"]["t20"]["area_ratio"]
    assert set(rec["shape.surgery.demo.uncut.erf_area_ratio"]) == {"stage1", "stage3"}


def test_compare_towers_says_which_way_from_the_decisions(sweep):
    out, _, data, _ = sweep
    stim = data["stim"]
    g = np.asarray(stim.global_shape, dtype=object)
    loc = np.asarray(stim.local_shape, dtype=object)
    n = len(stim)
    globalist = {"navon": study.navon_result(stim, g), "decisions": g,
                 "correct": np.ones(10, bool)}
    localist = {"navon": study.navon_result(stim, loc), "decisions": loc,
                "correct": np.zeros(10, bool)}
    for s in (globalist, localist):
        s["shape_bias"] = s["navon"]["shape_bias"]
    one = study.compare_towers(stim, {"a": globalist, "b": localist}, "a", n_boot=200)
    other = study.compare_towers(stim, {"b": localist, "a": globalist}, "b", n_boot=200)
    assert "higher than b's (0.00) by 1.00" in one["b"]["sentence"]
    assert "lower than a's (1.00) by 1.00" in other["a"]["sentence"]
    assert one["b"]["accuracy_test"]["a_only"] == 10 and n == len(g)


def test_the_model_vs_human_path_scores_a_small_folder_by_both_rules(demo, tmp_path):
    model, tok, _ = demo
    rng = np.random.default_rng(0)
    for rel in ("bird/bird1-cat1.png", "bird/bird2-clock1.png", "cat/cat1-bird2.png",
                "cat/cat2-cat3.png"):
        p = tmp_path / rel
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    out = study.cue_conflict_shape_bias(model, tok, str(tmp_path), image_size=64, batch_size=4,
                                        max_templates=1)
    assert out["n_images"] == 4
    shape = ["bird", "bird", "cat", "cat"]
    texture = ["cat", "clock", "bird", "cat"]
    for rule in study.RULES:
        got = out[rule]
        again = shape_bias(shape, texture, got["decisions"])
        assert got["counts"].n_dropped == 1  # cat2-cat3: shape == texture
        assert (got["counts"].n_shape, got["counts"].n_texture) == (again.n_shape, again.n_texture)
        assert len(got["counts"].per_class) == 16
    rec = study.cue_conflict_records(out["zero_shot_16"])
    counts = out["zero_shot_16"]["counts"]
    assert (rec["n_shape"], rec["n_texture"], rec["n_other"], rec["n_dropped"]) == (
        counts.n_shape, counts.n_texture, counts.n_other, 1)
    # a class without a shape or texture decision (all 16 but bird and cat have no stimuli) is
    # None, which JSON can hold, not nan
    assert rec["per_class"]["airplane"] is None and set(rec["per_class"]) == set(counts.per_class)
    assert rec["shape_bias"] == out["zero_shot_16"]["shape_bias"].record()
    with pytest.raises(ValueError, match="decision_rules"):
        study.cue_conflict_shape_bias(model, tok, str(tmp_path), rules=["majority"])


def test_the_human_reference_is_computed_from_the_shipped_data():
    h = study.human_records()
    assert h["mean"] == pytest.approx(0.9576, abs=5e-5) and h["n_subjects"] == 10
    assert h["min"] <= h["mean"] <= h["max"] and len(h["per_class"]) == 16


def test_the_figures_draw_what_they_are_given(sweep):
    import matplotlib.pyplot as plt

    from unirepclip.viz import shape_bias as figures

    out = sweep[0]
    ref = {"control": {"accuracy": out["uncut"]["accuracy"], "shape_bias": out["uncut"]["shape_bias"]}}
    fig = figures.plot_surgery(out["rows"], out["uncut"], ref)
    acc = fig.axes[0]
    # dashed uncut and dotted reference, at the values given
    hlines = [ln for ln in acc.get_lines() if len(set(ln.get_ydata())) == 1 and len(ln.get_xdata()) == 2]
    assert sorted(ln.get_ydata()[0] for ln in hlines) == [out["uncut"]["accuracy"].estimate] * 2
    # one open marker per no-op cut (stage 3 keep 3)
    from matplotlib.collections import PathCollection

    open_marks = [c for c in acc.collections if isinstance(c, PathCollection)
                  and c.get_offsets().shape[0] and np.allclose(c.get_facecolor()[:, :3], 1.0)]
    assert sum(c.get_offsets().shape[0] for c in open_marks) == 1
    assert "kernel size" in acc.get_xlabel() and "accuracy" in acc.get_ylabel()
    plt.close(fig)
    fig = figures.plot_per_class_shape_bias({"m": {"a": 0.2, "b": None}, "people": {"a": 1.0, "b": 0.9}},
                                            {"m": 0.2, "people": 0.95})
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    assert pts[0, 0] == pytest.approx(0.2) and np.ma.is_masked(pts[1, 0]) or np.isnan(pts[1, 0])
    assert ax.get_xlabel() == "fraction of shape decisions"
    plt.close(fig)


def test_the_sweep_scores_the_cue_conflict_images_after_each_cut(demo, tmp_path):
    from unirepclip.data.modelvshuman import CATEGORIES
    from unirepclip.eval.shape_bias import cue_conflict_classifiers, zero_shot_decisions

    model, tok, clf = demo
    rng = np.random.default_rng(1)
    names = ["bird/bird1-cat1.png", "cat/cat1-bird2.png", "car/car1-clock1.png",
             "clock/clock1-car2.png"]
    for rel in names:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / rel)
    c16 = cue_conflict_classifiers(model, tok, max_templates=1)["zero_shot_16"]
    probe = study.cue_conflict_probe(model, str(tmp_path), c16, image_size=64)
    assert probe["inputs"].shape == (4, 3, 64, 64)
    stim = navon_set(image_size=64, shapes=["circle", "star"], colours=("blue",))
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plan = study.surgery_plan(model, [3], [1], 64, drop_dilated=False)
    out = study.surgery_sweep(model, clf, plan, test_inputs=x, test_labels=np.zeros(4, int),
                              stimuli=stim, erf_inputs=None, cue_conflict=probe)
    cut = cut_kernels(model, plan["cuts"][0]["cut"])
    feats, _ = encode_images(cut, [probe["inputs"]], progress=False)
    truth = shape_bias(probe["shape"], probe["texture"], zero_shot_decisions(feats, c16), CATEGORIES)
    got = out["rows"][0]["cue_conflict_shape_bias"]
    assert got.n == truth.n_shape + truth.n_texture
    assert (got.estimate == truth.shape_bias) or (math.isnan(got.estimate) and math.isnan(truth.shape_bias))
    rec = study.surgery_records(out, "s")
    assert rec["s.cuts.stage3_keep1"]["cue_conflict_shape_bias"] == got.record()
    assert "s.uncut.cue_conflict_shape_bias" in rec
    assert "cue-conflict shape bias" in study.describe_surgery(out)


def test_a_larger_input_makes_more_cuts_real_and_its_accuracy_is_measured(demo):
    model, _, clf = demo
    check = study.larger_input_check(model, clf, stages=[2, 3], keeps=[1, 3, 5, 7],
                                     image_size=96, n_images=24)
    # at 96 px stage 2's map is 6 wide (real: keep <= 9) and stage 3's 3 wide (real: keep <= 3),
    # plus each stage's dropped dilated branches; at 64 px: 3 + 1 and 1 + 1
    assert (check["n_cuts"], check["n_real"]) == (10, 8)
    assert check["accuracy"].n == 24 and 0 <= check["accuracy"].estimate <= 1
    rec = study.larger_input_records(check, "s")
    assert rec["n_real_cuts"] == 8 and rec["image_size"] == 96 and rec["sentence"] == "s"


def test_the_larger_input_sentence_says_which_way_from_the_numbers():
    def iv(x):
        return Interval(x, x - 0.05, x + 0.05, 0.95, "wilson", 300)

    worse = study.describe_larger_input({"image_size": 128, "accuracy": iv(0.3), "n_cuts": 21,
                                         "n_real": 18}, 64, iv(0.99), 13)
    better = study.describe_larger_input({"image_size": 128, "accuracy": iv(0.97), "n_cuts": 21,
                                          "n_real": 18}, 64, iv(0.95), 13)
    assert "18 of the 21 cuts change something (13 at 64 px)" in worse
    assert "0.30" in worse and "lower than at 64 px" in worse and "do not overlap" in worse
    assert "worse off than at its trained size" in worse
    assert "higher than at 64 px" in better and "intervals overlap" in better
    assert "worse off" not in better


def test_the_cue_conflict_sentence_says_below_above_or_not_distinguishable():
    from unirepclip.eval.uncertainty import wilson_interval

    def iv(k, n):
        lo, hi = (float(v) for v in wilson_interval(k, n))
        return Interval(k / n, lo, hi, 0.95, "wilson", n)

    low = study.describe_cue_conflict("L (zero_shot_16)", iv(200, 1000), 0.9576)
    high = study.describe_cue_conflict("L (zero_shot_16)", iv(995, 1000), 0.9576)
    near = study.describe_cue_conflict("L (zero_shot_16)", iv(19, 20), 0.9576)
    assert "0.20" in low and "below people's 0.958" in low
    assert "0.99" in high and "above people's 0.958" in high
    assert "not distinguishable from people's 0.958" in near
    none = Interval(math.nan, math.nan, math.nan, 0.95, "wilson", 0)
    assert "no shape bias" in study.describe_cue_conflict("L", none, 0.9576)


@pytest.mark.slow
def test_notebook_07_runs_the_cue_conflict_branch_through_the_runner(tmp_path):
    """The branch the demo profile skips: notebook 07 on the ci profile with a cue-conflict
    folder (six random images in the toolbox's layout, one template): both rules recorded, the
    per-class figure saved, every surgery cut scored on the cue-conflict images too. About 50 s."""
    import json
    from pathlib import Path

    from unirepclip.cli import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "cue-conflict"
    for rel in ("bird/bird1-cat1.png", "bird/bird2-clock1.png", "cat/cat1-bird2.png",
                "cat/cat2-cat3.png", "clock/clock1-car1.png", "car/car1-knife2.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / rel)
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "reports"
    code = main(["run", "--profile", "ci", "--only", "07", "--notebooks-dir",
                 str(repo / "notebooks"), "--output-dir", str(out), "--no-progress", "-q",
                 "-p", f"cue_conflict_dir={folder}", "-p", "n_templates=1",
                 "-p", "larger_image_size=0"])
    assert code == 0, f"see {out / 'ci'}"
    r = json.loads((out / "ci" / "results.json").read_text())["shape"]
    cc = r["cue_conflict"]["demo"]
    assert cc["n_images"] == 6 and "skipped" not in r["cue_conflict"]
    for rule in study.RULES:
        assert cc[rule]["n_dropped"] == 1  # cat2-cat3
        assert cc[rule]["n_shape"] + cc[rule]["n_texture"] + cc[rule]["n_other"] == 5
    cuts = r["surgery"]["demo"]["cuts"]
    assert all("cue_conflict_shape_bias" in c for c in cuts.values())
    assert (out / "ci" / "figures" / "07_shape_bias_per_class.png").is_file()
