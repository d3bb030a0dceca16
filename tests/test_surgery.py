"""Kernel surgery (unirepclip.analysis.surgery) on the shipped demo and on a tiny tower.

Truth: bit-identity where nothing may change (the full size, cuts that are no-ops by construction),
a change where the map is wider than the kept kernel, a 1x1 cut against the point-wise result
computed by hand from the training-form parameters (BatchNorm formulas only), the map sizes
against a real forward pass, and the loaded model's state dict before and after."""
import pytest
import torch

from unirepclip.analysis.surgery import (
    Cut, cut_is_noop, cut_kernels, cut_plan, inference_form, is_noop, large_kernel_blocks,
    stage_map_sizes)
from unirepclip.models.towers import NotApplicable, tower_of
from unirepclip.models.unireplknet import UniRepLKNet


@pytest.fixture(scope="module")
def demo():
    from unirepclip import create_model
    from unirepclip.models.pretrained import MODEL_NAME, resolve_checkpoint

    return create_model(MODEL_NAME, resolve_checkpoint("demo", MODEL_NAME))


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _encode(model, x):
    with torch.no_grad():
        return model.encode_image(x)


def test_map_sizes_match_a_forward_pass(demo):
    trunk = tower_of(demo).module
    for size in (64, 77, 224):
        shapes = []
        x = torch.zeros(1, 3, size, size)
        with torch.no_grad():
            for i in range(4):
                x = trunk.stages[i](trunk.downsample_layers[i](x))
                shapes.append(tuple(x.shape[-2:]))
        assert stage_map_sizes(trunk, size) == shapes
    assert stage_map_sizes(trunk, 64) == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_noop_rule_gives_the_issues_worked_numbers(demo):
    # at 64 px: on stage 2 (4 wide) only cuts to 5 or less change anything, on stage 3 (2 wide)
    # only the cut to 1, on stage 1 (8 wide, kernel 13) every cut below 13
    real = {s: [p["keep"] for p in cut_plan(demo, s, 64) if not p["noop"]] for s in (1, 2, 3)}
    assert real == {1: [1, 3, 5, 7, 9, 11], 2: [1, 3, 5], 3: [1]}
    assert is_noop(13, 13, (56, 56)) and not is_noop(13, 11, (56, 56))
    assert not cut_is_noop(demo, Cut(3, drop_dilated=True), 64)


def test_full_size_is_bit_identical_to_the_uncut_inference_form(demo, images):
    ref = _encode(inference_form(demo), images)
    for stage in (1, 2, 3):
        assert torch.equal(_encode(cut_kernels(demo, Cut(stage, 13)), images), ref)
    # and the inference form is the loaded model up to float rounding
    torch.testing.assert_close(ref, _encode(demo, images), rtol=1e-4, atol=1e-4)


def test_every_cut_marked_noop_is_one_and_every_real_cut_changes_the_output(demo, images):
    ref = _encode(inference_form(demo), images)
    for stage in (1, 2, 3):
        for p in cut_plan(demo, stage, 64):
            same = torch.equal(_encode(cut_kernels(demo, p["cut"]), images), ref)
            assert same == p["noop"], p["cut"].label


def test_dropping_the_dilated_branches_changes_the_output(demo, images):
    ref = _encode(inference_form(demo), images)
    out = _encode(cut_kernels(demo, Cut(1, drop_dilated=True)), images)
    assert not torch.allclose(out, ref, atol=1e-3)
    both = _encode(cut_kernels(demo, Cut(1, keep=13, drop_dilated=True)), images)
    assert torch.equal(both, out)  # the full size on top of the drop changes nothing more


def test_the_loaded_model_is_not_modified(demo, images):
    before = {k: v.clone() for k, v in demo.state_dict().items()}
    out_before = _encode(demo, images)
    cut_kernels(demo, [Cut(1, 1, drop_dilated=True), Cut(2, 3)])
    inference_form(demo)
    after = demo.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not tower_of(demo).module.deploy
    assert torch.equal(_encode(demo, images), out_before)


def _tiny() -> UniRepLKNet:
    torch.manual_seed(0)
    t = UniRepLKNet(num_classes=0, depths=(1, 1, 1, 1), dims=(8, 8, 8, 8),
                    kernel_sizes=((7,), (3,), (3,), (3,)), layer_scale_init_value=1.0)
    for m in t.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return t.eval()


def _bn(bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def test_a_cut_to_one_is_the_hand_computed_pointwise_map():
    tower = _tiny()
    block = tower.stages[0][0]
    dw = block.dwconv
    # by hand: every branch's centre tap, each scaled by its BatchNorm, then the block's norm
    s, b = _bn(dw.origin_bn)
    centre = s * dw.lk_origin.weight[:, 0, 3, 3]
    bias = b.clone()
    for k, r in zip(dw.kernel_sizes, dw.dilates):
        sb, bb = _bn(getattr(dw, f"dil_bn_k{k}_{r}"))
        centre = centre + sb * getattr(dw, f"dil_conv_k{k}_{r}").weight[:, 0, k // 2, k // 2]
        bias = bias + bb
    sn, bn_ = _bn(block.norm)
    centre, bias = sn * centre, sn * bias + bn_
    cut = cut_kernels(tower, Cut(0, keep=1))
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        got = cut.stages[0][0].norm(cut.stages[0][0].dwconv(x))
        want = x * centre.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert len(large_kernel_blocks(cut, 0)) == 1


def test_bad_cuts_are_refused_in_one_line(demo):
    with pytest.raises(ValueError, match="stage 0 has no large kernel"):
        cut_kernels(demo, Cut(0, 1))
    with pytest.raises(ValueError, match="odd kernel size from 1 to 13"):
        cut_kernels(demo, Cut(1, 4))
    with pytest.raises(ValueError, match="stages 0-3"):
        cut_kernels(demo, Cut(7, 1))
    with pytest.raises(ValueError, match="inference form"):
        cut_kernels(inference_form(demo), Cut(1, drop_dilated=True))
    with pytest.raises(TypeError, match="not an image tower"):
        cut_kernels(torch.nn.Linear(2, 2), Cut(1, 1))


def test_another_tower_family_is_refused_naming_it_and_kernel_surgery():
    from open_clip.transformer import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2,
                            mlp_ratio=2.0, output_dim=8)
    for call in (lambda: cut_kernels(vit, Cut(1, 1)), lambda: cut_plan(vit, 1, 32),
                 lambda: stage_map_sizes(vit, 32), lambda: inference_form(vit)):
        with pytest.raises(NotApplicable, match=r"^open_clip VisionTransformer tower "
                                                r"\(VisionTransformer\): kernel surgery needs "
                                                r"a UniRepLKNet image tower$"):
            call()


def test_dropping_the_branches_leaves_the_large_kernel_and_its_batchnorm():
    tower = _tiny()
    block = tower.stages[0][0]
    dw = block.dwconv
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        # the training form's own modules, the branches unused; then the block's norm
        want = block.norm(dw.origin_bn(dw.lk_origin(x)))
        full = block.norm(dw(x))
        cut = cut_kernels(tower, Cut(0, drop_dilated=True))
        got = cut.stages[0][0].norm(cut.stages[0][0].dwconv(x))
    assert cut.stages[0][0].dwconv.deployed and not dw.deployed
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, full, atol=1e-3)   # the branches did contribute


def test_branches_already_merged_cannot_be_dropped():
    dw = inference_form(_tiny()).stages[0][0].dwconv
    with pytest.raises(ValueError, match="already merged into one kernel"):
        dw.reparameterize(dilated=False)
