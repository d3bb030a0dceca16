"""The shared test helper does what the tests rely on it for."""
import copy

import pytest
import timm
import torch
from torch import nn

import unirepclip  # noqa: F401  (registers the towers)
from helpers import randomize_reparam_state
from unirepclip.models.unireplknet import GRNwithNHWC, UniRepLKNetBlock


def test_every_bn_grn_and_layer_scale_leaves_its_initial_value(reparam_state):
    fresh = timm.create_model("unireplknet_demo", num_classes=0).eval()
    model = reparam_state(copy.deepcopy(fresh), seed=1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    grns = [m for m in model.modules() if isinstance(m, GRNwithNHWC)]
    blocks = [m for m in model.modules() if isinstance(m, UniRepLKNetBlock) and m.gamma is not None]
    assert bns and grns and blocks
    for m in bns:
        assert m.running_mean.abs().min() > 0 and (m.running_var != 1).all()
        assert (m.running_var >= 0.5).all() and (m.running_var <= 2.0).all()
        assert (m.weight != 1).all() and (m.bias != 0).all()
    for m in grns:
        assert (m.gamma != 0).all() and (m.beta != 0).all()
    for m in blocks:
        assert (m.gamma != 1e-6).all() and m.gamma.abs().max() > 0.05
    assert not model.training  # the mode is the caller's
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(x), fresh(x), atol=1e-3)  # the state changes the output
        deployed = timm.utils.reparameterize_model(copy.deepcopy(model))
        torch.testing.assert_close(deployed(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_seed_and_a_generator_of_that_seed_draw_the_same_values():
    a = timm.create_model("unireplknet_demo", num_classes=0)
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(3)
    randomize_reparam_state(a, seed=3)
    randomize_reparam_state(b, g)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = randomize_reparam_state(copy.deepcopy(a), g)  # the generator draws on: new values
    assert not torch.equal(c.stages[0][0].gamma, a.stages[0][0].gamma)


def test_depthwise_std_draws_the_depthwise_kernels_only_when_asked(reparam_state):
    base = timm.create_model("unireplknet_demo", num_classes=0)
    plain = reparam_state(copy.deepcopy(base), seed=0)
    drawn = reparam_state(copy.deepcopy(base), seed=0, depthwise_std=0.1)
    modules = dict(base.named_modules())
    dw = [n for n, m in modules.items() if isinstance(m, nn.Conv2d) and m.groups > 1
          and m.groups == m.in_channels]
    assert dw
    for n in dw:
        assert torch.equal(dict(plain.named_modules())[n].weight, modules[n].weight), n
        assert float(dict(drawn.named_modules())[n].weight.detach().std()) == pytest.approx(0.1, rel=0.35), n
