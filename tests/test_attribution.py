"""Attribution wrapper, methods, mask metrics and the randomization check."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unirepclip
from unirepclip.analysis.attribution import (METHODS, SimilarityForward, _randomize, attribute,
                                    cascading_randomization, chance_level, mask_metrics,
                                    mass_in_mask, pointing_game, randomization_steps)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return unirepclip.create_model("UniRepLKNet-Demo")


@pytest.fixture
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def texts():
    return torch.randn(2, 64, generator=torch.Generator().manual_seed(2))


def cosine(model, x, t):
    """Independent truth: torch's cosine similarity of the raw embeddings."""
    return F.cosine_similarity(model.encode_image(x), t.expand(x.shape[0], -1), dim=-1)


def test_wrapper_matches_autograd_of_the_cosine_similarity(model, images, texts):
    from captum.attr import Saliency

    for t in (texts[0], texts):  # one caption for all, one per image
        x = images.clone().requires_grad_(True)
        expected = cosine(model, x, t)
        (grad,) = torch.autograd.grad(expected.sum(), x)
        sim = SimilarityForward(model, t)(images)
        torch.testing.assert_close(sim, expected.detach(), rtol=1e-5, atol=1e-6)
        got = Saliency(SimilarityForward(model, t)).attribute(images.clone().requires_grad_(),
                                                             abs=False)
        torch.testing.assert_close(got, grad, rtol=1e-4, atol=1e-7)
        maps = attribute("saliency", model, images, t, batch_size=1)
        np.testing.assert_allclose(maps, grad.abs().sum(1).numpy(), rtol=1e-4, atol=1e-7)


def test_wrapper_rejects_mismatched_texts(model, images):
    with pytest.raises(ValueError, match="rows"):
        SimilarityForward(model, torch.randn(3, 64))(images)
    with pytest.raises(ValueError, match="dim"):
        SimilarityForward(model, torch.randn(32))(images)
    with pytest.raises(TypeError, match="encode_image"):
        SimilarityForward(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="stage"):
        attribute("gradcam", model, images, torch.randn(64), stage=4)
    with pytest.raises(ValueError, match="method"):
        attribute("lime", model, images, torch.randn(64))


def test_integrated_gradients_complete_and_batching_invariant(model, images, texts):
    # A mid-grey baseline: from an all-zero input the random tower's LayerNorm after a bias-free
    # stem conv is scale invariant, so the whole similarity change would sit at alpha ~ 0 where
    # no quadrature with few steps can see it.
    ig = attribute("integrated_gradients", model, images, texts, n_steps=32, baseline=0.5,
                   internal_batch_size=64)
    with torch.no_grad():
        gap = cosine(model, images, texts) - cosine(model, torch.full_like(images, 0.5), texts)
    # completeness: attributions sum to f(x) - f(baseline)
    np.testing.assert_allclose(ig.reshape(2, -1).sum(1), gap.numpy(), rtol=1e-3)
    small = attribute("integrated_gradients", model, images, texts, n_steps=32, baseline=0.5,
                      batch_size=1, internal_batch_size=8)
    np.testing.assert_allclose(small, ig, rtol=1e-4, atol=1e-6 * np.abs(ig).max())


def test_occlusion_is_the_drop_in_similarity_per_window(model, images, texts):
    occ = attribute("occlusion", model, images, texts, occlusion_window=32, occlusion_stride=32,
                    internal_batch_size=4)
    with torch.no_grad():
        full = cosine(model, images, texts)
        for y0 in (0, 32):
            for x0 in (0, 32):
                masked = images.clone()
                masked[:, :, y0:y0 + 32, x0:x0 + 32] = 0.0
                drop = (full - cosine(model, masked, texts)).numpy()
                patch = occ[:, y0:y0 + 32, x0:x0 + 32]
                np.testing.assert_allclose(patch, np.broadcast_to(drop[:, None, None],
                                                                  patch.shape), rtol=1e-4,
                                           atol=1e-7)


