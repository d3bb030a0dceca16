"""Every UniRepLKNet in timm's registry, in timm's manner (its tests/test_models.py loops over
``list_models``): it builds on the meta device, its keys are the reference's where the reference
manifest has the variant, the timm interface works, and re-parameterization keeps its output."""
import json

import pytest
import timm
import torch

import unirepclip  # noqa: F401  (registers the towers)
from helpers import randomize_reparam_state
from unirepclip.models import is_inference_form

VARIANTS = timm.list_models("unireplknet_*")
# Small enough to run the full forward check in the default suite; the others run it under slow.
SMALL = {"unireplknet_a", "unireplknet_f", "unireplknet_p", "unireplknet_demo",
         "unireplknet_demo_small_kernel"}


def test_the_registry_holds_every_variant():
    assert set(VARIANTS) >= {f"unireplknet_{v}" for v in "afpntsbl"} | {
        "unireplknet_xl", "unireplknet_demo", "unireplknet_demo_small_kernel"}


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    return json.loads((fixtures_dir / "unireplknet_state_dict_keys.json").read_text())


@pytest.mark.parametrize("name", VARIANTS)
def test_builds_on_meta_with_the_reference_keys_and_the_timm_interface(name, manifest):
    with torch.device("meta"):
        model = timm.create_model(name)
        shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
        x = torch.empty(2, 3, 64, 64)
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model(x)
        final, stages = model.forward_intermediates(x)
        model.reset_classifier(7)
        logits7 = model(x)
    if name in manifest:
        assert shapes == [(k, v) for k, v in manifest[name].items()]
    dims = model.dims
    assert feats.shape == (2, dims[-1], 2, 2)  # four downsamplings by 2, 2, 2, 2 after a stride-4 stem
    assert pooled.shape == (2, model.num_features) == (2, dims[-1])
    assert logits.shape == (2, 1000) and logits7.shape == (2, 7)
    assert [s.shape[1] for s in stages] == list(dims) and final.shape == feats.shape
    assert [s.shape[-1] for s in stages] == [16, 8, 4, 2]


def _check_reparameterization(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5).eval()
    randomize_reparam_state(model, seed=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        fused = timm.utils.reparameterize_model(model)  # a fused copy; model stays as it was
        after = fused(x)
    assert not model.deploy and fused.deploy
    assert is_inference_form(type("Clip", (), {"visual": type("V", (), {"trunk": fused})()})())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    rel = (after - before).abs().max() / before.abs().max()
    assert rel < 1e-4, (name, float(rel))


@pytest.mark.parametrize("name", sorted(set(VARIANTS) & SMALL))
def test_reparameterize_model_gives_the_inference_form_and_the_same_output(name):
    _check_reparameterization(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(VARIANTS) - SMALL))
def test_reparameterize_model_on_the_large_variants(name):
    _check_reparameterization(name)
