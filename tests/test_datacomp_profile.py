"""The `datacomp` profile (notebook 08 on the real model with the suite's data roots): its dry
run refuses the placeholders one line each and resolves once paths are given; and notebook 08,
run through the profile with only the model swapped for the demo on the CPU, evaluates a tiny
on-disk DataComp root and SugarCrepe root end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from unirepclip.cli import main

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("datacomp_root", "sugar_crepe_root", "winoground_root")


def test_dry_run_names_each_placeholder_then_resolves(tmp_path, capsys):
    code = main(["run", "--profile", "datacomp", "--only", "08", "--dry-run",
                 "--notebooks-dir", str(REPO / "notebooks")])
    err = capsys.readouterr().err
    assert code != 0
    for name in ("checkpoint",) + ROOTS:
        assert f"parameter '{name}' is still the placeholder" in err, name
    ckpt = tmp_path / "l.pt"
    ckpt.write_bytes(b"")
    overrides = ["-p", f"checkpoint={ckpt}"]
    for name in ROOTS:
        (tmp_path / name).mkdir()
        overrides += ["-p", f"08_compositional.{name}={tmp_path / name}"]
    code = main(["run", "--profile", "datacomp", "--only", "08", "--dry-run",
                 "--notebooks-dir", str(REPO / "notebooks")] + overrides)
    out = capsys.readouterr().out
    assert code == 0
    values = json.loads(out[out.index("{"):])["08_compositional"]
    assert values["model_name"] == "CLIP-UniRepLKNet-L" and values["device"] == "cuda"
    assert values["datacomp_root"] == str(tmp_path / "datacomp_root")
    assert values["control_model_name"] == ""


@pytest.mark.slow
def test_notebook_08_runs_the_suite_and_sugar_crepe_on_tiny_roots(tmp_path):
    from test_caption_selection import _sugar_crepe
    from test_suite import CLASSES, COLOURS, TEMPLATES, _png, write_wds

    root = tmp_path / "datacomp"
    labels = [0, 1, 2, 0, 1, 2]
    write_wds(root / "wds_vtab-pets_test",
              [{"png": _png(COLOURS[y]), "cls": str(y).encode()} for y in labels],
              classes=CLASSES, templates=TEMPLATES)
    sugar = _sugar_crepe(tmp_path / "sugar", "swap_att")
    demo = ["-p", "model_name=UniRepLKNet-Demo", "-p", "checkpoint=demo", "-p", "device=cpu",
            "-p", "precision=fp32", "-p", "num_threads=1", "-p", "batch_size=16",
            "-p", "08_compositional.n_binding_images=8",
            "-p", f"08_compositional.datacomp_root={root}",
            "-p", f"08_compositional.sugar_crepe_root={sugar}",
            "-p", "08_compositional.sugar_crepe_tasks=[swap_att]",
            "-p", "08_compositional.winoground_root=''"]
    code = main(["run", "--profile", "datacomp", "--only", "08", "--notebooks-dir",
                 str(REPO / "notebooks"), "--output-dir", str(tmp_path / "out"),
                 "--no-progress", "-q"] + demo)
    assert code == 0
    r = json.loads((tmp_path / "out" / "datacomp" / "results.json").read_text())["compositional"]
    suite = r["suite"]
    assert suite["n_tasks"] == 1 and suite["partial"] is True and len(suite["missing"]) == 37
    assert suite["tasks"]["vtab_pets"]["metric"] == "mean_per_class_recall"
    assert suite["tasks"]["vtab_pets"]["n"] == len(labels)
    assert suite["average"] == suite["tasks"]["vtab_pets"]["main"]
    assert suite["peers"] and all(p["n_both"] == 1 for p in suite["peers"].values())
    sc = r["sugar_crepe"]["swap_att"]
    n_items = len(json.loads((sugar / "swap_att.json").read_text()))
    assert sc["n"] == n_items and sc["image_acc"] == 1.0 and sc["acc"] == sc["text_acc"]
    assert "no root given" in r["winoground"]["skipped"]
    # the profile names the L's key; run on the demo it follows the model (models.params.follow_key)
    assert set(r["binding"]) >= {"demo", "n_images"} and "clip_unireplknet_l" not in r["binding"]
