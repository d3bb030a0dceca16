"""Shape bias by the model-vs-human protocol (unirepclip.eval.shape_bias), its shipped data
(unirepclip.data.modelvshuman), the cue-conflict folder reader (unirepclip.data.cue_conflict), the
bootstrap and the generated sentences (unirepclip.analysis.cue_conflict).

Truth is independent of the code: hand-counted tables, a hand-built probability vector, the
toolbox's raw data (whose mean shape bias the project's README records from its own check), a
folder of generated images in the release layout, and fake results of both signs."""
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unirepclip.analysis.cue_conflict import describe_difference
from unirepclip.data import modelvshuman as mvh
from unirepclip.data.cue_conflict import CueConflictDataset, read_cue_conflict
from unirepclip.eval.shape_bias import (
    aggregate_imagenet_16, bootstrap_difference, bootstrap_shape_bias, decide,
    human_reference, shape_bias, toolbox_decisions)
from unirepclip.eval.uncertainty import Interval

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "model-vs-human"


# --- the metric against hand-counted tables -------------------------------------------------------
# shape, texture, decision; counted by hand: rows 0-1 are shape == texture (dropped whatever they
# answer); of the 8 kept rows, shape answers are rows 2, 3, 6 (cat, cat, dog) = 3, texture answers
# rows 4, 8 = 2, other answers rows 5, 7, 9 = 3.
TABLE = [
    ("cat", "cat", "cat"),        # dropped (a "shape" answer that must not count)
    ("dog", "dog", "bear"),       # dropped
    ("cat", "dog", "cat"),        # shape
    ("cat", "clock", "cat"),      # shape
    ("cat", "bear", "bear"),      # texture
    ("dog", "cat", "knife"),      # other
    ("dog", "bear", "dog"),       # shape
    ("dog", "oven", "na"),        # other (no answer)
    ("oven", "dog", "dog"),       # texture
    ("oven", "cat", "dog"),       # other: a third class, neither the shape nor the texture
]


def _cols(rows):
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def test_shape_bias_matches_the_hand_count():
    r = shape_bias(*_cols(TABLE))
    assert (r.n_shape, r.n_texture, r.n_other, r.n_dropped) == (3, 2, 3, 2)
    assert r.shape_bias == pytest.approx(3 / 5)
    assert r.shape_rate == pytest.approx(3 / 8) and r.texture_rate == pytest.approx(2 / 8)
    # per shape class: cat 2 shape / 1 texture; dog 1 shape / 0 texture; oven 0 / 1
    assert r.per_class == pytest.approx({"cat": 2 / 3, "dog": 1.0, "oven": 0.0})


def test_other_answers_and_dropped_rows_change_nothing():
    base = shape_bias(*_cols(TABLE)).shape_bias
    more = TABLE + [("cat", "dog", "elephant")] * 7 + [("bird", "bird", "bird")] * 5
    r = shape_bias(*_cols(more))
    assert r.shape_bias == base and r.n_other == 10 and r.n_dropped == 7


def test_a_class_without_shape_or_texture_answers_is_nan_and_classes_keep_their_order():
    r = shape_bias(["cat", "dog"], ["dog", "cat"], ["knife", "knife"], classes=["dog", "cat", "car"])
    assert math.isnan(r.shape_bias)
    assert list(r.per_class) == ["dog", "cat", "car"]
    assert all(math.isnan(v) for v in r.per_class.values())


def test_misaligned_columns_are_refused():
    with pytest.raises(ValueError, match="aligned"):
        shape_bias(["cat"], ["dog", "cat"], ["cat"])


# --- the shipped data and the human reference --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(mvh.SHA256))
def test_shipped_copies_are_the_toolbox_files(name):
    shipped = mvh.HERE / name
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == mvh.SHA256[name]
    source = SOURCE / name if name.endswith(".json") else SOURCE / "raw-data" / "cue-conflict" / name
    if source.is_file():
        assert shipped.read_bytes() == source.read_bytes()


def test_human_reference_is_computed_from_the_raw_data():
    ref = human_reference()
    assert len(ref["subjects"]) == 10
    for r in ref["subjects"].values():
        assert r.n_dropped == 80 and r.n_conflict == 1200
    assert round(ref["mean"], 4) == 0.9576
    assert round(ref["min"], 3) == 0.919 and round(ref["max"], 3) == 0.987


def test_texture_class_comes_from_the_last_dash_part():
    assert mvh.texture_of("0002_s5n_s01_0_bird_00_bird2-clock3.png") == "clock"
    assert mvh.texture_of("airplane1-bicycle2.png") == "bicycle"
    with pytest.raises(ValueError, match="no '-'"):
        mvh.texture_of("airplane1.png")


