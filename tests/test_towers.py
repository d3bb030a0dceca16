"""The tower seam (models/towers.py): every analysis through it on tiny random towers of each
family (open_clip's VisionTransformer and ModifiedResNet, timm ConvNeXt and ViT trunks inside
open_clip's TimmModel, the package's UniRepLKNet), against independent truth: analytic ERFs of a
ViT made affine with uniform attention, the theoretical receptive field of a ConvNeXt stage,
Grad-CAM's definition, shapes by hand, projections that map the captured features to the
embeddings."""
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.model import CLIP

import unirepclip
from unirepclip.analysis import cost
from unirepclip.analysis.attribution import (METHODS, attribute, attribute_all,
                                             cascading_randomization, gradcam_not_applicable,
                                             gradcam_stage_scores, randomization_steps)
from unirepclip.analysis.erf import compute_erf, inference_form, stage_erfs, stage_feature_fn
from unirepclip.features.extract import extract_image_features
from unirepclip.models.towers import (ModifiedResNetTower, NotApplicable, OpenClipViTTower,
                                      TimmTower, TimmViTTower, UniRepLKNetTower, tower_of)

TEXT = dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
EMBED = 16


def _vit(layers=2):
    torch.manual_seed(0)
    return CLIP(EMBED, dict(image_size=32, patch_size=8, width=32, layers=layers, head_width=16),
                TEXT).eval()


def _resnet():
    torch.manual_seed(0)
    return CLIP(EMBED, dict(image_size=64, layers=[1, 1, 1, 1], width=8, head_width=64),
                TEXT).eval()


def _timm(name, trunk_kwargs, image_size):
    """An open_clip TimmModel tower (linear projection) whose trunk is a tiny timm model."""
    torch.manual_seed(0)
    model = CLIP(EMBED, dict(timm_model_name=name, timm_pool="avg", timm_proj="linear",
                             image_size=image_size), TEXT)
    model.visual.trunk = timm.create_model(name, num_classes=0, global_pool="avg",
                                           **trunk_kwargs)
    model.visual.head.proj = nn.Linear(model.visual.trunk.num_features, EMBED, bias=False)
    return model.eval()


def _convnext():
    return _timm("convnext_atto", dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)), 64)


def _timm_vit():
    return _timm("vit_tiny_patch16_224", dict(depth=2, embed_dim=32, num_heads=2, img_size=32,
                                              patch_size=8, reg_tokens=2), 32)


def _unireplknet():
    torch.manual_seed(0)
    return unirepclip.create_model("UniRepLKNet-Demo").eval()


