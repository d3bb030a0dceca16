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
