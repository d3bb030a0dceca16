"""Attribution: the method specs, mask metrics, baselines and completeness, the Grad-CAM stage,
the randomization check, what notebook 04 records, and its tables and figures."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import unirepclip
from unirepclip.analysis.attribution import (
    COMPLETENESS_TOLERANCE, METHOD_SPECS, METHODS, IntegratedGradientsSpec, OcclusionSpec,
    SimilarityForward, attribute, attribute_all, attribution_records, best_gradcam_stage,
    blurred_baseline, cascading_randomization, cascading_randomization_all, chance_level,
    compare_baselines, completeness_error, completeness_is_large, completeness_records,
    completeness_summary, contrastive_prompts, encode_texts, gradcam_stage_records,
    gradcam_stage_scores, integrated_gradients_completeness, make_baseline, mask_metrics,
    mass_in_mask, method_spec, pixel_baseline, pointing_game, randomization_steps,
    resolve_gradcam_stage)
from unirepclip.analysis.attribution.randomization import _randomize
from unirepclip.utils import denormalize_images, normalize_images
from unirepclip.viz.attribution import (completeness_table, gradcam_stage_table, metrics_table,
                                        plot_attribution_grid, plot_randomization)


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
    occ = attribute("occlusion", model, images, texts, window=32, stride=32,
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


def test_pointing_game_counts_tied_maxima_and_takes_a_tolerance_in_pixels():
    from unirepclip.analysis.attribution.metrics import ZHANG_TOLERANCE, pointing_game_counts

    m = np.zeros((40, 40), dtype=bool)
    m[10:12, 10:12] = True                     # a 2 x 2 object
    a = np.zeros((40, 40))
    a[10, 10] = a[11, 11] = a[11, 10] = 5.0    # three tied maxima on the object...
    a[11, 31] = a[0, 39] = a[39, 0] = a[39, 39] = a[30, 30] = 5.0  # ...and five off it
    assert pointing_game_counts(a, m) == (8, 3)
    assert pointing_game(a, m) == 3 / 8
    # (11, 31) is 20 px right of the object's pixel (11, 11); the next nearest, (30, 30), is
    # sqrt(19**2 + 19**2) = 26.9 px from (11, 11)
    assert pointing_game_counts(a, m, tolerance=20) == (8, 4)
    assert pointing_game_counts(a, m, tolerance=19.9) == (8, 3)
    assert pointing_game_counts(a, m, tolerance=27) == (8, 5)
    b = np.zeros((40, 40))
    b[11, 11 + ZHANG_TOLERANCE] = 1.0          # exactly 15 px right of the object: a hit
    assert ZHANG_TOLERANCE == 15
    assert pointing_game(b, m) == 0.0 and pointing_game(b, m, tolerance=15) == 1.0
    b[11, 11 + ZHANG_TOLERANCE] = 0.0
    b[11, 12 + ZHANG_TOLERANCE] = 1.0          # 16 px: a miss
    assert pointing_game(b, m, tolerance=15) == 0.0
    assert pointing_game(b, np.zeros((40, 40), bool), tolerance=15) == 0.0  # no object
    for bad in (-1, float("nan"), True):
        with pytest.raises(ValueError, match="tolerance"):
            pointing_game(b, m, tolerance=bad)


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
    assert r["final"] == r["rank_corr"][-1]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    again = cascading_randomization(model, "gradcam", images, texts, stage=2, progress=False)
    np.testing.assert_array_equal(again["rank_corr_per_image"], r["rank_corr_per_image"])


class _ToyLayer(nn.Module):
    """A conv layer of the toy tower. ``uses_weights=False``: the output is a fixed function of
    the input (average pooling and a fixed 1x1 mix held in a buffer), the conv and the gain are
    there to be randomized but are never used."""

    def __init__(self, cin, cout, stride, uses_weights, gen, image_size):
        super().__init__()
        k = 4 if stride == 4 else 3  # a 3x3 kernel at stride 4 would skip pixels: a fixed grid
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=1 if k == 3 else 0)
        self.register_buffer("mix", torch.randn(cout, cin, 1, 1, generator=gen) / cin ** 0.5)
        # a per-pixel input gain: a weight the maps of the weight-using tower are about
        self.gain = (nn.Parameter(torch.randn(1, 1, image_size, image_size, generator=gen) + 1)
                     if cin == 3 else None)
        self.stride, self.uses_weights = stride, uses_weights

    def forward(self, x):
        if self.uses_weights:
            return F.gelu(self.conv(x if self.gain is None else x * self.gain))
        pooled = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        return F.gelu(F.conv2d(pooled, self.mix))


class _ToyTrunk(nn.Module):
    """The layout :func:`randomization_steps` walks (stem, downsampling layers, four stages,
    head), on 32 px inputs."""

    def __init__(self, uses_weights, width=8, dim=16, image_size=32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.downsample_layers = nn.ModuleList(
            [_ToyLayer(3, width, 4, uses_weights, g, image_size)]
            + [_ToyLayer(width, width, 2, uses_weights, g, image_size) for _ in range(3)])
        self.stages = nn.ModuleList([_ToyLayer(width, width, 1, uses_weights, g, image_size)
                                     for _ in range(4)])
        self.head = nn.Linear(width, dim)
        self.register_buffer("proj", torch.randn(dim, width, generator=g))
        self.uses_weights = uses_weights

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = x.mean((2, 3))
        return self.head(x) if self.uses_weights else x @ self.proj.T


class _ToyVisual(nn.Module):
    def __init__(self, uses_weights):
        super().__init__()
        self.trunk = _ToyTrunk(uses_weights)

    def forward(self, x):
        return self.trunk(x)


class _ToyCLIP(nn.Module):
    def __init__(self, uses_weights):
        super().__init__()
        self.visual = _ToyVisual(uses_weights)

    def encode_image(self, x, normalize=False):
        z = self.visual(x)
        return F.normalize(z, dim=-1) if normalize else z


TOY = {"integrated_gradients": dict(n_steps=4), "smoothgrad": dict(nt_samples=2),
       "saliency": {}, "gradcam": dict(stage=1), "occlusion": dict(window=8, stride=8)}


@pytest.mark.parametrize("uses_weights", [False, True], ids=["weight-free", "weight-using"])
def test_randomization_flags_exactly_the_maps_that_ignore_the_weights(uses_weights):
    """A tower whose output ignores its weights must have every method flagged insensitive (its
    maps cannot change: rank correlation 1 at every step); one whose maps are about its weights
    (a per-pixel input gain, random convolutions) must have none flagged."""
    toy = _ToyCLIP(uses_weights)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in toy.state_dict().items()}
    r = cascading_randomization_all(toy, x, t, TOY, seed=0)
    assert list(r) == list(METHODS)
    for method, c in r.items():
        assert c["steps"] == ["head", "stage3", "stage2", "stage1", "stage0", "stem"], method
        if uses_weights:
            assert c["final"] < 0.5 and not c["insensitive"], (method, c["rank_corr"])
        else:
            np.testing.assert_allclose(c["rank_corr"], 1.0, err_msg=method)
            assert c["insensitive"], method
    for k, v in toy.state_dict().items():
        assert torch.equal(v, before[k]), k
    one = cascading_randomization(toy, "gradcam", x, t, stage=1, progress=False)
    np.testing.assert_array_equal(one["rank_corr_per_image"], r["gradcam"]["rank_corr_per_image"])


FAST = {"integrated_gradients": dict(n_steps=4), "smoothgrad": dict(nt_samples=2),
        "saliency": {}, "gradcam": dict(stage=1), "occlusion": dict(window=16, stride=16)}


def test_every_method_returns_one_map_per_image(model, images, texts):
    for method in METHODS:
        out = attribute(method, model, images[:1], texts[:1], **FAST[method])
        assert out.shape == (1, 64, 64) and out.dtype == np.float32 and np.isfinite(out).all()


# --- baselines and completeness -----------------------------------------------------------------


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
    # 64 px: stem stride 4, then each stage halves (16, 8, 4, 2)
    assert (scores[1]["map_size"], scores[2]["map_size"]) == ((8, 8), (4, 4))
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


def test_attribute_all_takes_each_methods_own_arguments(model, images, texts):
    got = attribute_all(model, images, texts,
                        {"integrated_gradients": dict(n_steps=4, baseline="blur"),
                         "saliency": {}})
    assert list(got) == ["integrated_gradients", "saliency"]
    # a baseline named by kind is made for the very images attributed (blur: one per image)
    want = attribute("integrated_gradients", model, images, texts, n_steps=4,
                     baseline=blurred_baseline(images, 4.0))
    np.testing.assert_array_equal(got["integrated_gradients"], want)
    assert not np.array_equal(want, attribute("integrated_gradients", model, images, texts,
                                              n_steps=4, baseline=0.0))
    np.testing.assert_array_equal(got["saliency"], attribute("saliency", model, images, texts))
    names_only = attribute_all(model, images[:1], texts[:1], ("saliency",))
    np.testing.assert_allclose(names_only["saliency"], got["saliency"][:1], rtol=1e-4, atol=1e-9)


def test_occlusion_fill_and_ig_baseline_are_separate_choices(model, images, texts):
    kw = dict(window=32, stride=32, internal_batch_size=4)
    got = attribute_all(model, images, texts, {"integrated_gradients": dict(n_steps=4,
                                                                            baseline="zero"),
                                               "occlusion": dict(baseline="grey", **kw)})
    np.testing.assert_array_equal(got["occlusion"], attribute(
        "occlusion", model, images, texts, baseline=pixel_baseline(0.5), **kw))
    np.testing.assert_array_equal(got["integrated_gradients"], attribute(
        "integrated_gradients", model, images, texts, n_steps=4, baseline=0.0))
    assert not np.array_equal(got["occlusion"], attribute("occlusion", model, images, texts,
                                                          baseline=0.0, **kw))


def test_compare_baselines_reports_the_gap(model, images, texts):
    out = compare_baselines(model, images, texts, kinds=("grey",), n_steps=8)
    with torch.no_grad():
        gap = (cosine(model, images, texts)
               - cosine(model, pixel_baseline(0.5).expand_as(images), texts)).numpy()
    np.testing.assert_allclose(out["grey"]["gap"], gap, rtol=1e-5)
    assert out["grey"]["mean_gap"] == pytest.approx(gap.mean())


# --- the method specs ---------------------------------------------------------------------------

def test_each_method_takes_only_its_own_arguments(model, images, texts):
    assert METHODS == ("integrated_gradients", "smoothgrad", "saliency", "gradcam", "occlusion")
    assert {m: METHOD_SPECS[m].arguments() for m in METHODS} == {
        "integrated_gradients": ("n_steps", "baseline"),
        "smoothgrad": ("nt_samples", "stdevs", "base", "base_args", "random_state"),
        "saliency": (),
        "gradcam": ("stage",),
        "occlusion": ("window", "stride", "baseline")}
    with pytest.raises(TypeError, match="saliency takes no argument 'stage'"):
        attribute("saliency", model, images, texts, stage=1)
    with pytest.raises(TypeError, match="'n_steps'.*'window'"):
        attribute("gradcam", model, images, texts, n_steps=4, window=8)
    with pytest.raises(TypeError, match="integrated_gradients takes no argument 'nt_samples'"):
        attribute("smoothgrad", model, images, texts, base="integrated_gradients",
                  base_args=dict(nt_samples=3))
    with pytest.raises(TypeError, match="occlusion_window"):
        attribute_all(model, images, texts, {"occlusion": dict(occlusion_window=8)})
    with pytest.raises(TypeError, match="given whole"):
        attribute(OcclusionSpec(window=8), model, images, texts, stride=4)
    with pytest.raises(ValueError, match="n_steps"):
        method_spec("integrated_gradients", n_steps=0)
    with pytest.raises(ValueError, match="base"):
        method_spec("smoothgrad", base="occlusion")


def test_channel_reduction_is_carried_by_the_method(model, images, texts):
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    assert {m: method_spec(m).reduce for m in METHODS} == {
        "integrated_gradients": "sum", "smoothgrad": "abs", "saliency": "abs", "gradcam": "sum",
        "occlusion": "mean"}
    assert method_spec("smoothgrad", base="integrated_gradients").reduce == "sum"
    f, args = SimilarityForward(model), (texts,)
    x = images.clone().requires_grad_(True)
    raw = Saliency(f).attribute(x, abs=False, additional_forward_args=args).detach()
    np.testing.assert_allclose(attribute("saliency", model, images, texts),
                               raw.abs().sum(1).numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(attribute("saliency", model, images, texts, reduce="sum"),
                               raw.sum(1).numpy(), rtol=1e-5, atol=1e-9)
    ig = IntegratedGradients(f).attribute(x, baselines=x.detach() * 0 + 0.5, n_steps=4,
                                          additional_forward_args=args).detach()
    np.testing.assert_allclose(attribute("integrated_gradients", model, images, texts,
                                         n_steps=4, baseline=0.5),
                               ig.sum(1).numpy(), rtol=1e-4, atol=1e-8)
    with torch.no_grad():
        occ = Occlusion(f).attribute(images, sliding_window_shapes=(3, 32, 32),
                                     strides=(3, 32, 32), baselines=0.0,
                                     additional_forward_args=args)
    np.testing.assert_allclose(attribute(OcclusionSpec(window=32, stride=32), model, images,
                                         texts), occ.mean(1).numpy(), rtol=1e-5, atol=1e-9)


def test_a_spec_object_equals_its_name_and_arguments(model, images, texts):
    spec = IntegratedGradientsSpec(n_steps=4, baseline="grey")
    np.testing.assert_array_equal(
        attribute(spec, model, images, texts),
        attribute("integrated_gradients", model, images, texts, n_steps=4,
                  baseline=pixel_baseline(0.5)))


def test_smoothgrad_over_integrated_gradients_with_tiny_noise_is_ig(model, images, texts):
    sg = attribute("smoothgrad", model, images, texts, nt_samples=2, stdevs=1e-6,
                   base="integrated_gradients", base_args=dict(n_steps=8, baseline="grey"))
    ig = attribute("integrated_gradients", model, images, texts, n_steps=8, baseline="grey")
    np.testing.assert_allclose(sg, ig, rtol=1e-2, atol=1e-3 * np.abs(ig).max())


# --- IG completeness through captum's delta -----------------------------------------------------

def test_captum_delta_completeness_equals_the_hand_computed_figure(model, images, texts):
    base = pixel_baseline(0.5)
    r = integrated_gradients_completeness(model, images, texts, n_steps=8, baseline=base,
                                          batch_size=1, internal_batch_size=16)
    with torch.no_grad():
        gap = (cosine(model, images, texts) - cosine(model, base.expand_as(images), texts))
    np.testing.assert_allclose(r["gap"], gap.numpy(), rtol=1e-5)
    # the maps are IG's, and delta = sum(map) - gap, so the error is |sum - gap| / |gap|
    np.testing.assert_array_equal(r["maps"], attribute("integrated_gradients", model, images,
                                                       texts, n_steps=8, baseline=base,
                                                       batch_size=1, internal_batch_size=16))
    total = r["maps"].reshape(2, -1).astype(np.float64).sum(1)
    np.testing.assert_allclose(r["delta"], total - gap.numpy(), rtol=1e-3,
                               atol=1e-6 * np.abs(gap.numpy()).max())
    np.testing.assert_allclose(r["error"], completeness_error(model, images, texts, r["maps"],
                                                              base), rtol=1e-3, atol=1e-6)
    assert r["error"].max() > 0  # 8 steps from grey: not exact, or the check could not see


def test_completeness_error_grows_when_steps_are_too_few(model, images, texts):
    few = integrated_gradients_completeness(model, images, texts, n_steps=2, baseline=0.0)
    many = integrated_gradients_completeness(model, images, texts, n_steps=32, baseline="grey")
    assert np.median(few["error"]) > 5 * np.median(many["error"])


def test_completeness_summary_and_the_large_error_warning():
    checks = {"zero": {"mean_gap": 0.2, "median_error": 0.30, "max_error": 0.5, "n_steps": 16},
              "grey": {"mean_gap": 0.1, "median_error": 0.01, "max_error": 0.02, "n_steps": 16}}
    s = completeness_summary(checks, "zero")
    assert s == {"used": "zero", "n_steps": 16, "tolerance": COMPLETENESS_TOLERANCE,
                 "used_median_error": 0.30, "large": True,
                 "baselines": {"zero": {"mean_gap": 0.2, "median_error": 0.30, "max_error": 0.5},
                               "grey": {"mean_gap": 0.1, "median_error": 0.01,
                                        "max_error": 0.02}}}
    assert completeness_summary(checks, "grey")["large"] is False
    assert completeness_summary(checks, "grey", tolerance=0.005)["large"] is True
    with pytest.raises(ValueError, match="ig_baseline 'blur'"):
        completeness_summary(checks, "blur")
    assert COMPLETENESS_TOLERANCE == 0.05
    assert not completeness_is_large(0.05) and completeness_is_large(0.0501)
    assert completeness_is_large(float("nan"))  # a zero gap: nothing was checked
    assert completeness_records(checks) == {
        "attribution.integrated_gradients.completeness_error.zero": 0.30,
        "attribution.integrated_gradients.completeness_error.grey": 0.01}
    lines = completeness_table(s).splitlines()
    assert lines[0].startswith("| IG baseline (16 steps) |")
    assert lines[2] == "| zero (used) | 0.200 | 30.00% | 50.00% |"
    assert lines[3] == "| grey | 0.100 | 1.00% | 2.00% |"


# --- the Grad-CAM stage -------------------------------------------------------------------------

def test_gradcam_stage_auto_is_the_measured_best_and_recorded():
    scores = {0: {"score": 3.9, "mass_in_mask": 0.3, "pointing_game": 0.5, "map_size": (16, 16)},
              1: {"score": 4.5, "mass_in_mask": 0.4, "pointing_game": 0.6, "map_size": (8, 8)},
              2: {"score": 1.9, "mass_in_mask": 0.2, "pointing_game": 0.2, "map_size": (4, 4)}}
    assert resolve_gradcam_stage("auto", scores) == 1
    assert resolve_gradcam_stage(2, scores) == 2
    for bad in (3, "2", True, "best"):
        with pytest.raises(ValueError, match="gradcam_stage"):
            resolve_gradcam_stage(bad, scores)
    assert gradcam_stage_records(scores, 1) == {
        "attribution.gradcam.stage_scores.stage0": 3.9,
        "attribution.gradcam.stage_scores.stage1": 4.5,
        "attribution.gradcam.stage_scores.stage2": 1.9, "attribution.gradcam.stage": 1}
    lines = gradcam_stage_table(scores, used=1).splitlines()
    assert lines[2] == "| 0 | 16 x 16 | 0.300 | 0.500 | 3.90 |"
    assert lines[3] == "| 1 (used) | 8 x 8 | 0.400 | 0.600 | 4.50 |"
    assert len(lines) == 5
    # a ViT: blocks, and the one whose map is never read named with its line
    vit = gradcam_stage_records({0: scores[0], 1: scores[1]}, 0, unit="block",
                                not_applicable={2: "ViT tower: Grad-CAM on block 2 does not apply"})
    assert vit == {"attribution.gradcam.stage_scores.block0": 3.9,
                   "attribution.gradcam.stage_scores.block1": 4.5,
                   "attribution.gradcam.stage": 0,
                   "attribution.gradcam.not_applicable.block2":
                       "ViT tower: Grad-CAM on block 2 does not apply"}
    assert gradcam_stage_table(scores, used=1, unit="block").startswith("| Grad-CAM block |")