# family -> (builder, tower class, image size, grids at that size, by hand)
FAMILIES = {
    "vit": (_vit, OpenClipViTTower, 32, [(4, 4)] * 2),
    "resnet": (_resnet, ModifiedResNetTower, 64, [(16, 16), (8, 8), (4, 4), (2, 2)]),
    "convnext": (_convnext, TimmTower, 64, [(16, 16), (8, 8), (4, 4), (2, 2)]),
    "timm_vit": (_timm_vit, TimmViTTower, 32, [(4, 4)] * 2),
    "unireplknet": (_unireplknet, UniRepLKNetTower, 64, [(16, 16), (8, 8), (4, 4), (2, 2)]),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    build, cls, size, grids = FAMILIES[request.param]
    return request.param, build(), cls, size, grids


def _last_read(model):
    """The last depth whose map reaches the embedding (a class-token ViT: its last block but
    one; see test_a_class_token_vit_never_reads_its_last_blocks_patch_tokens)."""
    tower = tower_of(model)
    return max(d for d in range(tower.depth_count) if tower.unused_map_note(d) is None)


def _images(n, size, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _texts(model, n=2):
    dim = model.text_projection.shape[-1]
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(2))


def test_tower_of_each_family_its_depths_and_grids(family):
    name, model, cls, size, grids = family
    tower = tower_of(model)
    assert type(tower) is cls
    assert type(tower_of(model.visual)) is cls  # the image tower alone answers the same
    assert tower.depth_count == len(grids) and tower.grids(size) == grids
    model.train()
    try:  # measured in eval mode, every module's own mode given back
        assert tower.grids(size) == grids and all(m.training for m in model.visual.modules())
    finally:
        model.eval()
    assert tower.depth_names()[0] == ("block0" if "vit" in name else "stage0")
    x = _images(2, size)
    with torch.no_grad():
        maps = tower.feature_maps(x, list(range(tower.depth_count)))
    assert [tuple(m.shape[-2:]) for m in maps] == grids and all(m.shape[0] == 2 for m in maps)


def test_every_analysis_runs_through_the_seam(family):
    """ERF, the five attribution methods, Grad-CAM's stage scores, the randomization check,
    cost and extraction, on each family: finite maps of the input's shape."""
    name, model, _, size, grids = family
    x, t = _images(2, size), _texts(model)
    erfs = stage_erfs(model, x, stages=range(len(grids)), progress=False)
    assert all(e.shape == (size, size) and np.isfinite(e).all() and e.max() > 0
               for e in erfs.values())
    settings = {"integrated_gradients": dict(n_steps=2), "smoothgrad": dict(nt_samples=2),
                "saliency": {}, "gradcam": dict(stage=_last_read(model)),
                "occlusion": dict(window=16, stride=16)}
    maps = attribute_all(model, x, t, settings)
    assert list(maps) == list(METHODS)
    assert all(m.shape == (2, size, size) and np.isfinite(m).all() for m in maps.values())
    masks = np.zeros((2, size, size), bool)
    masks[:, : size // 2] = True
    scores = gradcam_stage_scores(model, x, t, masks)   # the depths whose map is read
    assert [scores[s]["map_size"] for s in sorted(scores)] == grids[:_last_read(model) + 1]
    r = cascading_randomization(model, "saliency", x, t, progress=False)
    assert r["steps"][0] == "head" and r["steps"][-1] == "stem"
    assert len(r["steps"]) == len(grids) + 2 and np.isfinite(r["final"])
    assert cost.image_macs(model, size) > 0


def test_randomization_steps_cover_every_tower_parameter_once(family):
    """Invariant: the cascade randomizes the whole image tower, each tensor in one step."""
    name, model, _, _, grids = family
    steps = randomization_steps(model)
    unit = "block" if "vit" in name else "stage"
    assert [s for s, _ in steps] == (["head"] + [f"{unit}{i}" for i in reversed(range(len(grids)))]
                                     + ["stem"])
    seen = []
    for _, items in steps:
        for m in items:
            seen += [m] if isinstance(m, nn.Parameter) else list(m.parameters())
    ids = [id(p) for p in seen]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.visual.parameters()}


def test_grad_cam_is_its_definition_on_the_map_the_seam_names(family):
    """Grad-CAM by hand: the map at the depth (a ViT block's patch tokens laid out on the grid,
    prefix tokens dropped), weights = its gradient averaged over positions, ReLU of the weighted
    sum, bilinear upsampling."""
    name, model, _, size, grids = family
    depth = _last_read(model)
    x, t = _images(2, size), _texts(model)
    tower, store = tower_of(model), {}
    module = tower.depth_modules()[depth]
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        sim = F.cosine_similarity(model.encode_image(x), t, dim=-1)
        (g,) = torch.autograd.grad(sim.sum(), store["a"])
    finally:
        handle.remove()
    a = store["a"]
    if a.dim() == 3:  # tokens (N, L, C): the patch tokens are the last h*w
        h, w = grids[depth]
        a, g = ([y[:, -h * w:].reshape(2, h, w, -1).permute(0, 3, 1, 2) for y in (a, g)])
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    expected = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    got = attribute("gradcam", model, x, t, stage=depth)
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4,
                               atol=1e-6 * float(expected.detach().abs().max()))
    with torch.no_grad():  # the seam's hooks are gone: the model computes as before
        torch.testing.assert_close(model.encode_image(x), model.encode_image(x))
    assert not module._forward_hooks and not tower.module._forward_pre_hooks


def test_extraction_captures_what_the_projection_maps_to_the_embedding(family):
    """Invariant: the captured pre-projection features, projected by the tower's own
    projection, are the embeddings (a ModifiedResNet projects inside its attention pool: none)."""
    name, model, _, size, _ = family
    data = [(img, 0) for img in _images(3, size)]
    f = extract_image_features(model, data, transform=lambda im: im, normalize=False,
                               progress=False)
    if name == "resnet":
        assert f.pre_projection is None
        return
    pre = torch.from_numpy(f.pre_projection)
    v = model.visual
    with torch.no_grad():
        projected = {"vit": lambda: pre @ v.proj,
                     "unireplknet": lambda: v.trunk.head(pre)}.get(name, lambda: v.head(pre))()
    assert pre.shape == (3, tower_of(model).num_features)
    torch.testing.assert_close(projected, torch.from_numpy(f.embeddings), rtol=1e-4, atol=1e-5)