# --- the toolbox's 16-class aggregation, against a hand-built probability vector --------------------
def test_aggregation_averages_each_category_over_its_imagenet_classes():
    idx = mvh.imagenet_indices()
    assert list(idx) == list(mvh.CATEGORIES) and sum(len(v) for v in idx.values()) == 207
    p = np.zeros((1, 1000))
    p[0, 404] = 0.30                      # airplane: its only class
    p[0, [294, 295, 296, 297]] = 0.10     # bear: four classes at 0.10 -> mean 0.10
    p[0, 8] = 0.49                        # bird: one of its 49 classes -> mean 0.01
    agg = aggregate_imagenet_16(p)
    assert agg.shape == (1, 16)
    expected = np.zeros(16)
    expected[mvh.CATEGORIES.index("airplane")] = 0.30
    expected[mvh.CATEGORIES.index("bear")] = 0.10
    expected[mvh.CATEGORIES.index("bird")] = 0.01
    np.testing.assert_allclose(agg[0], expected)
    assert decide(agg, mvh.CATEGORIES) == ["airplane"]
    # the mean, not the sum: bird's total mass 0.49 beats airplane's 0.30 only under a sum
    assert decide(agg, mvh.CATEGORIES) != ["bird"]


def test_toolbox_rule_on_features_picks_the_category_of_the_strongest_imagenet_class():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 1000)) * 1e-3
    w[:, 404] = 0
    w[0, 404] = 1.0                       # the feature along axis 0 is "airliner" (airplane)
    feats = np.zeros((1, 8))
    feats[0, 0] = 1.0
    assert toolbox_decisions(feats, w) == ["airplane"]


