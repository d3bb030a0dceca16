"""Paired tests between a sweep's settings (issue 25): the per-item outcomes a notebook saves,
each setting against the first on the same items (exact McNemar on a hand-counted table, the
paired bootstrap for recall and mean per-class recall), settings scored on other items refused,
and the sweep page's table with a plain verdict."""
import numpy as np
import pytest

from unirepclip.eval import uncertainty as u
from unirepclip.workbook.report.pages import render_sweep_index
from unirepclip.workbook.sweep.compare import paired_tests


def _correct(a_only, b_only, both=40, neither=12):
    """Per-item correctness of two settings with the given discordant counts."""
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def _save(folder, slug, arrays):
    u.save_outcomes(folder / slug / "items" / "02_zeroshot.npz", arrays)


def test_each_setting_against_the_first_by_exact_mcnemar(tmp_path):
    a, b = _correct(a_only=7, b_only=1)
    n = len(a)
    items = np.arange(n)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, n)
    _save(tmp_path, "first", {"zeroshot:items": items, "zeroshot.acc1": b,
                              "zeroshot.mean_per_class_recall:labels": labels,
                              "zeroshot.mean_per_class_recall:predictions": np.where(b, labels, 0),
                              "retrieval:items": items, "retrieval.text_to_image.r5": b})
    _save(tmp_path, "second", {"zeroshot:items": items, "zeroshot.acc1": a,
                               "zeroshot.mean_per_class_recall:labels": labels,
                               "zeroshot.mean_per_class_recall:predictions": np.where(a, labels, 0),
                               "retrieval:items": items, "retrieval.text_to_image.r5": a})
    _save(tmp_path, "other_images", {"zeroshot:items": items + 1, "zeroshot.acc1": a})
    (tmp_path / "not_run").mkdir()
    settings = [{"slug": s} for s in ("first", "not_run", "second", "other_images")]
    columns = [{"key": "zeroshot.acc1", "label": "top-1", "fmt": ".1%"},
               {"key": "zeroshot.mean_per_class_recall", "label": "mpcr", "fmt": ".1%"},
               {"key": "retrieval.text_to_image.r5", "label": "r5", "fmt": ".1%"},
               {"key": "explore.n_images", "label": "n", "fmt": None}]
    rows = paired_tests(tmp_path, settings, columns)
    by = {(r["slug"], r["key"]): r for r in rows}
    acc = by["second", "zeroshot.acc1"]
    # 7 discordant items for "second", 1 for "first": p = 2 (C(8,0) + C(8,1)) / 2^8 = 18/256
    assert acc["p_value"] == pytest.approx(18 / 256, rel=1e-12) and acc["test"] == "mcnemar-exact"
    assert acc["against"] == "first" and acc["difference"] == pytest.approx(6 / n)
    assert acc["low"] <= 6 / n <= acc["high"]
    assert acc["verdict"].startswith("not distinguishable")
    assert by["second", "retrieval.text_to_image.r5"]["test"] == "paired-bootstrap"
    mpcr = by["second", "zeroshot.mean_per_class_recall"]
    assert mpcr["test"] == "paired-bootstrap"
    assert mpcr["a"] == pytest.approx(u.mean_per_class_recall(labels, np.where(a, labels, 0)))
    assert by["other_images", "zeroshot.acc1"]["verdict"] == \
        "not paired: the two scored different items"
    assert ("other_images", "retrieval.text_to_image.r5") not in by  # nothing saved: no row
    assert not any(r["key"] == "explore.n_images" for r in rows)  # no per-item outcomes
    assert paired_tests(tmp_path, settings[:2], columns) == []  # one setting with outcomes

    page = render_sweep_index({"settings": settings, "paired": rows})
    text = " ".join(page.split())
    assert "Paired tests on the same items" in page
    assert (f"<td>second</td><td>first</td><td>top-1</td><td class=\"num\">"
            f"{100 * a.mean():.1f}% vs {100 * b.mean():.1f}%</td>") in text
    assert "<td class=\"num\">0.07</td><td>mcnemar-exact</td><td>not distinguishable</td>" in text


def test_a_clear_difference_is_said_which_way():
    a, b = _correct(a_only=30, b_only=2)
    t = u.paired_test_of("zeroshot.acc1", {"zeroshot:items": np.arange(len(a)), "zeroshot.acc1": a},
                         {"zeroshot:items": np.arange(len(a)), "zeroshot.acc1": b},
                         names=("wide", "narrow"))
    assert t.p_value < 1e-6 and t.verdict.startswith("wide higher than narrow by")


def test_a_notebooks_outcomes_move_with_its_other_outputs(tmp_path):
    """The runner stages a notebook's outputs and moves the complete set into the report folder:
    its per-item outcomes go with them, and a rerun that saves none leaves none behind."""
    from unirepclip.workbook.run.folder import commit_outputs

    out, stage = tmp_path / "out", tmp_path / "stage"
    out.mkdir()
    u.save_outcomes(stage / "items" / "02_zeroshot.npz", {"zeroshot.acc1": np.ones(3, bool)})
    commit_outputs(out, stage, "02_zeroshot")
    assert u.load_outcomes(out / "items" / "02_zeroshot.npz")["zeroshot.acc1"].tolist() == [1, 1, 1]
    assert not (stage / "items" / "02_zeroshot.npz").exists()
    commit_outputs(out, stage, "02_zeroshot")  # the rerun saved none
    assert not (out / "items" / "02_zeroshot.npz").exists()
