"""unirepclip.modelstats: parameter counts by part, MACs (hand-computed and REFERENCE.md figures),
agreement metrics, throughput, the two forms of the encoder, and the errata table."""
import time

import numpy as np
import pytest
import torch
from torch import nn

import unirepclip
from unirepclip.analysis import modelstats as ms
from unirepclip.models import is_inference_form


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
    c = ms.parameter_counts(_Clip())
    assert c == {"image_tower": 112, "image_projection": 10, "text_tower": 28, "logit_scale": 1,
                 "image": 122, "total": 151}


def test_parameter_counts_demo_model_sum_and_projection_shape():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    c = ms.parameter_counts(model)
    assert c["total"] == sum(p.numel() for p in model.parameters())
    assert c["image_projection"] == 192 * 64 + 64  # trunk head: 192 features -> embed 64, bias
    assert c["image"] == sum(p.numel() for p in model.visual.parameters())


def test_card_errata_full_size_counts_match_reference_and_demo_column():
    """REFERENCE.md: tower 218.5M without a head (220.1M with a 1000-class head), text 354.0M,
    whole about 574M; 35.9 / 73.2 / 105.4 GMACs at 224 / 320 / 384 px (inference form)."""
    e = ms.card_errata("UniRepLKNet-Demo", [64, 96])
    t, s = e.reference_training, e.reference_inference
    assert round(t.params["image_tower"] / 1e6, 1) == 218.5
    assert round(t.params_with_in1k_head / 1e6, 1) == 220.1
    assert round(t.params["text_tower"] / 1e6, 1) == 354.0
    assert round(t.params["total"] / 1e6) == 574
    assert t.num_features == 1536
    assert [round(s.image_gmacs[r], 1) for r in (224, 320, 384)] == [35.9, 73.2, 105.4]
    assert s.params["image_tower"] < t.params["image_tower"]  # branches and BNs folded away
    assert t.image_gmacs == {} and np.isnan(t.text_gmacs)  # parameters were all it needed
    assert e.model_training.image_gmacs[64] > e.model_inference.image_gmacs[64]
    # the demo model's own column, at its sizes and the card's
    assert not e.is_reference and e.table.extra_label.startswith("UniRepLKNet-Demo")
    assert set(e.model_inference.image_gmacs) == {64, 96, 224, 320, 384}
    rows = {r["key"]: r for r in e.table.rows}
    assert rows["image_tower_params"]["measured"] == pytest.approx(t.params["image_tower"] / 1e6)
    assert rows["image_tower_params"]["extra"] == pytest.approx(
        e.model_training.params["image_tower"] / 1e6)
    assert rows["image_gmacs_320"]["measured"] == pytest.approx(s.image_gmacs[320])
    assert rows["imagenet_zeroshot_top1"]["measured"] is None
    rec = e.model_results([64, 96])
    assert rec["gmacs"] == {"64": e.model_inference.image_gmacs[64],
                            "96": e.model_inference.image_gmacs[96]}
    assert rec["params"]["total"] == e.model_training.params["total"]
    assert rec["params"]["image_tower_with_in1k_head"] == (
        e.model_training.params["image_tower"] + 192 * 1000 + 1000)
    with pytest.raises(KeyError, match="128"):
        e.model_results([128])
    text = ms.format_stats(e.model_training, e.model_inference, [64])
    assert "image encoder GMACs at 64 px" in text and "whole CLIP" in text


def test_card_errata_of_the_reference_architecture_has_no_extra_column():
    e = ms.card_errata("CLIP-UniRepLKNet-L-320", [320], zeroshot_top1=0.76)
    assert e.is_reference and e.table.extra_label is None
    assert e.table.rows[-1]["measured"] == pytest.approx(76.0)


def test_checkpoint_results(tmp_path):
    import hashlib

    from unirepclip.training.demo import save_checkpoint
    path = tmp_path / "demo.safetensors"
    save_checkpoint(unirepclip.create_model("UniRepLKNet-Demo"), path)
    report = unirepclip.inspect_checkpoint(path, model="UniRepLKNet-Demo")
    r = ms.checkpoint_results(report, "UniRepLKNet-Demo")
    assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r["layout"] == "open_clip" and r["form"] == "training"
    assert r["matches_model"] is True and r["file_size"] == path.stat().st_size
    other = unirepclip.inspect_checkpoint(path, model="UniRepLKNet-Demo-SmallKernel")
    assert ms.checkpoint_results(other, "UniRepLKNet-Demo-SmallKernel")["matches_model"] is False
    rnd = ms.checkpoint_results(None)
    assert rnd["sha256"] is None and rnd["layout"] == "random-init"


