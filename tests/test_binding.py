"""The demo world's binding test: the generator (exact masks, correct captions, seeded) in
unirepclip.data.binding, and its scoring, intervals, paired test and generated prose in
unirepclip.eval.binding, against hand-built embeddings and fake results of both signs."""
from __future__ import annotations

import re

import numpy as np
import pytest

from unirepclip.data import binding as bd
from unirepclip.data.synthetic import COLOUR_RGB, COLOURS, SHAPES
from unirepclip.eval import binding as eb
from unirepclip.eval.uncertainty import Interval, wilson_interval

PHRASE = re.compile(r"an? (\w+) (\w+)")


def _objects(caption: str):
    """(colour, shape) pairs of a caption, in order of mention, parsed independently."""
    parts = caption.split(" and ")
    assert len(parts) == 2, caption
    out = [PHRASE.fullmatch(p).groups() for p in parts]
    for colour, _ in out:  # the article agrees with the colour word
        assert caption.count(f"an {colour}") + caption.count(f"a {colour}") >= 1
    return out


def test_captions_by_hand():
    objs = [("red", "circle"), ("orange", "square")]
    assert bd.pair_caption(objs) == "a red circle and an orange square"
    assert bd.negative_caption("swap_att", objs, 0, "") == "an orange circle and a red square"
    assert bd.negative_caption("swap_obj", objs, 0, "") == "a red square and an orange circle"
    assert bd.negative_caption("replace_att", objs, 1, "green") == \
        "a red circle and a green square"
    assert bd.negative_caption("replace_obj", objs, 0, "star") == \
        "a red star and an orange square"
    with pytest.raises(ValueError, match="category='add_att'"):
        bd.negative_caption("add_att", objs, 0, "")


@pytest.fixture(scope="module")
def stimuli():
    return bd.binding_set(40, seed=3)


