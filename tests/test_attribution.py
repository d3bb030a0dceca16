"""Attribution wrapper, methods, mask metrics and the randomization check."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unirepclip
from unirepclip.attribution import (METHODS, SimilarityForward, _randomize, attribute,
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