def test_parameter_counts_split_the_projection_of_each_family(family):
    name, model, _, _, _ = family
    c = cost.parameter_counts(model)
    expected = {"vit": 32 * EMBED, "timm_vit": 32 * EMBED, "convnext": 64 * EMBED,
                "resnet": 256 * EMBED + EMBED, "unireplknet": 192 * 64 + 64}[name]
    assert c["image_projection"] == expected
    assert c["image"] == sum(p.numel() for p in model.visual.parameters())


# ------------------------------------------------------------------------------------------------
# Methods that do not apply
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit", "resnet", "convnext", "timm_vit"])
def test_reparameterization_of_another_family_is_one_line_naming_tower_and_method(name):
    model = FAMILIES[name][0]()
    tower = tower_of(model)
    assert not tower.reparameterizes and not tower.is_inference_form
    for call in (tower.reparameterize, lambda: inference_form(model),
                 lambda: cost.encoder_forms(model)):
        with pytest.raises(NotApplicable) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "re-parameterization does not apply" in msg
        assert tower.family in msg
    skipped = cost.form_comparison(model, _images(1, FAMILIES[name][2]))
    assert skipped["rows"] == {} and tower.family in skipped["skipped"]


def test_seam_errors_name_the_tower_and_the_parameter():
    vit = _vit()
    with pytest.raises(ValueError, match=r"gradcam: stage must be an int in 0\.\.1 \(a block of "
                                         r"the open_clip VisionTransformer tower\)"):
        attribute("gradcam", vit, _images(1, 32), torch.randn(EMBED), stage=2)
    with pytest.raises(ValueError, match="open_clip VisionTransformer tower: input"):
        compute_erf(stage_feature_fn(vit, 0), _images(1, 48), progress=False)
    with pytest.raises(TypeError, match="not an image tower the seam knows"):
        tower_of(nn.Linear(2, 2))