def test_gradcam_matches_its_definition(model, images, texts):
    stage = 2
    layer = model.visual.trunk.stages[stage]
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        sim = cosine(model, images, texts)
        (g,) = torch.autograd.grad(sim.sum(), store["a"])
    finally:
        handle.remove()
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * store["a"]).sum(1, keepdim=True))
    expected = F.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    got = attribute("gradcam", model, images, texts, stage=stage)
    assert got.shape == (2, 64, 64) and (got >= 0).all()
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4,
                               atol=1e-6 * expected.abs().max().item())


def test_smoothgrad_seeded_and_tends_to_saliency_for_small_noise(model, images, texts):
    a = attribute("smoothgrad", model, images, texts, nt_samples=4, random_state=0)
    b = attribute("smoothgrad", model, images, texts, nt_samples=4, random_state=0)
    c = attribute("smoothgrad", model, images, texts, nt_samples=4, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    tiny = attribute("smoothgrad", model, images, texts, nt_samples=2, stdevs=1e-6)
    sal = attribute("saliency", model, images, texts)
    np.testing.assert_allclose(tiny, sal, rtol=1e-2, atol=1e-3 * sal.max())


def test_training_mode_model_is_attributed_in_eval_and_restored(model, images, texts):
    ref = attribute("saliency", model, images, texts)
    model.train()
    try:
        got = attribute("saliency", model, images, texts)
        assert model.training
    finally:
        model.eval()
    np.testing.assert_array_equal(got, ref)


# --- metrics ------------------------------------------------------------------------------------

def square_mask(size=16, lo=4, hi=10):
    m = np.zeros((size, size), dtype=bool)
    m[lo:hi, lo:hi] = True
    return m


def test_map_equal_to_mask_scores_one():
    m = square_mask()
    assert mass_in_mask(m.astype(float), m) == 1.0
    assert pointing_game(m.astype(float), m) == 1.0


def test_uniform_map_scores_the_area_share():
    m = square_mask()
    share = 36 / 256
    assert chance_level(m) == share
    assert mass_in_mask(np.ones((16, 16)), m) == pytest.approx(share)
    assert pointing_game(np.ones((16, 16)), m) == pytest.approx(share)


def test_metrics_hand_computed():
    m = square_mask()
    a = np.zeros((16, 16))
    a[5, 5] = 3.0      # inside
    a[0, 0] = 1.0      # outside
    a[1, 1] = -100.0   # negative evidence does not count as mass
    assert mass_in_mask(a, m) == pytest.approx(0.75)
    assert pointing_game(a, m) == 1.0
    a[0, 0] = 4.0
    assert pointing_game(a, m) == 0.0
    assert np.isnan(mass_in_mask(-np.ones((16, 16)), m))
    with pytest.raises(ValueError, match="differ"):
        mass_in_mask(np.ones((8, 8)), m)


def test_mask_metrics_means():
    m = np.stack([square_mask(), square_mask(lo=0, hi=8)])
    a = np.stack([m[0].astype(float), np.ones((16, 16))])
    r = mask_metrics(a, m)
    assert r["chance"] == pytest.approx((36 / 256 + 64 / 256) / 2)
    assert r["mass_in_mask"] == pytest.approx((1 + 64 / 256) / 2)
    assert r["pointing_game"] == pytest.approx((1 + 64 / 256) / 2)
    assert (r["n"], r["n_no_positive_mass"]) == (2, 0)


# --- randomization ------------------------------------------------------------------------------

def test_randomize_matches_each_tensors_scale():
    lin = torch.nn.Linear(200, 100)
    torch.nn.init.normal_(lin.weight, 0.5, 0.1)
    torch.nn.init.constant_(lin.bias, 0.25)  # no spread: nothing to randomize
    before = lin.weight.detach().clone()
    _randomize([lin], torch.Generator().manual_seed(0))
    w = lin.weight.detach()
    assert not torch.allclose(w, before)
    assert w.mean().item() == pytest.approx(0.5, abs=0.005)
    assert w.std().item() == pytest.approx(0.1, rel=0.02)
    torch.testing.assert_close(lin.bias.detach(), torch.full((100,), 0.25))


def test_cascade_changes_gradcam_and_leaves_the_model_alone(model, images, texts):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = cascading_randomization(model, "gradcam", images, texts, stage=2, progress=False)
    assert r["steps"] == ["head", "stage3", "stage2", "stage1", "stage0", "stem"]
    assert len(r["rank_corr"]) == len(randomization_steps(model)) == 6
    assert r["rank_corr_per_image"].shape == (6, 2)
    assert r["final"] == r["rank_corr"][-1] < 1.0
    assert r["insensitive"] == (r["final"] >= 0.8)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    again = cascading_randomization(model, "gradcam", images, texts, stage=2, progress=False)
    np.testing.assert_array_equal(again["rank_corr_per_image"], r["rank_corr_per_image"])


def test_every_method_returns_one_map_per_image(model, images, texts):
    for method in METHODS:
        out = attribute(method, model, images[:1], texts[:1], stage=1, n_steps=4, nt_samples=2,
                        occlusion_window=16, occlusion_stride=16)
        assert out.shape == (1, 64, 64) and out.dtype == np.float32 and np.isfinite(out).all()


# --- baselines and completeness -----------------------------------------------------------------

from unirepclip.analysis.attribution import (attribution_records, best_gradcam_stage,  # noqa: E402
                                    blurred_baseline, compare_baselines, completeness_error,
                                    contrastive_prompts,  encode_texts,
                                    gradcam_stage_scores, make_baseline, metrics_table,
                                    pixel_baseline, plot_attribution_grid, plot_randomization)
from unirepclip.utils import denormalize_images, normalize_images  # noqa: E402


def test_pixel_baseline_is_normalized_grey():
    import open_clip

    b = pixel_baseline(0.5)
    assert b.shape == (1, 3, 1, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(b * std + mean, torch.full((1, 3, 1, 1), 0.5))
    # round trip through the display conversion: 0.5 * 255 = 127.5 -> 128
    assert (denormalize_images(b.expand(1, 3, 2, 2)) == 128).all()
    with pytest.raises(ValueError, match="value"):
        pixel_baseline(1.5)


def test_denormalize_inverts_the_val_normalization():
    pics = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(denormalize_images(normalize_images(pics)), pics)


def test_blurred_baseline():
    flat = torch.full((1, 3, 16, 16), 0.7)
    torch.testing.assert_close(blurred_baseline(flat, 2.0), flat)  # a constant stays constant
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    b = blurred_baseline(x, 2.0)
    assert b.shape == x.shape and b.std() < 0.5 * x.std()  # edges gone
    assert abs(float(b.mean() - x.mean())) < 0.05           # colours kept
    assert make_baseline("zero", x).abs().sum() == 0
    torch.testing.assert_close(make_baseline("grey", x), pixel_baseline(0.5))
    torch.testing.assert_close(make_baseline("blur", x, sigma=2.0), b)
    with pytest.raises(ValueError, match="kind"):
        make_baseline("black", x)
    with pytest.raises(ValueError, match="sigma"):
        blurred_baseline(x, 0)


def test_completeness_error_against_hand_built_maps(model, images, texts):
    base = pixel_baseline(0.5)
    with torch.no_grad():
        gap = (cosine(model, images, texts)
               - cosine(model, base.expand_as(images), texts)).numpy()
    exact = np.broadcast_to((gap / (64 * 64))[:, None, None], (2, 64, 64))  # sums to the gap
    np.testing.assert_allclose(completeness_error(model, images, texts, exact, base), 0,
                               atol=1e-5)
    np.testing.assert_allclose(completeness_error(model, images, texts, np.zeros((2, 64, 64)),
                                                  base), 1.0)
    np.testing.assert_allclose(completeness_error(model, images, texts, 3 * exact, base), 2.0,
                               rtol=1e-5)


def test_compare_baselines_grey_ig_is_complete(model, images, texts):
    out = compare_baselines(model, images, texts, kinds=("grey", "blur"), n_steps=32,
                            internal_batch_size=64)
    assert set(out) == {"grey", "blur"}
    assert out["grey"]["maps"].shape == (2, 64, 64) and out["grey"]["error"].shape == (2,)
    assert out["grey"]["max_error"] < 1e-2
    assert out["grey"]["median_error"] <= out["grey"]["max_error"]


# --- notebook helpers ---------------------------------------------------------------------------

def test_encode_texts_is_the_normalized_text_embedding(model):
    tok = unirepclip.get_tokenizer("UniRepLKNet-Demo")
    got = encode_texts(model, tok, ["a red circle", "a blue star"])
    with torch.no_grad():
        want = F.normalize(model.encode_text(tok(["a red circle", "a blue star"])), dim=-1)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="texts"):
        encode_texts(model, tok, "a red circle")


def test_contrastive_prompts():
    assert contrastive_prompts("circle", "red") == {
        "true": "a picture of a red circle", "other colour": "a picture of a green circle",
        "other shape": "a picture of a red square"}
    p = contrastive_prompts("heart", "orange", other_colour="blue", other_shape="star",
                            frame="this image contains {obj}")
    assert p == {"true": "this image contains an orange heart",
                 "other colour": "this image contains a blue heart",
                 "other shape": "this image contains an orange star"}
    with pytest.raises(ValueError, match="colour"):
        contrastive_prompts("circle", "teal")
    with pytest.raises(ValueError, match="differ"):
        contrastive_prompts("circle", "red", other_colour="red")


def test_gradcam_stage_scores_and_the_best_stage(model, images, texts):
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[:, 16:48, 16:48] = True
    scores = gradcam_stage_scores(model, images, texts, masks, stages=[1, 2])
    assert set(scores) == {1, 2}
    for s, r in scores.items():
        ref = mask_metrics(attribute("gradcam", model, images, texts, stage=s), masks)
        assert r["mass_in_mask"] == ref["mass_in_mask"] and r["chance"] == 0.25
        assert r["score"] == pytest.approx((r["mass_in_mask"] + r["pointing_game"]) / 0.5)
    assert best_gradcam_stage({0: {"score": 1.0}, 1: {"score": 2.0}, 2: {"score": 1.5}}) == 1
    assert best_gradcam_stage({1: {"score": 2.0}, 3: {"score": 2.0}}) == 3  # tie: later stage
    assert best_gradcam_stage({1: {"score": float("nan")}, 2: {"score": 0.1}}) == 2


def test_attribution_records_and_table():
    metrics = {"gradcam": {"mass_in_mask": 0.3, "pointing_game": 0.5, "chance": 0.1},
               "saliency": {"mass_in_mask": 0.1, "pointing_game": 0.1, "chance": 0.1}}
    cascades = {"gradcam": {"steps": ["head", "stem"], "rank_corr": [0.9, 0.2], "final": 0.2,
                            "insensitive": False, "threshold": 0.8},
                "saliency": {"steps": ["head", "stem"], "rank_corr": [0.95, 0.9],
                             "final": 0.9, "insensitive": True, "threshold": 0.8}}
    rec = attribution_records(metrics, cascades)
    assert rec["attribution.gradcam.mass_in_mask"] == 0.3
    assert rec["attribution.gradcam.randomization_rank_corr"] == 0.2
    assert rec["attribution.saliency.randomization_curve"] == {"head": 0.95, "stem": 0.9}
    assert rec["attribution.saliency.insensitive"] is True
    lines = metrics_table(metrics, cascades).splitlines()
    assert lines[2] == "| gradcam | 0.300 (3.0x) | 0.500 (5.0x) | 0.100 | 0.20 | no |"
    assert lines[3] == "| saliency | 0.100 (1.0x) | 0.100 (1.0x) | 0.100 | 0.90 | **yes** |"
    assert "rank corr" not in metrics_table(metrics)


def test_undefined_figures_are_recorded_as_null():
    """A random tower can give no positive attribution at all on an image (seen with occlusion
    on a random full-size L): the mass share is then undefined, and results.json gets null."""
    from unirepclip.workbook import results
    attrs = -np.ones((2, 8, 8))
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    m = mask_metrics(attrs, masks)
    assert np.isnan(m["mass_in_mask"]) and m["n_no_positive_mass"] == 2
    rec = attribution_records({"occlusion": m}, {"occlusion": {
        "steps": ["head"], "rank_corr": [float("nan")], "final": float("nan"), "insensitive": False}})
    assert rec["attribution.occlusion.mass_in_mask"] is None
    assert rec["attribution.occlusion.n_no_positive_mass"] == 2
    assert rec["attribution.occlusion.randomization_rank_corr"] is None
    assert rec["attribution.occlusion.randomization_curve"] == {"head": None}
    assert results.to_jsonable(rec)["attribution.occlusion.mass_in_mask"] is None


def test_attribution_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pics = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    maps = {"saliency": np.random.default_rng(0).random((2, 8, 8)), "gradcam": np.ones((2, 8, 8))}
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:6, 2:6] = True
    fig = plot_attribution_grid(pics, maps, ["a", "b"], masks=masks)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 3
    assert [ax.get_title() for ax in panels[:3]] == ["image", "saliency", "gradcam"]
    assert panels[3].get_ylabel() == "b"
    plt.close(fig)
    with pytest.raises(ValueError, match="captions"):
        plot_attribution_grid(pics, maps, ["a"])
    fig, ax = plt.subplots()
    plot_randomization(ax, {"gradcam": {"steps": ["head", "stem"], "rank_corr": [0.7, 0.1],
                                        "threshold": 0.8}})
    line = [ln for ln in ax.get_lines() if ln.get_label() == "gradcam"][0]
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.7, 0.1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["original", "head", "stem"]
    plt.close(fig)