# --- the reader, on a tiny folder in the release layout ---------------------------------------------
def _write(path: Path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_reader_takes_shape_from_the_folder_and_texture_from_the_name(tmp_path):
    root = tmp_path / "cue-conflict"
    for rel in ("cat/cat1-dog2.png", "cat/cat2-cat3.png", "oven/oven10-clock1.png",
                "oven/notes.txt", "oven/.hidden.png"):
        _write(root / rel) if rel.endswith(".png") else (root / rel).write_text("x")
    st = read_cue_conflict(root)
    assert [p.name for p in st.paths] == ["cat1-dog2.png", "cat2-cat3.png", "oven10-clock1.png"]
    assert st.shape == ["cat", "cat", "oven"] and st.texture == ["dog", "cat", "clock"]
    image, i = CueConflictDataset(st, transform=lambda im: im.size)[2]
    assert (image, i) == ((8, 8), 2)


def test_reader_errors_name_the_folder_and_the_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        read_cue_conflict(missing)
    assert str(missing) in str(e.value) and "<shape class>" in str(e.value)
    assert "\n" not in str(e.value)
    _write(tmp_path / "a" / "zebra" / "zebra1-cat1.png")
    with pytest.raises(ValueError, match=r"zebra.*not classes"):
        read_cue_conflict(tmp_path / "a")
    _write(tmp_path / "b" / "cat" / "cat1-zebra1.png")
    with pytest.raises(ValueError, match="texture 'zebra'"):
        read_cue_conflict(tmp_path / "b")


# --- the bootstrap and the sentences ---------------------------------------------------------------
def _fake(n_shape, n_texture, n_other, seed=0):
    rows = [("cat", "dog", "cat")] * n_shape + [("cat", "dog", "dog")] * n_texture \
        + [("cat", "dog", "oven")] * n_other
    order = np.random.default_rng(seed).permutation(len(rows))
    return [[rows[i][k] for i in order] for k in range(3)]


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    s, t, d = _fake(60, 40, 20)
    a = bootstrap_shape_bias(s, t, d, seed=3)
    assert a == bootstrap_shape_bias(s, t, d, seed=3)
    assert a != bootstrap_shape_bias(s, t, d, seed=4)
    assert a.estimate == pytest.approx(0.6) and a.low < 0.6 < a.high
    # binomial standard error of 0.6 over 100 decisions is 0.049: a 95% interval ~ +-0.1
    assert 0.1 < a.high - a.low < 0.3


def test_paired_difference_is_zero_for_identical_decisions():
    s, t, d = _fake(50, 50, 10)
    diff = bootstrap_difference(s, t, d, d)
    assert (diff.estimate, diff.low, diff.high) == (0.0, 0.0, 0.0)


def _interval(est, lo, hi):
    return Interval(est, lo, hi, 0.95, "bootstrap-bca", 100)


def test_resamples_without_shape_or_texture_decisions_are_counted_then_refused():
    # 4 decisions among 20 stimuli: a resample of only the 16 others (probability
    # 0.8**20 = 0.0115, ~23 of 2000) has no shape bias; counted, and over 1% refused
    s, t, d = _fake(2, 2, 16)
    with pytest.raises(ValueError, match=r"undefined \(NaN\) in \d+ of 2000 resamples"):
        bootstrap_shape_bias(s, t, d)
    loose = bootstrap_shape_bias(s, t, d, max_undefined=0.05)
    assert 5 < loose.n_undefined < 50 and loose.method == "bootstrap-percentile (fallback)"
    assert loose.estimate == 0.5 and 0 <= loose.low < 0.5 < loose.high <= 1
    # 0.75**40 = 1e-5: nothing undefined in practice, the BCa interval
    s, t, d = _fake(5, 5, 30)
    ok = bootstrap_shape_bias(s, t, d)
    assert (ok.n_undefined, ok.method) == (0, "bootstrap-bca")
    # no shape or texture decision at all: the undefined interval, not a refusal
    none = bootstrap_shape_bias(*_fake(0, 0, 10))
    assert none.method == "undefined" and not none.defined


@pytest.mark.parametrize("sign", [1, -1])
def test_the_sentence_follows_the_sign_of_the_difference(sign):
    big, small = _interval(0.7, 0.6, 0.8), _interval(0.4, 0.3, 0.5)
    a, b = (big, small) if sign > 0 else (small, big)
    diff = _interval(a.estimate - b.estimate, *sorted((sign * 0.15, sign * 0.45)))
    text = describe_difference("the demo", a, "the control", b, diff)
    assert ("higher than the control's" in text) == (sign > 0)
    assert ("lower than the control's" in text) == (sign < 0)
    assert "by 0.30" in text and "excludes 0" in text and "distinguish the two" in text
    assert "do not distinguish" not in text
    # the same values with an undefined interval of the difference: it says so, claims nothing
    undefined = describe_difference("the demo", a, "the control", b,
                                    _interval(a.estimate - b.estimate, math.nan, math.nan))
    assert ("higher than the control's" in undefined) == (sign > 0)
    assert "undefined to undefined, is undefined: no verdict" in undefined
    assert "excludes 0" not in undefined and "the stimuli distinguish" not in undefined
    no_diff = describe_difference("the demo", a, "the control", _interval(b.estimate, math.nan,
                                                                            math.nan))
    assert "cannot be compared" in no_diff and "distinguish" not in no_diff


def test_the_sentence_says_when_the_interval_does_not_separate_them():
    a, b = _interval(0.55, 0.45, 0.65), _interval(0.5, 0.4, 0.6)
    text = describe_difference("the demo", a, "the control", b, _interval(0.05, -0.05, 0.15))
    assert "higher than the control's (0.50) by 0.05" in text
    assert "includes 0" in text and "do not distinguish" in text
    no_diff = describe_difference("the demo", a, "the control", b)
    assert "intervals overlap" in no_diff
    apart = describe_difference("the demo", _interval(0.3, 0.25, 0.35), "the control", b)
    assert "lower" in apart and "do not overlap" in apart


def test_both_rules_run_end_to_end_on_a_generated_folder(tmp_path):
    import torch

    from unirepclip import create_model, get_tokenizer
    from unirepclip.data.sets import val_transform
    from unirepclip.eval.shape_bias import cue_conflict_classifiers, zero_shot_decisions
    from unirepclip.eval.zeroshot import encode_images
    from unirepclip.models.pretrained import MODEL_NAME, resolve_checkpoint

    for i, rel in enumerate(("cat/cat1-dog2.png", "oven/oven1-clock1.png", "bird/bird1-bird2.png")):
        _write(tmp_path / rel, colour=(40 * i, 200, 90))
    stimuli = read_cue_conflict(tmp_path)
    model = create_model(MODEL_NAME, resolve_checkpoint("demo", MODEL_NAME))
    clf = cue_conflict_classifiers(model, get_tokenizer(MODEL_NAME), max_templates=2)
    assert tuple(clf["zero_shot_16"].shape)[1] == 16 and tuple(clf["imagenet_1000"].shape)[1] == 1000
    data = CueConflictDataset(stimuli, val_transform(model))
    x = torch.stack([data[j][0] for j in range(len(data))])
    feats, _ = encode_images(model, [x], progress=False)
    for decisions in (zero_shot_decisions(feats, clf["zero_shot_16"]),
                      toolbox_decisions(feats, clf["imagenet_1000"])):
        assert len(decisions) == 3 and set(decisions) <= set(mvh.CATEGORIES)
        r = shape_bias(stimuli.shape, stimuli.texture, decisions)
        assert r.n_dropped == 1 and r.n_conflict == 2
