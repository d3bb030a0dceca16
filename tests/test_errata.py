"""unirepclip.analysis.errata: the model card's claims beside the measured figures (full-size
counts on meta-device builds against REFERENCE.md), the verdicts and the rendered table."""
import numpy as np
import pytest

from unirepclip.analysis import errata
from unirepclip.analysis.cost import ModelStats
from unirepclip.viz.cost import format_stats


def test_card_errata_full_size_counts_match_reference_and_demo_column():
    """REFERENCE.md: tower 218.5M without a head (220.1M with a 1000-class head), text 354.0M,
    whole about 574M; 35.9 / 73.2 / 105.4 GMACs at 224 / 320 / 384 px (inference form)."""
    e = errata.card_errata("UniRepLKNet-Demo", [64, 96])
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
    text = format_stats(e.model_training, e.model_inference, [64])
    assert "image encoder GMACs at 64 px" in text and "whole CLIP" in text


def test_card_errata_of_the_reference_architecture_has_no_extra_column():
    e = errata.card_errata("CLIP-UniRepLKNet-L-320", [320], zeroshot_top1=0.76)
    assert e.is_reference and e.table.extra_label is None
    assert e.table.rows[-1]["measured"] == pytest.approx(76.0)




# --- the errata table ------------------------------------------------------------------------
def _stats(image_tower=218.5e6, text=354.0e6, gmacs=None):
    gm = gmacs or {224: 35.9, 320: 73.2, 384: 105.4}
    params = {"image_tower": int(image_tower), "image_projection": 1_573_888,
              "text_tower": int(text), "logit_scale": 1}
    params["image"] = params["image_tower"] + params["image_projection"]
    params["total"] = params["image"] + params["text_tower"] + 1
    return ModelStats("L", "training", params, 1536, gm, 23.5)


def test_card_measurements_units_and_sums():
    m = errata.card_measurements(_stats(), zeroshot_top1=0.757)
    assert m["image_tower_params"] == pytest.approx(218.5)
    assert m["image_tower_params_in1k_head"] == pytest.approx(218.5 + 1.537)
    assert m["total_gmacs_224"] == pytest.approx(35.9 + 23.5)
    assert m["imagenet_zeroshot_top1"] == pytest.approx(75.7)
    assert errata.card_measurements(_stats(), zeroshot_top1=None)["imagenet_zeroshot_top1"] is None
    assert errata.card_measurements(_stats(gmacs={64: 0.1}))["image_gmacs_224"] is None
    with pytest.raises(ValueError, match="fraction"):
        errata.card_measurements(_stats(), zeroshot_top1=75.7)


def test_errata_table_verdicts_and_rendering():
    measured = errata.card_measurements(_stats(), zeroshot_top1=0.757)
    table = errata.errata_table(measured, {"image_tower_params": 0.8}, extra_label="demo <b>")
    rows = {r["key"]: r for r in table.rows}
    assert len(table.rows) == len(errata.MODEL_CARD_CLAIMS)
    assert rows["image_tower_params"]["verdict"] == "card is 3.9x the measured value"
    assert rows["image_tower_params"]["ratio"] == pytest.approx(847 / 218.5)
    assert rows["text_tower_params"]["verdict"] == "not stated on the card"
    assert rows["imagenet_zeroshot_top1"]["verdict"] == "does not hold"  # 75.7 is not > 79
    assert errata.errata_table({"imagenet_zeroshot_top1": 80.0}).rows[-1]["verdict"] == "holds"
    assert errata.errata_table({"total_params": 1190.0}).rows[3]["verdict"] == "agrees"
    md = table.to_markdown().splitlines()
    assert len(md) == 2 + len(errata.MODEL_CARD_CLAIMS)
    assert md[0].count("|") == md[2].count("|") == 8  # 7 columns with the extra one
    assert "| 847M params | 218.5M | 218.5M | 0.8M |" in md[2]
    html = table._repr_html_()
    assert "demo &lt;b&gt;" in html and "<b>" not in html
    assert "&gt; 79%" in html
    assert table.to_results()["image_tower_params"]["extra"] == 0.8
    assert "image tower parameters (no head)" in str(table)
    with pytest.raises(KeyError, match="image_params"):
        errata.errata_table({"image_params": 1.0})


