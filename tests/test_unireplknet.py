"""The UniRepLKNet tower against the reference implementation's key manifest and parity case."""
import json

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import unirepclip  # noqa: F401  (registers the towers)
from unirepclip.models import unireplknet as U
from helpers import randomize_reparam_state


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    return json.loads((fixtures_dir / "unireplknet_state_dict_keys.json").read_text())


@pytest.fixture(scope="module")
def parity(fixtures_dir):
    path = fixtures_dir / "parity_tiny.safetensors"
    with safe_open(str(path), "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    return cfg, load_file(str(path))


def _sub(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _shapes(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("variant", list("afpntsbl"))
@pytest.mark.parametrize("deploy", [False, True])
def test_state_dict_keys_match_reference(manifest, variant, deploy):
    name = f"unireplknet_{variant}"
    with torch.device("meta"):
        model = getattr(U, name)(deploy=deploy)
    ref = manifest[name + ("/deploy" if deploy else "")]
    assert _shapes(model) == [(k, v) for k, v in ref.items()]


@pytest.mark.parametrize("variant", list("afpntsbl"))
def test_reparameterized_keys_match_reference(manifest, variant):
    name = f"unireplknet_{variant}"
    with torch.device("meta"):
        model = getattr(U, name)()
        timm.utils.reparameterize_model(model, inplace=True)
    assert _shapes(model) == [(k, v) for k, v in manifest[name + "/deploy"].items()]


def test_xl_follows_the_same_rules(manifest):
    with torch.device("meta"):
        xl = U.unireplknet_xl()
    ref_l = manifest["unireplknet_l"]
    ks = [k for k, _ in _shapes(xl)]
    assert ks == list(ref_l)
    scale = 2048 / 1536
    shapes_xl = dict(_shapes(xl))
    assert shapes_xl["head.weight"] == [1000, 2048]
    assert shapes_xl["stages.2.0.dwconv.lk_origin.weight"] == [1024, 1, 13, 13]
    assert shapes_xl["downsample_layers.0.0.weight"] == [int(96 * scale), 3, 3, 3]


def test_parity_with_reference(parity):
    cfg, t = parity
    model = U.UniRepLKNet(**cfg).eval()
    model.load_state_dict(_sub(t, "train."), strict=True)
    x = t["input"]
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        for i in range(4):
            torch.testing.assert_close(stages[i], t[f"stage{i}_output"], atol=1e-5, rtol=0)
        pooled = model.forward_head(final, pre_logits=True)
        torch.testing.assert_close(pooled, t["pooled_features"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), t["logits_train_form"], atol=1e-5, rtol=0)


def test_parity_reparameterized(parity):
    cfg, t = parity
    model = U.UniRepLKNet(**cfg).eval()
    model.load_state_dict(_sub(t, "train."), strict=True)
    model = timm.utils.reparameterize_model(model)
    deploy_ref = _sub(t, "deploy.")
    sd = model.state_dict()
    assert sorted(sd) == sorted(deploy_ref)
    for k, v in deploy_ref.items():
        torch.testing.assert_close(sd[k], v, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(t["input"]), t["logits_deploy_form"], atol=1e-5, rtol=0)


def test_deploy_model_loads_converted_state_dict_strictly(parity):
    cfg, t = parity
    model = U.UniRepLKNet(**cfg, deploy=True).eval()
    model.load_state_dict(_sub(t, "deploy."), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(t["input"]), t["logits_deploy_form"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel_sizes,dims", [
    (((5,), (7,), (9, 3), (11,)), (8, 16, 24, 32)),
    (((15,), (17,), (13, 0), (3,)), (8, 8, 16, 16)),
    (None, (16, 16, 32, 32)),
])
def test_reparameterization_is_exact_on_random_configs(kernel_sizes, dims):
    depths = (1, 1, 2, 1) if kernel_sizes else (2, 2, 6, 2)
    model = randomize_reparam_state(U.UniRepLKNet(depths=depths, dims=dims, kernel_sizes=kernel_sizes,
                                     num_classes=7, layer_scale_init_value=0.5)).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
        deployed = timm.utils.reparameterize_model(model)  # a converted copy
        after = deployed(x)
    rel = (after - before).abs().max() / before.abs().max()
    assert rel <= 1e-5
    assert not any(k.endswith("gamma") and k.count(".") == 2 for k in deployed.state_dict())
    assert not any("dil_conv" in k or "origin_bn" in k or "norm.running" in k
                   for k in deployed.state_dict())
    assert any("dil_conv" in k for k in model.state_dict())  # the original is left alone


def test_timm_reparameterize_model_gives_the_inference_form():
    """timm's generic fuse walks the modules and calls each block's ``reparameterize``, never the
    tower's own: the form must be read from the blocks, for a tower and for a whole CLIP."""
    from unirepclip.models import is_inference_form

    trunk = randomize_reparam_state(U.unireplknet_demo(num_classes=4), seed=4).eval()
    fused = timm.utils.reparameterize_model(trunk)
    assert not trunk.deploy and fused.deploy
    clip = unirepclip.create_model("UniRepLKNet-Demo")
    randomize_reparam_state(clip.visual.trunk, seed=5)
    clip.eval()
    fused_clip = timm.utils.reparameterize_model(clip)
    assert not is_inference_form(clip) and is_inference_form(fused_clip)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        for before, after in ((trunk(x), fused(x)),
                              (clip.encode_image(x), fused_clip.encode_image(x))):
            assert (after - before).abs().max() / before.abs().max() <= 1e-5


def test_timm_interface():
    m = timm.create_model("unireplknet_a", num_classes=0)
    assert m.num_features == 320
    x = torch.randn(2, 3, 64, 64)
    assert m(x).shape == (2, 320)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 320)
    dense = timm.create_model("unireplknet_a", num_classes=5, global_pool="")
    assert dense(x).shape == (2, 5, 2, 2)
    m.reset_classifier(11)
    assert m(x).shape == (2, 11)
    assert m.pretrained_cfg["mean"] and m.default_cfg["pool_size"] == (7, 7)
    feats = m.forward_intermediates(x, intermediates_only=True)
    assert [f.shape[1] for f in feats] == [40, 80, 160, 320]
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    assert len(m.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)) == 1


def test_grad_checkpointing_gives_same_gradients():
    m = randomize_reparam_state(U.unireplknet_demo(num_classes=4)).eval()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    m(x).sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    m.set_grad_checkpointing(True)
    m(x).sum().backward()
    torch.testing.assert_close(x.grad, g1)


def test_channels_last_and_autocast():
    m = randomize_reparam_state(U.unireplknet_demo(num_classes=4)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)
        cl = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = m(x)
    assert torch.nn.functional.cosine_similarity(bf.float(), ref).min() > 0.99


@pytest.mark.parametrize("kwargs,needle", [
    (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,), (13,), (13, 3), (13,))), "stage 2 has depth 1"),
    (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,), (12,), (13,), (13,))), "stage 1 block 0 has kernel size 12"),
    (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,), (19,), (13,), (13,))), "kernel size 19"),
    (dict(depths=(1, 2, 3, 4)), "no default kernel_sizes"),
    (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,),) * 3), "3 stages"),
])
def test_bad_configs_name_the_culprit(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        U.UniRepLKNet(dims=(8, 8, 8, 8), **kwargs)


def test_wrong_input_channels_is_a_clear_error():
    m = U.unireplknet_demo(num_classes=0)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, H, W\)"):
        m(torch.randn(1, 1, 64, 64))


def test_construction_prints_nothing(capsys):
    U.unireplknet_demo()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("wrap", ["state_dict", "model_ema", "module"])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.module.visual.trunk.", "trunk."])
def test_timm_pretrained_file_unwraps_and_strips_prefixes(tmp_path, wrap, prefix):
    """A wrapped, prefixed file (a training script's, or an open_clip CLIP's with its text tower)
    loads into the timm tower through timm's own pretrained path and checkpoint_filter_fn."""
    import timm

    # 1000 classes, the pretrained config's: timm drops a head of another width on purpose
    src = randomize_reparam_state(U.unireplknet_demo(num_classes=1000)).eval()
    sd = {prefix + k: v for k, v in src.state_dict().items()}
    if "visual.trunk." in prefix:  # an open_clip CLIP: its text tower is left out
        sd["token_embedding.weight"] = torch.zeros(4, 2)
    path = tmp_path / "wrapped.pth"
    torch.save({wrap: sd, "epoch": 3}, path)
    model = timm.create_model("unireplknet_demo", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    got, want = model.state_dict(), src.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
