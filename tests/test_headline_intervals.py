"""Intervals beside notebook 02's headline figures (issue 25): the per-image and per-query
outcomes they resample reproduce the recorded figures exactly, top-1 / top-5 / recall take
SciPy's own Wilson interval, mean per-class recall its seeded BCa bootstrap, and the records
keep every existing value unchanged."""
import numpy as np
import pytest
from scipy.stats import binomtest

from unirepclip.data.sets import ZeroShotTask
from unirepclip.eval import retrieval, zeroshot
from unirepclip.eval.uncertainty import mean_per_class_recall_interval


def _wilson(hits):
    ci = binomtest(int(np.sum(hits)), len(hits)).proportion_ci(method="wilson")
    return [ci.low, ci.high]


def _zeroshot_case(seed=0, n=300, k=7):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 16)).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    clf = (np.eye(16, k) + 0.1 * rng.normal(size=(16, k))).astype(np.float32)
    feats[np.arange(n), labels] += 2.0  # better than chance, far from perfect
    task = ZeroShotTask("shape", [f"c{i}" for i in range(k)], ["{}"], labels)
    report = zeroshot.evaluate(None, None, feats, labels, task.classnames, classifier=clf)
    return {"shape": report}, {"shape": task}


def test_item_outcomes_are_the_recorded_figures_item_by_item():
    reports, tasks = _zeroshot_case()
    rows = np.arange(300)
    o = zeroshot.item_outcomes(reports, tasks, rows)["shape"]
    r = reports["shape"]
    assert np.mean(o["top1"]) == r["acc1"] and np.mean(o["top5"]) == r["acc5"]
    assert 0.2 < r["acc1"] < 0.9 and r["acc1"] < r["acc5"] < 1
    np.testing.assert_array_equal(o["top1"], o["predictions"] == o["labels"])
    # rows pick the labels: the features of rows 5.. only
    sub = zeroshot.evaluate(None, None, np.ones((3, 16), np.float32), tasks["shape"].labels[5:8],
                            tasks["shape"].classnames, classifier=np.eye(16, 7, dtype=np.float32))
    o2 = zeroshot.item_outcomes({"shape": sub}, tasks, [5, 6, 7])["shape"]
    np.testing.assert_array_equal(o2["labels"], tasks["shape"].labels[5:8])


def test_intervals_are_wilsons_and_the_bca_bootstrap_and_summary_keeps_the_values():
    reports, tasks = _zeroshot_case()
    o = zeroshot.item_outcomes(reports, tasks, np.arange(300))
    cis = zeroshot.intervals(o, seed=3)["shape"]
    assert cis["acc1_ci"] == pytest.approx(_wilson(o["shape"]["top1"]), abs=1e-12)
    assert cis["acc5_ci"] == pytest.approx(_wilson(o["shape"]["top5"]), abs=1e-12)
    iv = mean_per_class_recall_interval(o["shape"]["labels"], o["shape"]["predictions"], seed=3)
    assert cis["mean_per_class_recall_ci"] == [iv.low, iv.high] and iv.method == "bootstrap-bca"
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        lo, hi = cis[key + "_ci"]
        assert lo < reports["shape"][key] < hi
    plain = zeroshot.summary(reports, "shape", 300)
    with_ci = zeroshot.summary(reports, "shape", 300, cis={"shape": cis})
    # every value the record had is unchanged; the intervals sit beside their figures
    assert {k: v for k, v in with_ci.items() if not k.endswith("_ci") and k != "tasks"} == \
        {k: v for k, v in plain.items() if k != "tasks"}
    assert with_ci["acc1_ci"] == cis["acc1_ci"]
    assert with_ci["tasks"]["shape"]["mean_per_class_recall_ci"] == cis["mean_per_class_recall_ci"]
    assert {k: v for k, v in with_ci["tasks"]["shape"].items() if not k.endswith("_ci")} == \
        plain["tasks"]["shape"]
    assert zeroshot.intervals(o, seed=3) == zeroshot.intervals(o, seed=3)  # seeded


@pytest.mark.parametrize("duplicates", [False, True])
def test_query_hits_reproduce_evaluate_and_take_wilsons_interval(duplicates):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 8))
    t2i = np.repeat(np.arange(40), 2)  # two captions per image
    txt = img[t2i] + 1.5 * rng.normal(size=(80, 8))
    texts = [f"caption {i % 50 if duplicates else i}" for i in range(80)]
    if duplicates:  # equal strings have equal embeddings
        first = {}
        for i, t in enumerate(texts):
            txt[i] = txt[first.setdefault(t, i)]
    recall = retrieval.evaluate(img, txt, t2i, ks=(1, 5, 10), texts=texts)
    hits = retrieval.query_hits(img, txt, t2i, ks=(1, 5, 10), texts=texts)
    for direction in ("image_to_text", "text_to_image"):
        for k in ("r1", "r5", "r10"):
            assert np.mean(hits[direction][k]) == recall[direction][k]
    assert len(hits["image_to_text"]["r1"]) == 40
    assert len(hits["text_to_image"]["r1"]) == (50 if duplicates else 80)  # distinct texts
    cis = retrieval.recall_intervals(hits)
    assert cis["text_to_image"]["r5"] == pytest.approx(_wilson(hits["text_to_image"]["r5"]),
                                                       abs=1e-12)
    # CLIP_benchmark's protocol (texts=None) too
    plain = retrieval.query_hits(img, txt, t2i, ks=(1,))
    assert np.mean(plain["text_to_image"]["r1"]) == \
        retrieval.evaluate(img, txt, t2i, ks=(1,))["text_to_image"]["r1"]


def test_the_retrieval_figure_carries_the_recorded_intervals():
    from unirepclip.viz import plots

    recall = {"image_to_text": {"r1": 0.5, "r5": 0.8}, "text_to_image": {"r1": 0.4, "r5": 0.9}}
    cis = {"image_to_text": {"r1": [0.45, 0.56], "r5": [0.75, 0.84]},
           "text_to_image": {"r1": [0.35, 0.46], "r5": [0.86, 0.93]}}
    fig = plots.retrieval_recall(recall, title="t", ks=(1, 5), intervals=cis)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if hasattr(c, "lines") and c.lines[2]]
    ends = sorted(tuple(np.round(seg[:, 1], 6)) for b in bars for seg in b.lines[2][0].get_segments())
    assert ends == [(0.35, 0.46), (0.45, 0.56), (0.75, 0.84), (0.86, 0.93)]
    plain = plots.retrieval_recall(recall, title="t", ks=(1, 5))
    assert not [c for c in plain.axes[0].containers if hasattr(c, "lines") and c.lines[2]]
