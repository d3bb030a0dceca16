"""Retrieval recall@k on a hand-built geometry and against a brute-force loop."""
import numpy as np
import pytest
import torch

from unirepclip.eval import retrieval


def _unit(deg):
    a = np.deg2rad(np.asarray(deg, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


# Images at 0, 90, 180 degrees; captions: t0, t1 of image 0; t2, t3 of image 1; t4 of image 2.
IMAGES = _unit([0, 90, 180])
TEXTS = _unit([10, 80, 105, 170, 260])
T2I = np.array([0, 0, 1, 1, 2])


def test_hand_computed_both_directions():
    # image -> text (angle gaps): image 0 sees t0 first (rank 0); image 1 sees t1 (10 deg,
    # a caption of image 0) before its own t2 (15 deg): rank 1; image 2 sees t3 (10), t2 (75),
    # then its t4 (80): rank 2.
    # text -> image: t0 -> image 0 first; t1 -> image 1 (10) before image 0 (80): rank 1;
    # t2 -> image 1 first; t3 -> image 2 (10) before image 1 (80): rank 1; t4 -> image 2 first.
    r = retrieval.evaluate(IMAGES, TEXTS, T2I, ks=(1, 2, 3))
    assert r["image_to_text"] == pytest.approx({"r1": 1 / 3, "r2": 2 / 3, "r3": 1.0})
    assert r["text_to_image"] == pytest.approx({"r1": 3 / 5, "r2": 1.0, "r3": 1.0})


def test_default_keys_and_scale_invariance():
    scaled = IMAGES * np.array([[3.0], [0.5], [7.0]])
    r = retrieval.evaluate(torch.from_numpy(scaled), TEXTS * 2, torch.from_numpy(T2I))
    assert set(r) == {"image_to_text", "text_to_image"}
    assert set(r["image_to_text"]) == {"r1", "r5", "r10"}
    assert r == retrieval.evaluate(IMAGES, TEXTS, T2I)
    # k beyond the number of candidates counts every query
    assert r["image_to_text"]["r10"] == 1.0 and r["text_to_image"]["r5"] == 1.0


def test_against_brute_force_loop():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(20, 8))
    t2i = np.concatenate([np.arange(20), rng.integers(0, 20, size=40)])
    txt = img[t2i] + rng.normal(scale=1.5, size=(60, 8))
    img_n = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt_n = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    sim = img_n @ txt_n.T
    i2t = [np.mean([np.isin(np.argsort(-sim[i])[:k], np.flatnonzero(t2i == i)).any()
                    for i in range(20)]) for k in (1, 5, 10)]
    t2i_r = [np.mean([t2i[j] in np.argsort(-sim[:, j])[:k] for j in range(60)]) for k in (1, 5, 10)]
    r = retrieval.evaluate(img, txt, t2i)
    assert [r["image_to_text"][f"r{k}"] for k in (1, 5, 10)] == pytest.approx(i2t)
    assert [r["text_to_image"][f"r{k}"] for k in (1, 5, 10)] == pytest.approx(t2i_r)
    assert 0 < r["image_to_text"]["r1"] < r["image_to_text"]["r10"] <= 1  # not a degenerate case


def test_identical_embeddings_give_perfect_recall():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 16))
    r = retrieval.evaluate(f, f, np.arange(30))
    assert r["image_to_text"]["r1"] == 1.0 and r["text_to_image"]["r1"] == 1.0