def test_classifier_head_parameters():
    assert ms.classifier_head_parameters(1536, 1000) == 1536 * 1000 + 1000
    with pytest.raises(ValueError, match="num_classes"):
        ms.classifier_head_parameters(10, 0)


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
    assert ms.image_macs(_ConvEncoder(), 32) == expected
    assert ms.image_macs(_ConvEncoder().to("meta"), 32) == expected
    with pytest.raises(ValueError, match="image_size"):
        ms.image_macs(_ConvEncoder(), 16)


def test_demo_macs_same_on_meta_and_real_model_and_scale_with_pixels():
    real = unirepclip.create_model("UniRepLKNet-Demo")
    meta = ms.meta_clip("UniRepLKNet-Demo")
    assert next(meta.parameters()).is_meta
    assert ms.image_macs(meta, 64) == ms.image_macs(real, 64)
    # 4x the pixels is 4x the MACs, bar what acts on pooled vectors: the projection (192 -> 64)
    # and each block's squeeze-excitation (d -> d/4 -> d: d^2/2), depths 1,1,2,1, dims 24..192
    pooled = 192 * 64 + sum(n * d * d // 2 for n, d in ((1, 24), (1, 48), (2, 96), (1, 192)))
    assert ms.image_macs(meta, 128) - pooled == 4 * (ms.image_macs(meta, 64) - pooled)


def test_text_macs_hand_computed_for_the_demo_text_tower():
    # width 64, 2 layers, context 32: per token and layer 3w^2 (qkv) + w^2 (out) + 8w^2 (MLP);
    # attention scores and weighted values 2 n^2 w per layer; the projection of the pooled token.
    w, n, layers = 64, 32, 2
    expected = 12 * w * w * n * layers + 2 * n * n * w * layers + w * 64
    assert ms.text_macs(ms.meta_clip("UniRepLKNet-Demo")) == expected


# --- agreement and speed ---------------------------------------------------------------------
def test_max_relative_difference_and_agreement():
    assert ms.max_relative_difference([1.0, -2.0], [1.1, -2.0]) == pytest.approx(0.05)
    assert ms.max_relative_difference(torch.ones(3), torch.ones(3)) == 0.0
    with pytest.raises(ValueError, match="all zeros"):
        ms.max_relative_difference([0.0], [1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        ms.max_relative_difference([1.0, 2.0], [1.0])
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 1.0], [0.0, 3.0]])  # row 0 orthogonal, row 1 parallel
    agree = ms.embedding_agreement(a, b)
    assert agree["min_cosine"] == pytest.approx(0.0)
    assert agree["max_rel_diff"] == pytest.approx(1.0 / 2.0)
    with pytest.raises(ValueError, match="NaN"):
        ms.embedding_agreement(a, np.full((2, 2), np.nan))


def test_images_per_second_of_a_known_delay():
    def slow(x):
        time.sleep(0.05)
    ips = ms.images_per_second(slow, torch.zeros(10, 3), repeats=3, warmup=0)
    assert 100 <= ips <= 10 / 0.05 + 1e-9  # at least the sleep, and not much more
    with pytest.raises(ValueError, match="repeats"):
        ms.images_per_second(slow, torch.zeros(2), repeats=0)


