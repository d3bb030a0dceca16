"""The real notebooks, run end to end by the runner on the `ci` profile (the shipped demo CLIP,
sizes and counts shrunk): every notebook succeeds, results.json follows the documented schema,
the numbers are those of a trained model (far from chance, above its own random-weight
baselines), and every figure exists in the three formats a paper needs.

The results schema is held whole: the set of keys in the `ci` run's results.json equals the
README's "Results schema" table, both ways, and the relations that must hold between the recorded
figures are checked, so that a wrong *recording* (a swapped or dropped value) fails here. The
computation behind each figure is tested on its package function, elsewhere."""
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from unirepclip.analysis.attribution import BASELINES, best_gradcam_stage
from unirepclip.cli import main
from unirepclip.training import demo

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ERF_SHARES = ("t20", "t30", "t50", "t99")

# -- the README's schema table --------------------------------------------------------------------

# Documented keys that the ci profile cannot produce, by pattern prefix, with the reason.
NOT_IN_CI = {"erf.<model>.resolutions.": "ci measures the ERF at one resolution (03_erf.resolutions)",
             "attribution.gradcam.not_applicable.": "every stage of the demo's ConvNet reaches the "
                                                    "embedding (a class-token ViT's last block does not)"}

# a placeholder stands for one key segment; these few are narrower than "any segment"
PLACEHOLDERS = {"stage": r"stage\d+", "px": r"\d+", "k": r"\d+", "res": r"\d+"}


def schema_patterns(readme: str) -> List[str]:
    """The dotted key patterns of the README's "Results schema" table (its first column), with
    ``\\|`` unescaped: ``a.b\\|c`` is ``b`` or ``c`` in that segment."""
    section = readme.split("## Results schema", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "README.md: no rows in the Results schema table"
    out = []
    for row in rows:
        first = re.split(r"(?<!\\)\|", row)[1]
        out += [p.replace("\\|", "|") for p in re.findall(r"`([^`]+)`", first)]
    return out


def expand(pattern: str) -> List[str]:
    """One pattern per combination of alternatives: ``x.a|b.c|d`` gives four."""
    segments = [seg.split("|") for seg in pattern.split(".")]
    return [".".join(combo) for combo in itertools.product(*segments)]


def to_regex(pattern: str) -> "re.Pattern[str]":
    """A concrete pattern (no alternatives) as a regex: ``<name>`` is one segment (narrower for
    the names in PLACEHOLDERS), a final ``*`` is one or more segments."""
    parts = []
    for seg in pattern.split("."):
        if seg == "*":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.sub(r"<([a-z_]+)>|([^<]+)", lambda m: PLACEHOLDERS.get(m.group(1), r"[^.]+")
                                if m.group(1) else re.escape(m.group(2)), seg))
    return re.compile(r"\.".join(parts) + r"\Z")


