"""A dry run of the `imagenet-l` profile on the CPU: the real model's code paths, end to end.

A random full-size CLIP-UniRepLKNet-L (574M parameters, a 2.3 GB ``.pt`` in open_clip's layout,
as the released file is) is written by the test, with small ImageNet-style folders of generated
JPEGs: ``val/<wnid>/*.JPEG`` with a class-name file, a captions CSV, and train/val/test splits for
the probe. All five notebooks then run on the profile as shipped, with only sizes and counts
shrunk, and on the CPU in fp32 (there is no GPU here; bf16 autocast on this CPU is a different
kernel path that tells nothing about CUDA and is far slower).

Slow: 13 to 19 minutes on this 2-core machine (01: 5.5 min, 04: 5.3 min, 03: 3.4 min, 05: 2.5 min,
02: 1.8 min, measured beside another test run). ``make test-all`` runs it.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unirepclip.analysis.attribution import BASELINES
from unirepclip.cli import main
from unirepclip.data import SyntheticWorld
from unirepclip.models.factory import build_model, get_model_config

REPO = Path(__file__).resolve().parents[1]

NOTEBOOK_SECTIONS = {"01_checkpoint": ["checkpoint", "model", "errata"],
                     "02_zeroshot": ["zeroshot", "retrieval"], "03_erf": ["erf"],
                     "04_attribution": ["attribution"], "05_linear_probe": ["probe"]}
METHODS = ["integrated_gradients", "smoothgrad", "saliency", "gradcam", "occlusion"]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
NAMES = ["tench", "goldfish", "great white shark", "tiger shark"]


def _write_split(root, images, per_class):
    paths = []
    for c, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            p = root / wnid / f"ILSVRC2012_val_{c * per_class + j:08d}.JPEG"
            Image.fromarray(images[c * per_class + j]).resize((256, 256)).save(p, quality=90)
            paths.append(p)
    return paths


@pytest.mark.slow
def test_imagenet_l_profile_runs_every_notebook_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "clip_unireplknet_l_random.pt"
    torch.save(build_model(get_model_config("CLIP-UniRepLKNet-L")).state_dict(), ckpt)
    assert ckpt.stat().st_size > 2e9

    images = SyntheticWorld(image_size=128, seed=3).render("test", 32).images
    val = _write_split(tmp_path / "imagenet" / "val", images[:8], 2)
    probe = tmp_path / "probe"
    for i, split in enumerate(("train", "val", "test")):
        _write_split(probe / split, images[8 + 8 * i:16 + 8 * i], 2)
    names = tmp_path / "classnames.txt"
    names.write_text("\n".join(NAMES) + "\n")
    captions = tmp_path / "captions.csv"
    with open(captions, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "title"])
        for p in val:
            w.writerow([str(p), f"a photo of a {NAMES[WNIDS.index(p.parent.name)]}"])

    out = tmp_path / "reports"
    shrink = {
        "01_checkpoint": dict(n_samples=4, n_timing_images=2, timing_repeats=1),
        "02_zeroshot": dict(n_templates=2, n_sweep=8, n_mistakes=4),
        "03_erf": dict(n_erf_images=1, erf_batch_size=1, resolutions="[224]", n_reparam_images=1),
        "04_attribution": dict(n_attr_images=1, n_grid_images=1, n_check_images=1,
                               n_random_images=1, n_photos=1, attr_batch_size=1,
                               internal_batch_size=8, ig_steps=4, randomization_ig_steps=2,
                               nt_samples=2, occlusion_window=56, occlusion_stride=56),
        "05_linear_probe": dict(n_kshot_seeds=1, shots="[1]", data_dir=str(probe)),
    }
    args = ["run", "--profile", "imagenet-l", "--notebooks-dir", str(REPO / "notebooks"),
            "--output-dir", str(out), "--no-progress", "-q",
            "-p", f"checkpoint={ckpt}", "-p", f"data_dir={val[0].parent.parent}",
            "-p", f"classnames_file={names}", "-p", "device=cpu", "-p", "precision=fp32",
            "-p", "batch_size=8", "-p", "num_workers=0",
            "-p", f"02_zeroshot.captions_file={captions}"]
    for nb, values in shrink.items():
        for k, v in values.items():
            args += ["-p", f"{nb}.{k}={v}"]
    code = main(args)
    folder = out / "imagenet-l"
    manifest = json.loads((folder / "manifest.json").read_text())
    failed = [n["name"] for n in manifest["notebooks"] if n["status"] != "ok"]
    assert code == 0 and not failed, f"failed: {failed}; see {folder}"
    r = json.loads((folder / "results.json").read_text())
    # every notebook recorded its part
    for nb, sections in NOTEBOOK_SECTIONS.items():
        part = json.loads((folder / "results" / f"{nb}.json").read_text())
        assert set(sections) <= set(part) and set(sections) <= set(r), (nb, sorted(part))
    # 01: the file read as the released one is, and the real architecture's size and cost
    assert (r["checkpoint"]["layout"], r["checkpoint"]["form"]) == ("open_clip", "training")
    assert r["checkpoint"]["matches_model"] is True
    assert r["model"]["key"] == "clip_unireplknet_l"
    assert round(r["model"]["params"]["image_tower"] / 1e6, 1) == 218.5
    assert r["model"]["gmacs"]["224"] == pytest.approx(35.9, abs=0.05)  # the paper's 35.9 G
    assert r["model"]["gmacs"]["320"] == pytest.approx(73.2, abs=0.05)
    assert r["model"]["reparam_max_rel_diff"] < 1e-3  # the inference form is the same function
    me = r["efficiency"]["points"]["CLIP-UniRepLKNet-L"]   # the model's measured speed, drawn
    assert me["images_per_s"] > 0 and me["gmacs"] == pytest.approx(r["model"]["gmacs"]["320"])
    assert r["efficiency"]["throughput"] == "measured"
    errata = r["errata"]
    assert errata["image_gmacs_224"]["measured"] == pytest.approx(r["model"]["gmacs"]["224"])
    assert errata["image_tower_params"]["measured"] == pytest.approx(
        r["model"]["params"]["image_tower"] / 1e6)
    for claim, row in errata.items():  # the measured column is the reference architecture's
        if row["reference"] is not None and claim != "imagenet_zeroshot_top1":
            assert row["measured"] == pytest.approx(row["reference"], rel=2e-3), claim
    # 02: on the images given
    assert r["zeroshot"]["n_images"] == 8 and r["retrieval"]["n_images"] == 8
    # 03: finite ERF figures that nest (a higher share needs a square at least as big)
    erf = r["erf"]["clip_unireplknet_l"]
    stages = sorted(k for k in erf if k.startswith("stage"))
    assert stages == ["stage0", "stage1", "stage2", "stage3"], sorted(erf)
    for stage in stages:
        for kind in ("area_ratio", "side"):
            values = [erf[stage][kind][t] for t in ("t20", "t30", "t50", "t99")]
            assert all(v is not None and np.isfinite(v) and v > 0 for v in values), (stage, values)
            assert values == sorted(values), (stage, kind, values)
    assert erf["reparam_max_rel_diff"] < 1e-3
    # 04: every method, and IG's completeness for every baseline
    assert set(r["attribution"]) == set(METHODS)
    assert set(r["attribution"]["integrated_gradients"]["completeness_error"]) == set(BASELINES)
    # 05: the probe on the given splits, with its baselines
    probe = r["probe"]["imagenet"]
    assert (probe["n_train"], probe["n_val"], probe["n_test"]) == (8, 8, 8)
    assert {"random_tower_acc1", "pixel_baseline_acc1", "kshot"} <= set(probe)


def test_shape_bias_profile_is_checked_by_a_dry_run(tmp_path, capsys):
    """The `shape-bias` profile (notebook 07 on the real L): its placeholders stop a run before
    any work, each named; with a checkpoint file and a cue-conflict folder given, the dry run
    passes and shows the values notebook 07 would run with."""
    args = ["run", "--profile", "shape-bias", "--only", "07", "--dry-run",
            "--notebooks-dir", str(REPO / "notebooks")]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "'checkpoint' is still the placeholder" in err
    assert "'cue_conflict_dir' is still the placeholder" in err
    ckpt, folder = tmp_path / "l.pt", tmp_path / "cue-conflict"
    ckpt.write_bytes(b"")
    (folder / "bird").mkdir(parents=True)
    assert main(args + ["-p", f"checkpoint={ckpt}", "-p", f"cue_conflict_dir={folder}"]) == 0
    out = capsys.readouterr().out
    nb = json.loads(out[out.index("{"):])["07_shape_bias"]
    assert nb["model_name"] == "CLIP-UniRepLKNet-L" and nb["decision_rules"] == [
        "zero_shot_16", "toolbox"]
    assert nb["surgery_image_size"] == 224 and nb["cue_conflict_dir"] == str(folder)
    # a folder that is not there is refused by the dry run, naming the parameter
    assert main(args + ["-p", f"checkpoint={ckpt}", "-p", f"cue_conflict_dir={tmp_path / 'no'}"]) != 0
    assert "cue_conflict_dir" in capsys.readouterr().err


def test_peers_profile_is_checked_by_a_dry_run(tmp_path, capsys):
    """The `peers` profile (issue 23): CLIP-UniRepLKNet-L and the six peers by open_clip name
    and pretrained tag through notebooks 01-05. The L's placeholder checkpoint stops the dry run,
    named; with it (and the data) given, every setting resolves with its own model and tag, and
    the comparison's published column is the shipped open_clip rows, read here from the CSV
    itself (a failed task would be null), never a typed figure."""
    from unirepclip.data import published
    from unirepclip.workbook.params import load_profile
    from unirepclip.workbook.sweep.spec import build_spec

    shipped = REPO / "lib" / "unirepclip" / "workbook" / "profiles" / "peers.yaml"
    args = ["--dry-run", "--notebooks-dir", str(REPO / "notebooks")]
    assert main(["run", "--profile", "peers"] + args) != 0
    assert "'checkpoint' is still the placeholder" in capsys.readouterr().err
    ckpt, val, probe, caps = (tmp_path / "l.pt", tmp_path / "val", tmp_path / "probe",
                              tmp_path / "captions.csv")
    ckpt.write_bytes(b"")
    caps.write_text("filepath,title\n")
    (val / "n01440764").mkdir(parents=True)
    probe.mkdir()
    text = shipped.read_text().replace("/path/to/UniRepLKNet-L-b75k_s10B_CLIP-in1k_75.72.pt",
                                       str(ckpt))
    profile = tmp_path / "peers.yaml"
    profile.write_text(text)
    assert main(["run", "--profile", str(profile)] + args + [
        "-p", f"data_dir={val}", "-p", f"02_zeroshot.captions_file={caps}",
        "-p", f"05_linear_probe.data_dir={probe}"]) == 0
    out = capsys.readouterr().out
    plan = json.loads(out[out.index("{"):])
    runs = {(s["values"]["model_name"], s["values"]["checkpoint"]) for s in plan.values()}
    assert runs == {("CLIP-UniRepLKNet-L", str(ckpt))} | set(published.PEERS)
    assert all(set(s["parameters"]) == set(NOTEBOOK_SECTIONS) for s in plan.values())
    spec = build_spec(load_profile(profile))
    with open(published.RESULTS_FILE, newline="") as f:
        top1 = {(r["name"], r["pretrained"]): float(r["ImageNet 1k"]) * 100
                for r in csv.DictReader(f)}
    cases = {s.name: s.values for s in spec.settings}
    for row in spec.reference["rows"]:
        (name,) = row["match"].values()
        key = (cases[name]["model_name"], cases[name].get("checkpoint"))
        want = 75.7 if key[0] == "CLIP-UniRepLKNet-L" else top1[key]   # the card's, no row
        assert row["value"] == pytest.approx(want) and row["key"] == "zeroshot.acc1", name
        assert key[0] == "CLIP-UniRepLKNet-L" or f"{key[0]} {key[1]}" in row["source"]
    assert len(spec.reference["rows"]) == len(published.PEERS) + 1
    # a published row that is not shipped is one line naming the row and the file
    bad = {"sweep": {"cases": [{"name": "x", "model_name": "ViT-H-14"}],
                     "reference": {"unit": "%", "rows": [{
                         "match": {"name": "x"}, "key": "zeroshot.acc1",
                         "published": {"model": "ViT-H-14", "pretrained": "nope"}}]}}}
    with pytest.raises(Exception, match=r"rows\[0\]\.published: .*openclip_results\.csv"):
        build_spec(bad)
