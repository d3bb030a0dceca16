"""Issue 23's acceptance: notebooks 01 and 03 on a random open_clip ViT-B-32 saved to a file, run
through the real runner on the ``ci`` profile (``-p model_name=ViT-B-32 -p checkpoint=FILE``).

The ViT is the real ViT-B-32 (not a tiny config): the figures it records are then checked against
open_clip's own published profile of that model (``unirepclip.data.published``: 8.82 image GFLOPs
= 4.41 GMACs, 151.28M parameters), an independent truth a tiny config would not have. It is saved
with ``torch.save(state_dict)`` (the safetensors file is exercised in test_openclip_models.py).
About 75 s on 2 busy cores (notebook 01 builds and costs the model and CLIP-UniRepLKNet-L on meta,
notebook 03 takes the ERF of 4 blocks at 224 px): slow-marked.
"""
from __future__ import annotations

import pytest
import torch

from helpers import run_ci_notebooks
from unirepclip.data import published

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vit_report(tmp_path_factory):
    import open_clip

    torch.manual_seed(23)
    model = open_clip.create_model("ViT-B-32")
    path = tmp_path_factory.mktemp("vitb32") / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    del model
    return run_ci_notebooks(tmp_path_factory.mktemp("reports"), ["01", "03"],
                            model_name="ViT-B-32", checkpoint=path, model_key="vit")


def test_both_notebooks_run(vit_report):
    code, folder, _ = vit_report
    assert code == 0, (folder / "index.html").read_text()[-2000:]


def test_notebook_01_costs_the_vit_at_its_own_size_and_says_so_for_the_profiles_sizes(vit_report):
    _, _, r = vit_report
    prof = published.model_profile("ViT-B-32")
    m = r["model"]
    assert r["checkpoint"]["layout"] == "open_clip"
    assert list(m["gmacs"]) == ["224"] and list(m["gmacs_training_form"]) == ["224"]
    assert m["gmacs"]["224"] == pytest.approx(prof.image_gmacs, abs=0.006)
    assert m["text_gmacs"] == pytest.approx(prof.text_gmacs, abs=0.006)
    assert m["params"]["total"] / 1e6 == pytest.approx(prof.params_m, abs=0.006)
    notes = m["gmacs_not_measured"]   # the ci profile's mac_resolutions: 64 and 96 px
    assert sorted(notes) == ["64", "96"]
    assert all(n.startswith(f"ViT-B-32: not measured at {s}x{s} px") and "224x224 px only" in n
               for s, n in notes.items())
    assert "reparam_max_rel_diff" not in m   # one form: nothing to compare
    rows = r["errata"]   # the card's errata table: the ViT's own column
    assert rows["image_gmacs_224"]["extra"] == pytest.approx(prof.image_gmacs, abs=0.006)
    assert rows["image_gmacs_320"]["extra"] is None


def test_notebook_03_takes_the_erf_of_the_centre_patch_token_at_four_blocks(vit_report):
    _, folder, r = vit_report
    e = r["erf"]["vit"]
    assert e["resolution"] == 224 and e["n_images"] == 8
    blocks = ["block2", "block5", "block8", "block11"]   # the last of each quarter of 12
    assert [k for k in e if k.startswith("block")] == blocks
    assert not any(k.startswith("stage") for k in e)
    for b in blocks:
        ratios = e[b]["area_ratio"]
        assert 0 < ratios["t20"] <= ratios["t30"] <= ratios["t50"] <= ratios["t99"] <= 1
        assert e[b]["side"]["t99"] <= 224
    size, depth = e["notes"]
    assert "runs at 224x224 px only" in size and "not at [64] px" in size
    assert "12 blocks and no stages" in depth and "(3, 3) of its 7x7 patch grid" in depth
    assert "no re-parameterized form" in e["reparam_skipped"]
    assert "UniRepLKNet configs" in e["comparison_skipped"]
    # no control, no init towers; the demo ViT beside it as the peer (notebook 03's default)
    assert "reparam_max_rel_diff" not in e and set(r["erf"]) == {"vit", "demo_vit"}
    assert r["erf"]["demo_vit"]["state"] == "trained"
    figures = {p.stem for p in (folder / "figures").glob("*.png")}
    assert {"03_erf_heatmaps", "03_erf_square_shares"} <= figures
    assert "03_erf_control" not in figures