def test_attribute_all_builds_the_baseline_for_these_images(model, images, texts):
    from unirepclip.analysis.attribution import attribute_all

    got = attribute_all(model, images, texts, ("integrated_gradients", "saliency"),
                        baseline_kind="blur", sigma=2.0, n_steps=4)
    assert list(got) == ["integrated_gradients", "saliency"]
    want = attribute("integrated_gradients", model, images, texts, n_steps=4,
                     baseline=blurred_baseline(images, 2.0))
    np.testing.assert_array_equal(got["integrated_gradients"], want)
    with pytest.raises(ValueError, match="not both"):
        attribute_all(model, images, texts, ("saliency",), baseline_kind="grey", baseline=0.0)


def test_occlusion_baseline_is_its_own_choice(model, images, texts):
    from unirepclip.analysis.attribution import attribute_all

    kw = dict(occlusion_window=32, occlusion_stride=32, internal_batch_size=4)
    own = attribute("occlusion", model, images, texts, baseline=0.0, occlusion_baseline=0.5, **kw)
    np.testing.assert_array_equal(own, attribute("occlusion", model, images, texts, baseline=0.5,
                                                 **kw))
    got = attribute_all(model, images, texts, ("occlusion",), baseline_kind="zero",
                        occlusion_baseline_kind="grey", **kw)
    np.testing.assert_array_equal(got["occlusion"], attribute(
        "occlusion", model, images, texts, baseline=pixel_baseline(0.5), **kw))


def test_compare_baselines_reports_the_gap(model, images, texts):
    out = compare_baselines(model, images, texts, kinds=("grey",), n_steps=8)
    with torch.no_grad():
        gap = (cosine(model, images, texts)
               - cosine(model, pixel_baseline(0.5).expand_as(images), texts)).numpy()
    np.testing.assert_allclose(out["grey"]["gap"], gap, rtol=1e-5)
    assert out["grey"]["mean_gap"] == pytest.approx(gap.mean())
