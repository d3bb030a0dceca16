"""The real notebooks, run end to end by the runner on the `ci` profile (the shipped demo CLIP,
sizes and counts shrunk): every notebook succeeds, results.json follows the documented schema,
the numbers are those of a trained model (far from chance, above its own random-weight
baselines), and every figure exists in the three formats a paper needs."""
import json
import math
from pathlib import Path

import pytest

from unirepclip.training import demo

NOTEBOOKS = ["01_checkpoint", "02_zeroshot", "03_erf", "04_attribution", "05_linear_probe"]


def _get(d, dotted):
    for part in dotted.split("."):
        assert isinstance(d, dict) and part in d, f"results.json lacks {dotted!r} (at {part!r})"
        d = d[part]
    return d


@pytest.fixture(scope="module")
def run(ci_reports):
    code, folder = ci_reports
    manifest = json.loads((folder / "manifest.json").read_text())
    failed = [n["name"] for n in manifest["notebooks"] if n["status"] != "ok"]
    assert code == 0 and not failed, f"notebooks failed on the ci profile: {failed} (see {folder})"
    return folder, manifest, json.loads((folder / "results.json").read_text())


def test_every_notebook_ran_and_rendered(run):
    folder, manifest, _ = run
    assert [n["name"] for n in manifest["notebooks"]] == NOTEBOOKS
    for name in NOTEBOOKS:
        assert (folder / f"{name}.ipynb").is_file() and (folder / f"{name}.html").is_file()
    assert manifest["profile"]["name"] == "ci"
    assert manifest["checkpoint"]  # the manifest names the weights the run used


RATES = [
    "zeroshot.acc1", "zeroshot.acc5", "zeroshot.mean_per_class_recall",
    "zeroshot.tasks.shape.acc1", "zeroshot.tasks.shape.acc5",
    "zeroshot.tasks.shape.mean_per_class_recall",
    "zeroshot.tasks.colour.acc1", "zeroshot.tasks.colour.acc5",
    "zeroshot.tasks.colour.mean_per_class_recall",
    "retrieval.image_to_text.r1", "retrieval.image_to_text.r5", "retrieval.image_to_text.r10",
    "retrieval.text_to_image.r1", "retrieval.text_to_image.r5", "retrieval.text_to_image.r10",
    "erf.demo.stage3.area_ratio.t20", "erf.demo.stage3.area_ratio.t99",
    "erf.demo_small_kernel.stage3.area_ratio.t20",
    "attribution.integrated_gradients.mass_in_mask", "attribution.integrated_gradients.pointing_game",
    "attribution.gradcam.mass_in_mask", "attribution.occlusion.mass_in_mask",
    "attribution.integrated_gradients.chance",
    "probe.synthetic.acc1", "probe.synthetic.knn_acc1", "probe.synthetic.random_tower_acc1",
    "probe.synthetic.pixel_baseline_acc1", "probe.digits.acc1",
]


def test_results_follow_the_documented_schema(run):
    _, _, r = run
    for key in RATES:
        v = _get(r, key)
        assert isinstance(v, float) and 0.0 <= v <= 1.0, (key, v)
    for key in ["probe.synthetic.best_C", "attribution.integrated_gradients.randomization_rank_corr"]:
        assert math.isfinite(_get(r, key)), key
    assert _get(r, "probe.synthetic.kshot")  # one entry per k
    for k, entry in _get(r, "probe.synthetic.kshot").items():
        assert 0.0 <= entry["mean"] <= 1.0 and entry["std"] >= 0.0, k
    assert _get(r, "checkpoint.layout") == "open_clip"
    assert _get(r, "checkpoint.sha256") == demo.demo_metadata()["sha256"]
    # The main task is shape: the top-level figures are its figures.
    for m in ("acc1", "acc5", "mean_per_class_recall"):
        assert _get(r, f"zeroshot.{m}") == _get(r, f"zeroshot.tasks.shape.{m}")
    for d in ("image_to_text", "text_to_image"):
        r1, r5, r10 = (_get(r, f"retrieval.{d}.r{k}") for k in (1, 5, 10))
        assert r1 <= r5 <= r10, d
    assert _get(r, "zeroshot.acc1") <= _get(r, "zeroshot.acc5")


def test_numbers_are_those_of_the_trained_model(run):
    _, _, r = run
    # 8 shapes and 6 colours: chance is 0.125 and 0.167
    assert _get(r, "zeroshot.tasks.shape.acc1") > 0.6
    assert _get(r, "zeroshot.tasks.colour.acc1") > 0.9
    # the trained tower beats its own architecture at random init and the raw pixels
    assert _get(r, "probe.synthetic.acc1") > _get(r, "probe.synthetic.random_tower_acc1") + 0.3
    assert _get(r, "probe.synthetic.acc1") > _get(r, "probe.synthetic.pixel_baseline_acc1") + 0.3
    # ... and the paired test on the same test images says it is no accident
    assert _get(r, "probe.synthetic.random_tower_paired_test.p_value") < 1e-6
    # IG puts most of its mass on the object; the mask covers a small share of the image
    assert _get(r, "attribution.integrated_gradients.mass_in_mask") > \
        2 * _get(r, "attribution.integrated_gradients.chance")
    # the ERF's squares nest: a higher share of the contribution needs a square at least as big,
    # and a deeper stage sees at least as far as a shallower one
    for model in ("demo", "demo_small_kernel"):
        for stage in range(4):
            ratios = [_get(r, f"erf.{model}.stage{stage}.area_ratio.t{t}") for t in (20, 30, 50, 99)]
            assert ratios == sorted(ratios), (model, stage, ratios)
        t99 = [_get(r, f"erf.{model}.stage{s}.area_ratio.t99") for s in range(4)]
        assert t99 == sorted(t99), (model, t99)


def test_every_figure_in_png_pdf_and_svg(run):
    folder, _, _ = run
    figures = folder / "figures"
    stems = {p.stem for p in figures.glob("*.png")}
    for name in NOTEBOOKS:
        assert any(s.startswith(name) for s in stems), f"{name} saved no figure"
    for stem in stems:
        for ext in ("pdf", "svg"):
            f = figures / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (figures / f"{sorted(stems)[0]}.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_rerun_with_the_same_seed_gives_the_same_numbers(run, tmp_path):
    import shutil

    from unirepclip.cli import main

    REPO = Path(__file__).resolve().parents[1]
    folder, _, first = run
    shutil.copytree(folder, tmp_path / "ci")
    code = main(["run", "--profile", "ci", "--only", "02", "--notebooks-dir", str(REPO / "notebooks"),
                 "--output-dir", str(tmp_path), "--no-progress", "-q"])
    assert code == 0
    again = json.loads((tmp_path / "ci" / "results.json").read_text())
    assert again["zeroshot"] == first["zeroshot"]
    assert again["retrieval"] == first["retrieval"]
    assert again["probe"] == first["probe"]  # kept from the first run (--only 02)
