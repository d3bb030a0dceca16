"""Issue 23's acceptance for the demo ViT: notebooks 04 (attribution) and 06 (explorer) on
``ViT-Demo`` (open_clip's VisionTransformer, patch 8 at 64 px: an 8 x 8 patch grid, 6 blocks),
run through the real runner on the ``ci`` profile with its shipped weights (``-p
model_name=ViT-Demo -p checkpoint=demo -p model_key=demo_vit``).

What is checked is what a ViT must change, from the model's config (independent of the code under
test): blocks for stages everywhere (Grad-CAM's scores, the randomization cascade, the ERF panel),
the last block left out of Grad-CAM with its one line naming the tower and the method (the tower
pools its class token; test_towers.py proves by autograd that the gradient there is zero), the
deploy switch said to do nothing, and every figure recorded. About 70 s on 2 busy cores:
slow-marked.
"""
from __future__ import annotations

import nbformat
import pytest

from helpers import run_ci_notebooks

pytestmark = pytest.mark.slow

BLOCKS = 6   # ViT-Demo.json: vision_cfg.layers
GRID = 64 // 8   # image_size / patch_size


@pytest.fixture(scope="module")
def vit_demo_report(tmp_path_factory):
    return run_ci_notebooks(tmp_path_factory.mktemp("reports"), ["04", "06"],
                            model_name="ViT-Demo", checkpoint="demo", model_key="demo_vit")


def _printed(folder, name):
    """Everything the executed notebook printed (stream outputs), one string."""
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def test_both_notebooks_run(vit_demo_report):
    code, folder, _ = vit_demo_report
    assert code == 0, (folder / "index.html").read_text()[-2000:]


def test_every_figure_is_recorded(vit_demo_report):
    _, folder, _ = vit_demo_report
    figures = {p.stem for p in (folder / "figures").glob("*.png")}
    assert {"04_attribution_grid", "04_attribution_contrastive", "04_attribution_randomization",
            "04_attribution_photos"} <= figures
    assert {f"06_explore_{p}" for p in ("zeroshot", "search", "explain", "map", "erf")} <= figures


def test_notebook_04_scores_blocks_and_names_the_block_grad_cam_cannot_read(vit_demo_report):
    _, folder, r = vit_demo_report
    g = r["attribution"]["gradcam"]
    assert list(g["stage_scores"]) == [f"block{i}" for i in range(BLOCKS - 1)]
    last = f"block{BLOCKS - 1}"
    (line,) = g["not_applicable"].values()
    assert list(g["not_applicable"]) == [last]
    assert line.startswith("open_clip VisionTransformer tower")
    assert f"Grad-CAM on block {BLOCKS - 1} does not apply" in line and "class token" in line
    assert "\n" not in line
    scores = {k: v for k, v in g["stage_scores"].items() if v is not None}
    assert g["stage"] in range(BLOCKS - 1)
    assert g["stage_scores"][f"block{g['stage']}"] == max(scores.values())   # "auto": the best
    printed = _printed(folder, "04_attribution")
    assert f"ViT-Demo: {line}" in printed and f"best block here: {g['stage']}" in printed
    assert "Traceback" not in printed
    steps = ["head"] + [f"block{i}" for i in reversed(range(BLOCKS))] + ["stem"]
    for method, m in r["attribution"].items():
        assert list(m["randomization_curve"]) == steps, method
        assert 0 <= m["chance"] <= 1 and 0 <= m["pointing_game"] <= 1


def test_notebook_06_answers_every_panel_on_the_vit(vit_demo_report):
    _, folder, r = vit_demo_report
    e = r["explore"]
    assert e["n_images"] == 64   # the ci profile's gallery
    assert e["erf"]["resolution"] == 64 and e["erf"]["stage"] == 3 and "note" not in e["erf"]
    ratios = [e["erf"]["area_ratio"][t] for t in ("t20", "t30", "t50", "t99")]
    assert 0 < ratios[0] <= ratios[1] <= ratios[2] <= ratios[3] <= 1
    assert e["zeroshot"]["n_classes"] == 8 and 0 <= e["zeroshot"]["acc1"] <= 1
    assert 1 <= e["search"]["own_image_rank"] <= 64
    assert e["explain"]["method"] == "integrated_gradients"
    assert len(e["embedding_map"]["explained_variance_ratio"]) == 2
    printed = _printed(folder, "06_explore")
    assert "ERF of block 3 at 64 px" in printed
    assert ("deploy: ViT-Demo's open_clip VisionTransformer tower has no re-parameterized form"
            in printed)
    assert f"embeddings ({e['n_images']}, 64)" in printed   # ViT-Demo.json: embed_dim 64