@pytest.mark.parametrize("args, match", [
    ((IMAGES, TEXTS, np.array([0, 0, 1, 1, 1])), "image 2 has no caption"),
    ((IMAGES, TEXTS, np.array([0, 0, 1, 1, 3])), "image index 3"),
    ((IMAGES, TEXTS, np.array([0, 1, 2])), "text_to_image has 3 entries"),
    ((IMAGES, TEXTS[:, :1], T2I), "dim"),
    ((np.zeros((3, 2)), TEXTS, T2I), "all zeros"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        retrieval.evaluate(*args)


# --- identical texts are one text; ties count against the query (issue 15, section 3) --------
# img0 and img2 score exactly the same against "a" (each is one unit component of it)
S = 1 / np.sqrt(2)
DUP_IMAGES = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
DUP_TEXTS = np.array([[S, 0, S], [0, 1.0, 0], [S, 0, S]])  # "a" (img0), "b" (img1), "a" (img2)
DUP_STRINGS = ["a", "b", "a"]
DUP_T2I = np.array([0, 1, 2])


def test_identical_captions_are_one_text_with_every_image_a_positive():
    # per caption (CLIP_benchmark, ties by index): img2's own t2 ties img0's t0, which comes
    # first: rank 1; the query t2 ties its image 2 with image 0, which comes first: rank 1
    old = retrieval.evaluate(DUP_IMAGES, DUP_TEXTS, DUP_T2I, ks=(1, 2))
    assert old == {"image_to_text": pytest.approx({"r1": 2 / 3, "r2": 1.0}),
                   "text_to_image": pytest.approx({"r1": 2 / 3, "r2": 1.0})}
    # one text "a" describing images 0 and 2: every image finds its text first, and both
    # queries ("a", "b") find one of their images first
    new = retrieval.evaluate(DUP_IMAGES, DUP_TEXTS, DUP_T2I, ks=(1, 2), texts=DUP_STRINGS)
    assert new == {"image_to_text": {"r1": 1.0, "r2": 1.0}, "text_to_image": {"r1": 1.0, "r2": 1.0}}
    first, group = retrieval.group_identical_texts(["b", "a", "b", "c", "a"])
    np.testing.assert_array_equal(first, [0, 1, 3])
    np.testing.assert_array_equal(group, [0, 1, 0, 2, 1])
    with pytest.raises(ValueError, match="texts has 2 entries"):
        retrieval.evaluate(DUP_IMAGES, DUP_TEXTS, DUP_T2I, texts=["a", "b"])


def test_same_recall_whatever_the_order_of_images_and_captions():
    # three distinct texts for six images, with exact ties between distinct texts too
    # (identical embeddings under different strings)
    rng = np.random.default_rng(5)
    img = rng.integers(-2, 3, size=(6, 3)).astype(np.float64) + np.eye(6, 3)
    base = rng.integers(-2, 3, size=(3, 3)).astype(np.float64) + 0.5
    base[2] = base[1]
    strings = ["x", "y", "z", "x", "y", "x"]
    t2i = np.array([0, 1, 2, 3, 4, 5])
    txt = base[[0, 1, 2, 0, 1, 0]]
    ref = retrieval.evaluate(img, txt, t2i, ks=(1, 2, 3), texts=strings)
    orders_differ = False
    for seed in range(12):
        g = np.random.default_rng(seed)
        pi, pt = g.permutation(6), g.permutation(6)
        inv = np.argsort(pi)  # image pi[k] is now row k
        got = retrieval.evaluate(img[pi], txt[pt], inv[t2i[pt]], ks=(1, 2, 3),
                                 texts=[strings[j] for j in pt])
        assert got == ref
        orders_differ |= retrieval.evaluate(img[pi], txt[pt], inv[t2i[pt]], ks=(1, 2, 3)) != \
            retrieval.evaluate(img, txt, t2i, ks=(1, 2, 3))
    assert orders_differ  # per caption with ties by index, the order does matter here


def test_clip_benchmark_protocol_equals_a_brute_force_count():
    # one caption per image, no repeated string, continuous scores (no ties): both protocols
    # are CLIP_benchmark's, counted here with a full sort per query
    rng = np.random.default_rng(7)
    img = rng.normal(size=(25, 6))
    order = rng.permutation(25)            # caption j describes image order[j]
    txt = img[order] + rng.normal(scale=2.5, size=(25, 6))
    sim = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ \
        (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    caption_of = np.argsort(order)          # image i's caption
    i2t = {f"r{k}": np.mean([caption_of[i] in np.argsort(-sim[i])[:k] for i in range(25)])
           for k in (1, 5, 10)}
    t2i = {f"r{k}": np.mean([order[j] in np.argsort(-sim[:, j])[:k] for j in range(25)])
           for k in (1, 5, 10)}
    strings = [f"caption {j}" for j in range(25)]
    for texts in (None, strings):
        r = retrieval.evaluate(img, txt, order, texts=texts)
        assert r["image_to_text"] == pytest.approx(i2t) and r["text_to_image"] == pytest.approx(t2i)
    assert 0 < i2t["r1"] < i2t["r10"] < 1  # not a degenerate case