def _randomize_norms(model):
    """Non-trivial BN statistics, GRN and layer scales, so that re-parameterization has work."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in list(model.visual.named_parameters()) + list(model.visual.named_buffers()):
            if t.is_floating_point() and ("norm" in name or "bn" in name or "gamma" in name
                                          or "beta" in name or "running" in name):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + (0.5 if "var" in name else 0.0))
    return model


def test_encoder_forms_agree_and_leave_the_training_model_alone():
    model = _randomize_norms(unirepclip.create_model("UniRepLKNet-Demo"))
    n_before = sum(p.numel() for p in model.parameters())
    forms = ms.encoder_forms(model, channels_last=True)
    assert list(forms) == ["training", "inference", "inference, channels-last"]
    assert not is_inference_form(forms["training"]) and is_inference_form(forms["inference"])
    assert sum(p.numel() for p in model.parameters()) == n_before
    stem = forms["inference, channels-last"].visual.trunk.downsample_layers[0][0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    x = torch.randn(2, 3, 32, 32)
    out = ms.compare_forms(forms, x, repeats=1, warmup=0)
    assert out["training"]["max_rel_diff"] == 0.0
    for label in ("inference", "inference, channels-last"):
        assert out[label]["max_rel_diff"] <= 1e-5 and out[label]["min_cosine"] > 0.99999
        assert out[label]["images_per_s"] > 0
    # a change that is not a re-parameterization shows
    with torch.no_grad():
        forms["inference"].visual.trunk.head.bias.add_(0.1)
    assert ms.compare_forms(forms, x, repeats=1, warmup=0)["inference"]["max_rel_diff"] > 1e-3
    with pytest.raises(ValueError, match="already in the inference form"):
        ms.encoder_forms(forms["inference"])


def test_compare_forms_under_autocast_reports_both_agreements():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    forms = {"training": model}
    out = ms.compare_forms(forms, torch.randn(1, 3, 32, 32), repeats=1, warmup=0,
                           autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    row = out["training"]
    assert row["max_rel_diff"] == 0.0
    assert 0 < row["autocast_max_rel_diff"] < 0.2  # bf16 keeps ~3 significant digits
    assert row["autocast_min_cosine"] > 0.99


# --- the errata table ------------------------------------------------------------------------
def _stats(image_tower=218.5e6, text=354.0e6, gmacs=None):
    gm = gmacs or {224: 35.9, 320: 73.2, 384: 105.4}
    params = {"image_tower": int(image_tower), "image_projection": 1_573_888,
              "text_tower": int(text), "logit_scale": 1}
    params["image"] = params["image_tower"] + params["image_projection"]
    params["total"] = params["image"] + params["text_tower"] + 1
    return ms.ModelStats("L", "training", params, 1536, gm, 23.5)


def test_card_measurements_units_and_sums():
    m = ms.card_measurements(_stats(), zeroshot_top1=0.757)
    assert m["image_tower_params"] == pytest.approx(218.5)
    assert m["image_tower_params_in1k_head"] == pytest.approx(218.5 + 1.537)
    assert m["total_gmacs_224"] == pytest.approx(35.9 + 23.5)
    assert m["imagenet_zeroshot_top1"] == pytest.approx(75.7)
    assert ms.card_measurements(_stats(), zeroshot_top1=None)["imagenet_zeroshot_top1"] is None
    assert ms.card_measurements(_stats(gmacs={64: 0.1}))["image_gmacs_224"] is None
    with pytest.raises(ValueError, match="fraction"):
        ms.card_measurements(_stats(), zeroshot_top1=75.7)


def test_errata_table_verdicts_and_rendering():
    measured = ms.card_measurements(_stats(), zeroshot_top1=0.757)
    table = ms.errata_table(measured, {"image_tower_params": 0.8}, extra_label="demo <b>")
    rows = {r["key"]: r for r in table.rows}
    assert len(table.rows) == len(ms.MODEL_CARD_CLAIMS)
    assert rows["image_tower_params"]["verdict"] == "card is 3.9x the measured value"
    assert rows["image_tower_params"]["ratio"] == pytest.approx(847 / 218.5)
    assert rows["text_tower_params"]["verdict"] == "not stated on the card"
    assert rows["imagenet_zeroshot_top1"]["verdict"] == "does not hold"  # 75.7 is not > 79
    assert ms.errata_table({"imagenet_zeroshot_top1": 80.0}).rows[-1]["verdict"] == "holds"
    assert ms.errata_table({"total_params": 1190.0}).rows[3]["verdict"] == "agrees"
    md = table.to_markdown().splitlines()
    assert len(md) == 2 + len(ms.MODEL_CARD_CLAIMS)
    assert md[0].count("|") == md[2].count("|") == 8  # 7 columns with the extra one
    assert "| 847M params | 218.5M | 218.5M | 0.8M |" in md[2]
    html = table._repr_html_()
    assert "demo &lt;b&gt;" in html and "<b>" not in html
    assert "&gt; 79%" in html
    assert table.to_results()["image_tower_params"]["extra"] == 0.8
    assert "image tower parameters (no head)" in str(table)
    with pytest.raises(KeyError, match="image_params"):
        ms.errata_table({"image_params": 1.0})


def test_form_results_keys():
    cmp = {"training": {"max_rel_diff": 0.0, "min_cosine": 1.0, "images_per_s": 10.0,
                        "autocast_max_rel_diff": 0.01, "autocast_min_cosine": 0.999},
           "inference": {"max_rel_diff": 2e-7, "min_cosine": 1.0, "images_per_s": 20.0,
                         "autocast_max_rel_diff": 0.01, "autocast_min_cosine": 0.998},
           "inference, channels-last": {"max_rel_diff": 3e-7, "min_cosine": 1.0,
                                        "images_per_s": 30.0, "autocast_max_rel_diff": 0.02,
                                        "autocast_min_cosine": 0.997}}
    r = ms.form_results(cmp)
    assert r["images_per_s"] == {"training": 10.0, "inference": 20.0,
                                 "inference_channels_last": 30.0}
    assert r["reparam_max_rel_diff"] == 2e-7 and r["channels_last_max_rel_diff"] == 3e-7
    assert r["fastpath_min_cosine"] == 0.997 and r["fastpath_max_rel_diff"] == 0.02
    assert "fastpath_min_cosine" not in ms.form_results({"training": {"images_per_s": 1.0,
                                                                       "max_rel_diff": 0.0}})
