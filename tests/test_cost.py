"""unirepclip.analysis.cost: parameter counts by part, MACs (hand-computed and REFERENCE.md
figures), agreement metrics, throughput, the two forms of the encoder and what notebook 01 records
of them; unirepclip.viz.cost's text tables."""
import time

import numpy as np
import pytest
import torch
from torch import nn

import unirepclip
from helpers import randomize_reparam_state
from unirepclip.analysis import cost
from unirepclip.models import is_inference_form
from unirepclip.utils import max_relative_difference
from unirepclip.viz.cost import format_forms


# --- parameters -------------------------------------------------------------------------------
class _Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)            # 3*4*9 + 4 = 112
        self.head = nn.Linear(4, 2)               # 4*2 + 2 = 10 (the projection)


class _Visual(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = _Trunk()


class _Clip(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = _Visual()
        self.token_embedding = nn.Embedding(10, 2)    # 20
        self.ln_final = nn.LayerNorm(2)               # 4
        self.text_projection = nn.Parameter(torch.zeros(2, 2))  # 4
        self.logit_scale = nn.Parameter(torch.zeros(()))        # 1


def test_parameter_counts_by_part_hand_counted():
    c = cost.parameter_counts(_Clip())
    assert c == {"image_tower": 112, "image_projection": 10, "text_tower": 28, "logit_scale": 1,
                 "image": 122, "total": 151}


def test_parameter_counts_demo_model_sum_and_projection_shape():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    c = cost.parameter_counts(model)
    assert c["total"] == sum(p.numel() for p in model.parameters())
    assert c["image_projection"] == 192 * 64 + 64  # trunk head: 192 features -> embed 64, bias
    assert c["image"] == sum(p.numel() for p in model.visual.parameters())




def test_checkpoint_results(tmp_path):
    import hashlib

    from unirepclip.training.demo import save_checkpoint
    path = tmp_path / "demo.safetensors"
    save_checkpoint(unirepclip.create_model("UniRepLKNet-Demo"), path)
    report = unirepclip.inspect_checkpoint(path, model="UniRepLKNet-Demo")
    r = cost.checkpoint_results(report, "UniRepLKNet-Demo")
    assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r["layout"] == "open_clip" and r["form"] == "training"
    assert r["matches_model"] is True and r["file_size"] == path.stat().st_size
    other = unirepclip.inspect_checkpoint(path, model="UniRepLKNet-Demo-SmallKernel")
    assert cost.checkpoint_results(other, "UniRepLKNet-Demo-SmallKernel")["matches_model"] is False
    rnd = cost.checkpoint_results(None)
    assert rnd["sha256"] is None and rnd["layout"] == "random-init"


def test_classifier_head_parameters():
    assert cost.classifier_head_parameters(1536, 1000) == 1536 * 1000 + 1000
    with pytest.raises(ValueError, match="num_classes"):
        cost.classifier_head_parameters(10, 0)




# --- MACs --------------------------------------------------------------------------------------
class _ConvEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def encode_image(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_image_macs_hand_computed_on_cpu_and_meta():
    expected = 32 * 32 * 8 * 3 * 9 + 8 * 5  # conv MACs per output pixel x pixels, then the linear
    assert cost.image_macs(_ConvEncoder(), 32) == expected
    assert cost.image_macs(_ConvEncoder().to("meta"), 32) == expected
    with pytest.raises(ValueError, match="image_size"):
        cost.image_macs(_ConvEncoder(), 16)


def test_demo_macs_same_on_meta_and_real_model_and_scale_with_pixels():
    real = unirepclip.create_model("UniRepLKNet-Demo")
    meta = cost.meta_clip("UniRepLKNet-Demo")
    assert next(meta.parameters()).is_meta
    assert cost.image_macs(meta, 64) == cost.image_macs(real, 64)
    # 4x the pixels is 4x the MACs, bar what acts on pooled vectors: the projection (192 -> 64)
    # and each block's squeeze-excitation (d -> d/4 -> d: d^2/2), depths 1,1,2,1, dims 24..192
    pooled = 192 * 64 + sum(n * d * d // 2 for n, d in ((1, 24), (1, 48), (2, 96), (1, 192)))
    assert cost.image_macs(meta, 128) - pooled == 4 * (cost.image_macs(meta, 64) - pooled)


def test_text_macs_hand_computed_for_the_demo_text_tower():
    # width 64, 2 layers, context 32: per token and layer 3w^2 (qkv) + w^2 (out) + 8w^2 (MLP);
    # attention scores and weighted values 2 n^2 w per layer; the projection of the pooled token.
    w, n, layers = 64, 32, 2
    expected = 12 * w * w * n * layers + 2 * n * n * w * layers + w * 64
    assert cost.text_macs(cost.meta_clip("UniRepLKNet-Demo")) == expected




# --- agreement and speed ---------------------------------------------------------------------
def test_max_relative_difference_and_agreement():
    # the one max_relative_difference (utils): max |other - reference| / max |reference|
    assert max_relative_difference([1.0, -2.0], [1.1, -2.0]) == pytest.approx(0.05)
    assert max_relative_difference(np.array([2.0, -4.0]), np.array([2.5, -4.0])) == 0.125
    assert max_relative_difference(torch.ones(3), torch.ones(3)) == 0.0
    with pytest.raises(ValueError, match="all zeros"):
        max_relative_difference([0.0], [1.0])
    with pytest.raises(ValueError, match="all zeros"):  # a zero reference map too
        max_relative_difference(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        max_relative_difference([1.0, 2.0], [1.0])
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 1.0], [0.0, 3.0]])  # row 0 orthogonal, row 1 parallel
    agree = cost.embedding_agreement(a, b)
    assert agree["min_cosine"] == pytest.approx(0.0)
    assert agree["max_rel_diff"] == pytest.approx(1.0 / 2.0)
    # the worst row is reported: cosines 0.6 and 0.8 (3-4-5 triangles), from lists of floats
    assert cost.embedding_agreement([[1.0, 0.0], [1.0, 0.0]],
                                  [[3.0, 4.0], [4.0, 3.0]])["min_cosine"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="NaN"):
        cost.embedding_agreement(a, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="all zeros"):
        cost.embedding_agreement(a, np.array([[0.0, 0.0], [0.0, 1.0]]))


def test_images_per_second_of_a_known_delay():
    def slow(x):
        time.sleep(0.05)
    ips = cost.images_per_second(slow, torch.zeros(10, 3), repeats=3, warmup=0)
    assert 100 <= ips <= 10 / 0.05 + 1e-9  # at least the sleep, and not much more
    with pytest.raises(ValueError, match="repeats"):
        cost.images_per_second(slow, torch.zeros(2), repeats=0)


def test_encoder_forms_agree_and_leave_the_training_model_alone():
    model = randomize_reparam_state(unirepclip.create_model("UniRepLKNet-Demo"))
    n_before = sum(p.numel() for p in model.parameters())
    forms = cost.encoder_forms(model, channels_last=True)
    assert list(forms) == ["training", "inference", "inference, channels-last"]
    assert not is_inference_form(forms["training"]) and is_inference_form(forms["inference"])
    assert sum(p.numel() for p in model.parameters()) == n_before
    stem = forms["inference, channels-last"].visual.trunk.downsample_layers[0][0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    x = torch.randn(2, 3, 32, 32)
    out = cost.compare_forms(forms, x, repeats=1, warmup=0)
    assert out["training"]["max_rel_diff"] == 0.0
    for label in ("inference", "inference, channels-last"):
        assert out[label]["max_rel_diff"] <= 1e-5 and out[label]["min_cosine"] > 0.99999
        assert out[label]["images_per_s"] > 0
    # a change that is not a re-parameterization shows
    with torch.no_grad():
        forms["inference"].visual.trunk.head.bias.add_(0.1)
    assert cost.compare_forms(forms, x, repeats=1, warmup=0)["inference"]["max_rel_diff"] > 1e-3
    with pytest.raises(ValueError, match="already in the inference form"):
        cost.encoder_forms(forms["inference"])


def test_compare_forms_under_autocast_reports_both_agreements():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    forms = {"training": model}
    out = cost.compare_forms(forms, torch.randn(1, 3, 32, 32), repeats=1, warmup=0,
                           autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    row = out["training"]
    assert row["max_rel_diff"] == 0.0
    assert 0 < row["autocast_max_rel_diff"] < 0.2  # bf16 keeps ~3 significant digits
    assert row["autocast_min_cosine"] > 0.99




def test_form_results_keys():
    cmp = {"training": {"max_rel_diff": 0.0, "min_cosine": 1.0, "images_per_s": 10.0,
                        "autocast_max_rel_diff": 0.01, "autocast_min_cosine": 0.999},
           "inference": {"max_rel_diff": 2e-7, "min_cosine": 1.0, "images_per_s": 20.0,
                         "autocast_max_rel_diff": 0.01, "autocast_min_cosine": 0.998},
           "inference, channels-last": {"max_rel_diff": 3e-7, "min_cosine": 1.0,
                                        "images_per_s": 30.0, "autocast_max_rel_diff": 0.02,
                                        "autocast_min_cosine": 0.997}}
    r = cost.form_results(cmp)
    assert r["images_per_s"] == {"training": 10.0, "inference": 20.0,
                                 "inference_channels_last": 30.0}
    assert r["reparam_max_rel_diff"] == 2e-7 and r["channels_last_max_rel_diff"] == 3e-7
    assert r["fastpath_min_cosine"] == 0.997 and r["fastpath_max_rel_diff"] == 0.02
    assert "fastpath_min_cosine" not in cost.form_results({"training": {"images_per_s": 1.0,
                                                                       "max_rel_diff": 0.0}})



# --- notebook 01's check of the two forms ----------------------------------------------------
def test_form_comparison_records_the_training_vs_inference_agreement():
    import timm

    model = randomize_reparam_state(unirepclip.create_model("UniRepLKNet-Demo"), seed=3)
    model.train()  # BatchNorm would mix the images: the check must measure in eval mode
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    check = cost.form_comparison(model, x, repeats=1, warmup=0)
    assert model.training and model.visual.trunk.stages[0][0].norm.training  # modes restored
    assert check["skipped"] is None
    assert list(check["rows"]) == ["training", "inference", "inference, channels-last"]
    assert check["results"] == cost.form_results(check["rows"])
    # independent truth: timm's own re-parameterization of an eval-mode copy
    ref = model.eval()
    with torch.no_grad():
        a = ref.encode_image(x, normalize=True)
        b = timm.utils.reparameterize_model(ref).encode_image(x, normalize=True)
    expected = max_relative_difference(a, b)
    assert 0 < expected < 1e-5
    assert check["results"]["reparam_max_rel_diff"] == pytest.approx(expected, rel=1e-3)
    assert 0 < check["results"]["channels_last_max_rel_diff"] < 1e-5
    assert set(check["results"]["images_per_s"]) == {"training", "inference",
                                                      "inference_channels_last"}
    assert "fastpath_min_cosine" not in check["results"]  # fp32: no low-precision fast path
    lines = format_forms(check).splitlines()
    assert len(lines) == 3 and lines[1].startswith("inference ") and "images/s" in lines[1]


def test_form_comparison_bf16_and_an_inference_form_model():
    model = unirepclip.create_model("UniRepLKNet-Demo").eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    check = cost.form_comparison(model, x, precision="bf16", channels_last=False, repeats=1,
                                 warmup=0)
    assert list(check["rows"]) == ["training", "inference"]
    r = check["results"]
    assert 0.99 < r["fastpath_min_cosine"] < 1.0 and 0 < r["fastpath_max_rel_diff"] < 0.2
    assert r["fastpath_min_cosine"] == check["rows"]["inference"]["autocast_min_cosine"]
    fused = cost.encoder_forms(model, channels_last=False)["inference"]
    skipped = cost.form_comparison(fused, x, repeats=1, warmup=0)
    assert skipped["rows"] == {} and skipped["results"] == {}
    assert "inference form" in skipped["skipped"] and "inference form" in format_forms(skipped)
    with pytest.raises(ValueError, match="precision"):
        cost.form_comparison(model, x, precision="fp16")


def test_images_per_second_times_every_repeat_after_the_warmup():
    calls = []
    ips = cost.images_per_second(lambda x: calls.append(torch.is_grad_enabled()),
                                 torch.zeros(4, 3), repeats=5, warmup=2)
    assert ips > 0
    assert len(calls) >= 2 + 5 and not any(calls)  # warm-up and timed calls, all without grad


def test_a_vit_is_measured_at_its_own_size_and_matches_open_clips_profile():
    """A ViT's positional embedding fixes its input size: ViT-B-32 is counted at 224 px (added
    to the sizes asked for), other sizes carry a one-line reason and no number, and the counts
    equal open_clip's published profile (GFLOPs / 2, shipped in unirepclip.data.published)."""
    from unirepclip.data import published

    prof = published.model_profile("ViT-B-32")
    for deploy in (False, True):  # a ViT has one form: deploy builds it as it is
        s = cost.model_stats("ViT-B-32", [64, 96], deploy=deploy)
        assert s.fixed_image_size == 224 and sorted(s.image_gmacs) == [224]
        assert sorted(s.not_measured) == [64, 96]
        note = s.not_measured[64]
        assert "\n" not in note and note.startswith("ViT-B-32: not measured at 64x64 px")
        assert "224x224 px only" in note
        assert s.image_gmacs[224] == pytest.approx(prof.image_gmacs, abs=0.006)
        assert s.text_gmacs == pytest.approx(prof.text_gmacs, abs=0.006)
        assert s.params["image"] / 1e6 == pytest.approx(prof.image_params_m, abs=0.006)
        assert s.params["total"] / 1e6 == pytest.approx(prof.params_m, abs=0.006)
    assert cost.model_stats("ViT-B-32").image_gmacs == {}  # no sizes asked: parameters only


def test_a_tower_of_any_size_gets_no_size_notes():
    s = cost.model_stats("UniRepLKNet-Demo", [64, 96])
    assert sorted(s.image_gmacs) == [64, 96] and s.not_measured == {}
    assert s.fixed_image_size is None


def test_encoder_images_per_second_runs_the_encoder_under_the_precisions_autocast(monkeypatch):
    """The efficiency figure's speed: the timed call is encode_image under bf16 autocast when
    asked (a matmul inside it comes out bf16), plain fp32 otherwise, on the images given."""
    from torch import nn

    from unirepclip.analysis import cost as cost_mod

    seen = []

    class Encoder(nn.Module):
        def encode_image(self, x):
            y = x.flatten(1) @ torch.ones(x[0].numel(), 2)
            seen.append(y.dtype)
            return y

    timed = {}

    def fake(fn, images, repeats, warmup):
        timed["n"] = len(images)
        fn(images)
        return 123.0

    monkeypatch.setattr(cost_mod, "images_per_second", fake)
    x = torch.zeros(3, 3, 4, 4)
    assert cost_mod.encoder_images_per_second(Encoder(), x, precision="bf16") == 123.0
    assert cost_mod.encoder_images_per_second(Encoder(), x) == 123.0
    assert seen == [torch.bfloat16, torch.float32] and timed["n"] == 3
    with pytest.raises(ValueError, match="precision"):
        cost_mod.encoder_images_per_second(Encoder(), x, precision="fp8")