def test_is_inference_form_says_no_for_an_unknown_tower_and_raises_a_bug_in_the_seam(monkeypatch):
    from unirepclip.models import inspection

    with pytest.raises(NotApplicable, match="not an image tower the seam knows"):
        tower_of(nn.Linear(2, 2))
    assert inspection.is_inference_form(nn.Linear(2, 2)) is False
    vit = _vit()
    assert inspection.is_inference_form(vit) is False

    def bug(self):
        raise TypeError("unsupported operand type(s)")  # a real bug, not "does not apply"

    monkeypatch.setattr(OpenClipViTTower, "is_inference_form", property(bug))
    with pytest.raises(TypeError, match="unsupported operand"):
        inspection.is_inference_form(vit)
    monkeypatch.setattr(inspection, "tower_of", lambda model: bug(model))
    with pytest.raises(TypeError, match="unsupported operand"):
        inspection.is_inference_form(nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------
# Independent truth: analytic ERFs
# ------------------------------------------------------------------------------------------------
def _affine_uniform_vit():
    """The tiny ViT made affine with uniform attention: q and k projections zero (every score 0,
    so softmax gives 1/L to each of the L tokens), MLP output projections zero, and every layer
    norm (ln_pre, ln_1, ln_2) an identity."""
    model = _vit(layers=2)
    v = model.visual
    width = v.transformer.width
    with torch.no_grad():
        for blk in v.transformer.resblocks:
            blk.attn.in_proj_weight[: 2 * width].zero_()
            blk.attn.in_proj_bias[: 2 * width].zero_()
            blk.mlp.c_proj.weight.zero_()
            blk.mlp.c_proj.bias.zero_()
            blk.ln_1, blk.ln_2 = nn.Identity(), nn.Identity()
    v.ln_pre = nn.Identity()
    return model


def _analytic_vit_erf(model, x, depth):
    """The ERF of the centre patch token after block ``depth``, from the weights alone.

    Tokens: x_i = W p_i + pos_i for patch i (W the patch convolution), the class token
    x_0 = cls + pos_0. With uniform attention and no MLP, a block adds the same vector to every
    token: x_i <- x_i + A_k m + a_k, with m the mean of all L tokens, A_k = W_o W_v and
    a_k = W_o b_v + b_o. So the mean moves by m <- (I + A_k) m + a_k, and the centre token after
    blocks 0..d is x_c = x_c(0) + (P - I) m(0) + const with P = prod_k (I + A_k) (the updates
    telescope). m(0) = (1/L) sum_j W p_j + const, hence

        d x_c / d p_j = W^T [delta_jc I + (P - I) / L]^T   (as a map of patch j's pixels).

    The ERF scalar is sum relu(x_c), whose gradient is that map applied to g = 1[x_c > 0]: every
    patch j != c gets the same tile W^T (P - I)^T g / L, uniform over patches, and the centre
    patch adds W^T g. The per-pixel ERF is the positive part summed over colours, averaged over
    images. Everything here is numpy on the weights; the forward for g is recomputed the same
    way."""
    v = model.visual
    p = v.patch_size[0]
    wconv = v.conv1.weight.detach().double().numpy()            # (D, 3, p, p)
    d_model = wconv.shape[0]
    wflat = wconv.reshape(d_model, -1)
    pos = v.positional_embedding.detach().double().numpy()      # (L, D)
    cls = v.class_embedding.detach().double().numpy()
    n, _, hh, ww = x.shape
    gh, gw = hh // p, ww // p
    c = (gh // 2) * gw + gw // 2                                  # centre patch, row-major
    blocks = []
    for blk in list(v.transformer.resblocks)[: depth + 1]:
        wv = blk.attn.in_proj_weight.detach().double().numpy()[2 * d_model:]
        bv = blk.attn.in_proj_bias.detach().double().numpy()[2 * d_model:]
        wo = blk.attn.out_proj.weight.detach().double().numpy()
        bo = blk.attn.out_proj.bias.detach().double().numpy()
        blocks.append((wo @ wv, wo @ bv + bo))
    prod = np.eye(d_model)
    for a, _ in blocks:
        prod = (np.eye(d_model) + a) @ prod
    total = np.zeros((hh, ww))
    for img in x.double().numpy():
        patches = img.reshape(3, gh, p, gw, p).transpose(1, 3, 0, 2, 4).reshape(gh * gw, -1)
        tokens = np.vstack([cls, patches @ wflat.T]) + pos
        for a, b in blocks:
            tokens = tokens + tokens.mean(0) @ a.T + b
        g = (tokens[1 + c] > 0).astype(np.float64)
        other = wflat.T @ ((prod - np.eye(d_model)).T @ g) / tokens.shape[0]
        grads = np.repeat(other[None], gh * gw, axis=0)
        grads[c] += wflat.T @ g
        pix = grads.reshape(gh, gw, 3, p, p).transpose(2, 0, 3, 1, 4).reshape(3, hh, ww)
        total += np.clip(pix, 0, None).sum(0)
    return total / n


@pytest.mark.parametrize("depth", [0, 1])
def test_vit_with_uniform_attention_has_the_analytic_erf(depth):
    model = _affine_uniform_vit()
    x = _images(3, 32, seed=4)
    got = compute_erf(stage_feature_fn(model, depth), x, progress=False)
    want = _analytic_vit_erf(model, x, depth)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * want.max())
    # the derivation's shape: outside the centre patch, each patch holds the same tile
    tiles = got.reshape(4, 8, 4, 8).transpose(0, 2, 1, 3).reshape(16, 8, 8)
    others = np.delete(tiles, 2 * 4 + 2, axis=0)
    np.testing.assert_allclose(others, np.broadcast_to(others[0], others.shape), rtol=1e-4,
                               atol=1e-7 * want.max())
    assert others[0].max() > 0


def _receptive_box(size, stage, depths):
    """The input rows (= columns) that the centre unit of a ConvNeXt stage can see, composed
    backwards from its layers' (kernel, stride, padding): stem 4x4/4, each block's depthwise
    7x7/1 padded 3 (its norm is per position, its MLP 1x1), each later stage's downsampling
    2x2/2. A unit at [a, b] of a layer's output sees [a*s - p, b*s - p + k - 1] of its input."""
    layers = [(4, 4, 0)]
    for s in range(stage + 1):
        layers += ([(2, 2, 0)] if s else []) + [(7, 1, 3)] * depths[s]
    grid = size // 4 // 2 ** stage
    lo = hi = grid // 2
    for k, s, p in reversed(layers):
        lo, hi = lo * s - p, hi * s - p + k - 1
    return max(lo, 0), min(hi, size - 1)


@pytest.mark.parametrize("stage,size", [(0, 64), (1, 128), (2, 256)])
def test_convnext_stage_erf_is_bounded_by_its_theoretical_receptive_field(stage, size):
    model = _convnext()
    with torch.no_grad():  # layer scale 1: every residual branch on, the field dense
        for name, prm in model.visual.trunk.named_parameters():
            if name.endswith("gamma"):
                prm.fill_(1.0)
    erf = compute_erf(stage_feature_fn(model, stage), _images(2, size, seed=5), progress=False)
    lo, hi = _receptive_box(size, stage, (1, 1, 1, 1))
    assert lo > 0 and hi < size - 1  # the bound is a real bound at this size
    inside = np.zeros_like(erf, bool)
    inside[lo:hi + 1, lo:hi + 1] = True
    assert np.all(erf[~inside] == 0)
    rows, cols = np.nonzero(erf)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (lo, hi, lo, hi)  # and tight


def test_the_explorers_receptive_field_panel_offers_the_towers_own_depths():
    """The panel's choices come from the seam: a three-block ViT offers blocks 0-2, a ResNet its
    four stages (the panel once offered stages 0-3 whatever the tower)."""
    from types import SimpleNamespace

    from unirepclip.analysis import explore as ex
    from unirepclip.viz.explorer.receptive_field import ErfPanel

    options = ex.QueryOptions(erf=ex.ErfQuery(stage=0, resolution=32, n_images=1))
    for model, want, unit in ((_vit(layers=3), [0, 1, 2], "block"),
                              (_resnet(), [0, 1, 2, 3], "stage")):
        panel = ErfPanel(SimpleNamespace(lm=SimpleNamespace(model=model)), options)
        assert (list(panel.stage.options), panel.stage.description) == (want, unit)


# ------------------------------------------------------------------------------------------------
# A class-token ViT's last block: its patch tokens never reach the embedding
# ------------------------------------------------------------------------------------------------
def _last_block_patch_gradient(model, size):
    """d(sum of the image embedding) / d(the last block's patch tokens), by autograd alone."""
    tower = tower_of(model)
    store = {}
    block = tower.depth_modules()[-1]
    handle = block.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        emb = model.encode_image(_images(2, size))
        (g,) = torch.autograd.grad(emb.sum(), store["a"])
    finally:
        handle.remove()
    return g[:, 1:] if getattr(tower.module.transformer, "batch_first", True) else g[1:]


@pytest.mark.parametrize("pool", ["tok", "avg"])
def test_a_class_token_vit_never_reads_its_last_blocks_patch_tokens(pool):
    """Independent truth: autograd says the last block's patch-token gradient is exactly zero
    when the tower pools its class token, and not when it averages the patch tokens; the seam
    agrees, and Grad-CAM there is refused in one line naming the tower and the method."""
    model = _vit(layers=2)
    model.visual.pool_type = pool
    g = _last_block_patch_gradient(model, 32)
    tower = tower_of(model)
    assert tower.unused_map_note(0) is None   # an earlier block's tokens feed the next block
    if pool == "avg":
        assert g.abs().max() > 0 and tower.unused_map_note(1) is None
        assert gradcam_not_applicable(model) == {}
        assert np.isfinite(attribute("gradcam", model, _images(1, 32), torch.randn(EMBED),
                                     stage=1)).all()
        return
    assert torch.count_nonzero(g) == 0
    with pytest.raises(NotApplicable) as e:
        attribute("gradcam", model, _images(1, 32), torch.randn(EMBED), stage=1)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("open_clip VisionTransformer tower")
    assert "Grad-CAM on block 1 does not apply" in msg and "class token" in msg
    assert gradcam_not_applicable(model) == {1: msg}
    assert sorted(gradcam_stage_scores(model, _images(2, 32), _texts(model),
                                       np.ones((2, 32, 32), bool))) == [0]


def test_a_timm_vit_pooling_its_class_token_has_the_same_note():
    model = _timm_vit()
    tower = tower_of(model)
    assert tower.unused_map_note(1) is None   # the fixture averages (global_pool="avg")
    model.visual.trunk.global_pool = "token"
    trunk, store = model.visual.trunk, {}
    handle = trunk.blocks[-1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        (g,) = torch.autograd.grad(model.encode_image(_images(1, 32)).sum(), store["a"])
    finally:
        handle.remove()
    assert g[:, 0].abs().max() > 0   # the class token is read ...
    assert torch.count_nonzero(g[:, trunk.num_prefix_tokens:]) == 0   # ... the patches are not
    assert tower.unused_map_note(0) is None
    assert "class token" in tower.unused_map_note(1)
    assert list(gradcam_not_applicable(model)) == [1]
