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

from unirepclip.cli import main
from unirepclip.data import SyntheticWorld
from unirepclip.models.factory import build_model, get_model_config

REPO = Path(__file__).resolve().parents[1]

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
    assert r["checkpoint"]["layout"] == "open_clip"
    assert r["model"]["key"] == "clip_unireplknet_l"
    assert round(r["model"]["params"]["image_tower"] / 1e6, 1) == 218.5
    assert r["zeroshot"]["n_images"] == 8 and 0.0 <= r["zeroshot"]["acc1"] <= 1.0
    assert r["retrieval"]["n_images"] == 8
    assert set(r["erf"]["clip_unireplknet_l"]) >= {"stage0", "stage3"}
    assert "integrated_gradients" in r["attribution"]
    assert r["probe"]["imagenet"]["n_test"] == 8
    assert np.isfinite(r["probe"]["imagenet"]["acc1"])