def leaf_keys(d: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted paths to every value that is not a non-empty dict."""
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out += leaf_keys(v, key) if isinstance(v, dict) and v else [key]
    return out


def schema_mismatch(keys: List[str], patterns: List[str]) -> Dict[str, List[str]]:
    """``{"undocumented": keys no pattern matches, "absent": expanded patterns no key matches}``."""
    concrete = [(c, to_regex(c)) for p in patterns for c in expand(p)]
    return {"undocumented": sorted(k for k in keys if not any(rx.match(k) for _, rx in concrete)),
            "absent": sorted(c for c, rx in concrete if not any(rx.match(k) for k in keys))}


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
    folder, manifest, r = run
    assert [n["name"] for n in manifest["notebooks"]] == NOTEBOOKS
    for name in NOTEBOOKS:
        assert (folder / f"{name}.ipynb").is_file() and (folder / f"{name}.html").is_file()
    assert manifest["profile"]["name"] == "ci"
    # the manifest names the weights the run used: the shipped demo file, by content
    assert manifest["checkpoint"]["sha256"] == demo.demo_metadata()["sha256"] == \
        r["checkpoint"]["sha256"]
    assert manifest["checkpoint"]["model"] == demo.MODEL_NAME


def test_results_keys_are_the_readme_schema_both_ways(run):
    _, _, r = run
    patterns = schema_patterns((REPO / "README.md").read_text())
    mismatch = schema_mismatch(leaf_keys(r), patterns)
    mismatch["absent"] = [p for p in mismatch["absent"] if not p.startswith(tuple(NOT_IN_CI))]
    assert mismatch == {"undocumented": [], "absent": []}
    for prefix in NOT_IN_CI:  # each excuse still names a documented pattern
        assert any(c.startswith(prefix) for p in patterns for c in expand(p)), prefix


def test_the_schema_check_reads_the_table_and_sees_both_directions():
    readme = ("# x\n## Results schema (`r.json`)\n\n| key | meaning |\n|---|---|\n"
              "| `a.<task>.acc1\\|acc5`, `b.*` | the `a.b` in the meaning is no key |\n"
              "| `e.<model>.<stage>.t20\\|t99` | nests |\n\n## Layout\n| `c.d` | not schema |\n")
    patterns = schema_patterns(readme)
    assert patterns == ["a.<task>.acc1|acc5", "b.*", "e.<model>.<stage>.t20|t99"]
    assert expand(patterns[0]) == ["a.<task>.acc1", "a.<task>.acc5"]
    keys = ["a.shape.acc1", "a.shape.acc5", "b.x.y", "e.demo.stage0.t20", "e.demo.stage0.t99"]
    assert schema_mismatch(keys, patterns) == {"undocumented": [], "absent": []}
    assert schema_mismatch(keys + ["a.shape.acc10", "e.demo.head.t20", "b"], patterns) == {
        "undocumented": ["a.shape.acc10", "b", "e.demo.head.t20"], "absent": []}
    assert schema_mismatch([k for k in keys if k != "a.shape.acc5"], patterns) == {
        "undocumented": [], "absent": ["a.<task>.acc5"]}
    assert leaf_keys({"a": {"b": 1, "c": {}, "d": [1, 2]}}) == ["a.b", "a.c", "a.d"]


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
        assert any(s.startswith(name[:3]) for s in stems), f"{name} saved no figure"  # "07_..."
    for stem in stems:
        for ext in ("pdf", "svg"):
            f = figures / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (figures / f"{sorted(stems)[0]}.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_rerun_with_the_same_seed_gives_the_same_numbers(run, tmp_path):
    """Notebook 02 again, into an empty folder: its figures are computed anew, not carried."""
    _, _, first = run
    code = main(["run", "--profile", "ci", "--only", "02", "--notebooks-dir", str(REPO / "notebooks"),
                 "--output-dir", str(tmp_path), "--no-progress", "-q"])
    assert code == 0
    again = json.loads((tmp_path / "ci" / "results.json").read_text())
    assert "probe" not in again and "erf" not in again  # nothing came from the first run
    assert again["zeroshot"] == first["zeroshot"]
    assert again["retrieval"] == first["retrieval"]


def _erf_blocks(erf_model: Dict[str, Any]):
    """``(where, {stage: {"area_ratio": .., "side": ..}})`` for the trained figures, each further
    resolution and the at-init variants."""
    def stages(d):
        return {k: v for k, v in d.items() if re.fullmatch(r"stage\d+", k)}
    yield "", stages(erf_model)
    for px, d in (erf_model.get("resolutions") or {}).items():
        yield f"resolutions.{px}", stages(d)
    for variant in ("at_init", "at_init_layer_scale_1"):
        if variant in erf_model:
            yield from ((f"{variant}.{w}", s) for w, s in _erf_blocks(erf_model[variant]))


def test_recorded_figures_hold_their_relations(run):
    """What must hold between recorded values whatever the numbers: a swapped, dropped or
    mis-keyed recording breaks one of these."""
    _, manifest, r = run
    params = manifest["parameters"]
    zs = r["zeroshot"]
    assert zs["main_task"] in zs["tasks"]
    for m in ("acc1", "acc5", "mean_per_class_recall"):
        assert zs[m] == zs["tasks"][zs["main_task"]][m], m
    for task, t in zs["tasks"].items():
        assert t["acc1"] <= t["acc5"], task
        assert t["mean_per_class_recall"] == pytest.approx(np.mean(t["per_class_accuracy"])), task
        assert round(t["acc1"] * zs["n_images"], 6) == round(t["acc1"] * zs["n_images"]), task
    for task, t in zs["templates"].items():
        assert t["single_acc1_worst"] <= t["single_acc1_mean"] <= t["single_acc1_best"], task
        assert isinstance(t["best_template"], str) and "{}" in t["best_template"], task
        assert t["n_templates"] >= 2, task
    assert set(zs["resolution"]) == set(zs["tasks"])
    for d in ("image_to_text", "text_to_image"):
        rr = r["retrieval"][d]
        assert rr["r1"] <= rr["r5"] <= rr["r10"], d

    # the model's parameter counts add up; the two forms agree
    p = r["model"]["params"]
    assert p["image"] == p["image_tower"] + p["image_projection"]
    assert p["total"] == p["image"] + p["text_tower"] + p["logit_scale"]
    assert r["model"]["params_inference_form"]["image_tower"] < p["image_tower"]  # BN folded
    for px, g in r["model"]["gmacs"].items():
        assert g <= r["model"]["gmacs_training_form"][px], px
    assert r["model"]["reparam_max_rel_diff"] < 1e-3
    assert r["checkpoint"]["n_params"] > p["total"]  # the parameters and the BN statistics
    assert r["checkpoint"]["matches_model"] is True

    # ERF: a higher share needs a square at least as big, in every block recorded
    for model, e in r["erf"].items():
        if "stage0" not in e:
            continue
        assert e.get("reparam_max_rel_diff", 0.0) < 1e-3, model  # recorded for the trained model
        for where, stages in _erf_blocks(e):
            assert stages, (model, where)
            for stage, d in stages.items():
                for kind in ("area_ratio", "side"):
                    values = [d[kind][t] for t in ERF_SHARES]
                    assert values == sorted(values), (model, where, stage, kind, values)
    states = {k: e["state"] for k, e in r["erf"].items() if "state" in e}
    # the control and the peer (the demo ViT beside it), and only they, say how they were measured
    assert states == {"demo_small_kernel": "trained", "demo_vit": "trained"}, states
    vit = r["erf"]["demo_vit"]  # its blocks stand for the stages, each ratio growing with t
    assert vit["stands_for"] == {"stage0": "block0", "stage1": "block2", "stage2": "block3",
                                 "stage3": "block5"} and vit["resolution"] == 64
    for block in vit["stands_for"].values():
        values = [vit[block]["area_ratio"][t] for t in ERF_SHARES]
        assert values == sorted(values) and 0 < values[0] <= values[-1] <= 1, (block, values)

    # attribution: one completeness error per baseline; Grad-CAM on the stage 04 chose
    a = r["attribution"]
    assert set(a["integrated_gradients"]["completeness_error"]) == set(BASELINES)
    assert all(v is None or v >= 0 for v in a["integrated_gradients"]["completeness_error"].values())
    for method, m in a.items():
        for k in ("mass_in_mask", "pointing_game", "chance"):
            assert m[k] is None or 0.0 <= m[k] <= 1.0, (method, k)
        assert m["insensitive"] in (True, False), method
    scores = {int(s[len("stage"):]): {"score": v} for s, v in a["gradcam"]["stage_scores"].items()}
    chosen = params["04_attribution"]["gradcam_stage"]
    assert a["gradcam"]["stage"] == (best_gradcam_stage(scores) if chosen == "auto" else chosen)

    # probes: CLIP's C is the sweep's best, the kept C the smallest within one paired SE of it
    # and above chance under c_rule one_se (the best under clip); each figure inside its
    # interval; k-shot means are the means of their seeds
    settings = r["probe"]["settings"]
    for name, d in r["probe"].items():
        if name == "settings":
            continue
        for prefix in ("", "random_tower_", "pixel_baseline_"):
            sweep = d[f"{prefix}sweep"]
            best = max(acc for _, acc in sweep)
            assert [acc for c, acc in sweep if c == d[f"{prefix}clip_best_C"]] == [best], \
                (name, prefix)
            # one_se: paired on the validation items (lost, won against CLIP's C), above chance
            chance = d[f"{prefix}val_chance"] if best > d[f"{prefix}val_chance"] else -1.0
            kept = (min(c for (c, acc), (lost, won) in zip(sweep, d[f"{prefix}sweep_discordant"])
                        if acc > chance and lost - won <= math.sqrt(lost + won))
                    if settings["c_rule"] == "one_se" else d[f"{prefix}clip_best_C"])
            assert d[f"{prefix}best_C"] == kept, (name, prefix)
            assert d[f"{prefix}not_converged"] == [], (name, prefix)
            lo, hi = d[f"{prefix}acc1_ci"]
            assert lo <= d[f"{prefix}acc1"] <= hi, (name, prefix)
            test = d[f"{prefix}paired_test"] if prefix else None
            if test:
                assert test["main_only"] + test["baseline_only"] <= d["n_test"]
                assert 0.0 <= test["p_value"] <= 1.0
        assert round(d["acc1"] * d["n_test"], 6) == round(d["acc1"] * d["n_test"]), name
        assert d["majority_acc1"] <= d["acc1"], name
        for k, entry in d["kshot"].items():
            assert len(entry["accs"]) == len(settings["kshot_seeds"]), (name, k)
            assert entry["mean"] == pytest.approx(np.mean(entry["accs"])), (name, k)
            assert entry["std"] == pytest.approx(np.std(entry["accs"]), abs=1e-12) or \
                entry["std"] == pytest.approx(np.std(entry["accs"], ddof=1)), (name, k)


def test_the_run_says_what_the_code_before_the_workbook_rebuild_said(run):
    """Issue 22's rebuild moved the runner, reports and sweeps, not what they record: the figures
    (timings aside), the manifest's record of what ran with what, and the index's notebook table
    equal those of the ci run made with the code before it (tests/data/baseline_ci, written by
    tests/report_snapshot.py from 03b3a6e; a change that means to alter what a report says
    rewrites it and says so in its commit: see `git log tests/data/baseline_ci`)."""
    import report_snapshot

    folder, _, _ = run
    now = report_snapshot.snapshot(folder)
    for part in ("figures", "manifest", "index_table"):
        before = json.loads((REPO / "tests" / "data" / "baseline_ci" / f"{part}.json").read_text())
        assert json.loads(json.dumps(now[part])) == before, part


def test_the_snapshot_sees_a_changed_figure_status_or_headline(run, tmp_path):
    import shutil

    import report_snapshot

    folder, _, _ = run
    copy = tmp_path / "ci"
    shutil.copytree(folder, copy)
    base = report_snapshot.snapshot(copy)
    results = json.loads((copy / "results.json").read_text())
    results["zeroshot"]["tasks"]["shape"]["acc1"] += 0.001
    (copy / "results.json").write_text(json.dumps(results))
    page = (copy / "index.html").read_text().replace(">ok</span>", ">failed</span>", 1)
    (copy / "index.html").write_text(page)
    changed = report_snapshot.snapshot(copy)
    assert changed["figures"] != base["figures"] and changed["index_table"] != base["index_table"]
    assert changed["manifest"] == base["manifest"]