def test_masks_are_exactly_each_objects_pixels(stimuli):
    s = stimuli.images.shape[1]
    for i in range(len(stimuli)):
        image, masks = stimuli.images[i], stimuli.masks[i]
        assert masks[0].any() and masks[1].any()
        assert not (masks[0] & masks[1]).any()
        assert not masks[0][:, s // 2:].any() and not masks[1][:, :s // 2].any()  # halves
        for k in range(2):
            rgb = np.array(COLOUR_RGB[stimuli.colours[i, k]], np.uint8)
            painted = (image == rgb).all(-1)
            assert np.array_equal(painted, masks[k]), (i, k)  # exactly, no more, no less
        background = image[~(masks[0] | masks[1])]
        assert (background == background[0]).all()  # one plain grey elsewhere
        assert len(set(background[0].tolist())) == 1


def test_captions_name_the_image_and_each_negative_changes_what_its_category_says(stimuli):
    for i in range(len(stimuli)):
        present = [(stimuli.colours[i, k], stimuli.shapes[i, k]) for k in range(2)]
        assert len({c for c, _ in present}) == 2 and len({s for _, s in present}) == 2
        mentioned = [present[k] for k in stimuli.order[i]]
        for category, pairs in stimuli.captions.items():
            pos, neg = (_objects(t) for t in pairs[i])
            assert pos == mentioned, (i, category)
            assert set(neg) != set(pos)
            if category.startswith("swap"):
                # the same words bound the other way: every colour and shape still present
                assert sorted(w for o in neg for w in o) == sorted(w for o in pos for w in o)
                assert set(neg) == {(pos[1][0], pos[0][1]), (pos[0][0], pos[1][1])}
            else:
                k = 0 if category == "replace_att" else 1
                changed = [j for j in range(2) if neg[j][k] != pos[j][k]]
                assert len(changed) == 1 and neg[changed[0]][1 - k] == pos[changed[0]][1 - k]
                new = neg[changed[0]][k]
                assert new not in {o[k] for o in present}
                assert new in (COLOURS if k == 0 else SHAPES)


def test_order_of_mention_and_replaced_object_vary(stimuli):
    assert 0 < stimuli.order[:, 0].sum() < len(stimuli)
    firsts = [_objects(n)[0] != _objects(p)[0] for p, n in stimuli.captions["replace_att"]]
    assert 0 < sum(firsts) < len(firsts)


def test_seeded_and_independent_of_the_number_rendered(stimuli):
    again = bd.binding_set(40, seed=3)
    fewer = bd.binding_set(7, seed=3)
    assert np.array_equal(again.images, stimuli.images)
    assert again.captions == stimuli.captions
    assert np.array_equal(fewer.images, stimuli.images[:7])
    assert fewer.captions["swap_att"] == stimuli.captions["swap_att"][:7]
    assert len({im.tobytes() for im in stimuli.images}) == len(stimuli)  # every item its own
    other = bd.binding_set(7, seed=4)
    assert not np.array_equal(other.images, fewer.images)


def test_bad_arguments_are_one_line_naming_them():
    with pytest.raises(ValueError, match="n_images=0"):
        bd.binding_set(0)
    with pytest.raises(ValueError, match="categories"):
        bd.binding_set(2, categories=["swap_rel"])
    with pytest.raises(ValueError, match="object_scale=0.6"):
        bd.render_pair(["circle", "star"], ["red", "blue"], object_scale=0.6)
    with pytest.raises(ValueError, match="shapes"):
        bd.render_pair(["circle", "blob"], ["red", "blue"])


def test_outcomes_count_wins_and_ties_as_caption_selection_does():
    st = bd.binding_set(6, seed=1, categories=["swap_att"])
    n = len(st)
    # give each item its own captions, so embeddings can be set per item
    st.captions["swap_att"] = [(f"p{i}", f"n{i}") for i in range(n)]
    images = np.eye(n, n + 1)
    texts = {f"p{i}": images[i] for i in range(n)}
    texts.update({f"n{i}": -images[i] for i in range(n)})
    texts["p1"], texts["n1"] = -images[1], images[1]      # the negative wins item 1
    texts["n2"] = images[2]                               # item 2: an exact tie
    out = eb.binding_outcomes(st, {"images": images, "texts": texts})["swap_att"]
    assert out["outcomes"]["text_correct"].tolist() == [True, False, True, True, True, True]
    assert out["ties"] == 1 and out["outcomes"]["tie"].tolist()[2]
    assert out["text_acc"] == pytest.approx(5 / 6) and out["acc"] == out["text_acc"]
    assert out["image_acc"] == 1.0  # one image per item: 1 by construction
    s = eb.binding_summary({"swap_att": out})["swap_att"]
    assert s["n"] == 6 and s["ties"] == 1 and s["interval"].method == "wilson"
    with pytest.raises(ValueError, match="5 image embeddings for 6 stimuli"):
        eb.binding_outcomes(st, {"images": images[:5], "texts": texts})


def _summary(accs, n=200):
    out = {}
    for c, p in accs.items():
        k = int(round(p * n))
        iv = eb.proportion_interval(np.arange(n) < k)
        side = ("indistinguishable" if iv.contains(0.5) else
                "above" if iv.low > 0.5 else "below")
        out[c] = {"text_acc": iv.estimate, "interval": iv, "ties": 0, "n": n, "vs_chance": side}
    return out


def test_summary_says_which_side_of_chance():
    outcomes = {c: {"outcomes": {"text_correct": np.arange(100) < k}, "ties": 0}
                for c, k in (("swap_att", 50), ("swap_obj", 62), ("replace_att", 38))}
    s = eb.binding_summary(outcomes)
    # Wilson 95% at n = 100: 62/100 -> [0.522, 0.709]; 38/100 -> [0.291, 0.478]
    assert [s[c]["vs_chance"] for c in outcomes] == ["indistinguishable", "above", "below"]
    assert s["swap_obj"]["interval"].low == pytest.approx(0.5220, abs=1e-4)


@pytest.mark.parametrize("accs, reading", [
    ({"swap_att": 0.9, "swap_obj": 0.85, "replace_att": 0.95, "replace_obj": 0.9},
     "It binds colours to shapes"),
    ({"swap_att": 0.5, "swap_obj": 0.52, "replace_att": 0.8, "replace_obj": 0.5},
     "(replace_att above chance) but does not bind them"),
    ({"swap_att": 0.5, "swap_obj": 0.35, "replace_att": 0.45, "replace_obj": 0.5},
     "above chance in no category"),
    ({"swap_att": 0.8, "swap_obj": 0.5, "replace_att": 0.8, "replace_obj": 0.8},
     "mixed: swap_att above chance, swap_obj not"),
])
def test_the_sentence_follows_the_numbers_whichever_way(accs, reading):
    text = eb.describe_binding("M", _summary(accs))
    assert reading in text
    for other in ("It binds", "does not bind", "no category", "mixed"):
        if other not in reading:
            assert other not in text
    if accs["swap_obj"] == 0.35:
        assert "swap_obj 35% [29%, 42%] (below chance)" in text


def test_paired_comparison_is_exact_mcnemar_on_the_same_items():
    # hand table: A right and B wrong on 9 items, the reverse on 1: p = 2 * 11/1024 = 0.0215
    a = np.array([True] * 9 + [False] + [True] * 10)
    b = np.array([False] * 9 + [True] + [True] * 10)
    res = eb.binding_comparison({"swap_att": {"outcomes": {"text_correct": a}}},
                                {"swap_att": {"outcomes": {"text_correct": b}},
                                 "swap_obj": {"outcomes": {"text_correct": b}}}, names=("A", "B"))
    assert list(res) == ["swap_att"]
    t = res["swap_att"]
    assert (t.details["a_only"], t.details["b_only"]) == (9, 1)
    assert t.p_value == pytest.approx(22 / 1024)
    assert eb.describe_comparison(res) == "swap_att: A higher than B by 0.4 (p = 0.0215)."
    assert isinstance(t.difference, Interval)


def test_records_keep_each_figure_under_its_own_key():
    outcomes = {"swap_att": {"outcomes": {"text_correct": np.arange(10) < 7}, "ties": 2},
                "replace_obj": {"outcomes": {"text_correct": np.arange(10) < 3}, "ties": 0}}
    rec = eb.binding_records("c.b.m", eb.binding_summary(outcomes))
    lo, hi = wilson_interval(7, 10)
    assert rec["c.b.m.swap_att.text_acc"] == 0.7 and rec["c.b.m.replace_obj.text_acc"] == 0.3
    assert (rec["c.b.m.swap_att.low"], rec["c.b.m.swap_att.high"]) == (lo, hi)
    assert rec["c.b.m.swap_att.ties"] == 2 and rec["c.b.m.replace_obj.ties"] == 0
    assert rec["c.b.m.swap_att.n"] == 10 and len(rec) == 12
    test = eb.binding_comparison(outcomes, {"swap_att": {"outcomes": {
        "text_correct": np.arange(10) < 2}}}, names=("a", "b"))
    crec = eb.comparison_records("p", test)
    assert (crec["p.swap_att.a_only"], crec["p.swap_att.b_only"]) == (5, 0)
    assert crec["p.swap_att.difference"] == pytest.approx(0.5)
    assert crec["p.swap_att.p_value"] == pytest.approx(2 / 32)  # 5 discordant, all one way
    result = {"text_acc": 0.75, "image_acc": 1.0, "acc": 0.75, "ties": 1, "n": 4,
              "outcomes": {"text_correct": np.array([1, 1, 0, 1], bool)}}
    srec = eb.selection_records("s", result)
    assert srec["s.text_acc"] == 0.75 and srec["s.image_acc"] == 1.0 and srec["s.n"] == 4
    assert (srec["s.text_acc_low"], srec["s.text_acc_high"]) == wilson_interval(3, 4)


def test_other_models_entries_are_one_vocabulary_for_every_notebook():
    from unirepclip.models.params import check_other_models, other_model_entries

    # a bare name takes the shipped demo weights where the recipe trains the model, else '' (random,
    # or a local-dir:/hf-hub: model's own); '=' names the weights; keys are the models' own
    assert other_model_entries(["ViT-Demo", "UniRepLKNet-Demo-SmallKernel=", "ViT-B-32=/w/b.pt",
                                "hf-hub:org/m"]) == [
        ("ViT-Demo", "demo", "demo_vit"), ("UniRepLKNet-Demo-SmallKernel", "", "demo_small_kernel"),
        ("ViT-B-32", "/w/b.pt", "vit_b_32"), ("hf-hub:org/m", "", "m")]
    with pytest.raises(ValueError, match="other_models: '=x' is not 'name' or 'name=checkpoint'"):
        other_model_entries(["=x"])
    with pytest.raises(ValueError, match="share a results key"):
        other_model_entries(["ViT-Demo", "ViT-Demo=demo"])
    assert check_other_models(["ViT-Demo", "ViT-B-32="], {}) is None
    assert "ViT-B-32: 'demo' names the shipped weights of" in check_other_models(["ViT-B-32=demo"], {})
    assert "No-Such-Model: must be" in check_other_models(["No-Such-Model"], {})
