"""What notebook 07 measures and records: shape bias and kernel surgery, as package functions.

Four parts, each a function the notebook calls and a test holds:

* **the Navon design** (:func:`navon_design_rows`, :func:`choose_design`): the synthetic cue
  conflict is readable only where the model recognizes both levels on their own, the plain figure
  (a global shape made of its own copies) and one element alone at its size in the figure. Each
  candidate (image side, global scale, element scale) is scored on both controls with Wilson
  intervals; the chosen one is the readable design (both lower bounds above chance) with the best
  worse-of-the-two accuracy, or, when none is readable, the best one flagged as unreadable;
* **shape bias with an interval** (:func:`shape_bias_interval`): Wilson's interval over the
  *decided* stimuli (global or local answers; other answers count for neither), which keeps its
  coverage near a bias of 0 or 1 where a bootstrap's does not;
* **kernel surgery** (:func:`surgery_plan`, :func:`surgery_sweep`): every cut of
  :mod:`unirepclip.analysis.surgery` on a copy of the model, each scored by zero-shot accuracy on
  the synthetic test split, the Navon shape bias and the ERF area ratio of the cut stage; a cut
  that is a no-op by construction is not run again (its figures are the uncut model's, and it is
  marked), every real cut is compared with the uncut model on the same images (McNemar's exact
  test for accuracy, Wilson intervals for the rest);
* **the sentences** (:func:`describe_design`, :func:`describe_surgery`): generated from the
  numbers (which way, by how much, whether distinguishable), never written for one outcome.

The records are plain JSON (an undefined interval end is ``None``), under ``shape.*``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from unirepclip.analysis.params import DECISION_RULES
from unirepclip.data.navon import NavonSet, navon_set
from unirepclip.eval.shape_bias import ShapeBias, shape_bias
from unirepclip.eval.uncertainty import Interval, mcnemar_exact, proportion_interval, wilson_interval

__all__ = ["shape_bias_interval", "navon_design_rows", "choose_design",
           "describe_design", "navon_result", "navon_records", "surgery_plan", "tower_scores",
           "surgery_sweep", "surgery_records", "describe_surgery", "harshest_cut",
           "encode_test_images", "RULES", "cue_conflict_shape_bias", "human_records",
           "compare_towers", "design_records", "tower_records", "cue_conflict_probe",
           "larger_input_check", "describe_larger_input", "larger_input_records",
           "cue_conflict_records", "describe_cue_conflict"]

Device = Union[str, torch.device]


def shape_bias_interval(result: ShapeBias, confidence: float = 0.95) -> Interval:
    """The shape bias of ``result`` with Wilson's interval over its decided stimuli (``n`` is
    their count: shape plus texture decisions); undefined (``nan``) with no decision of either
    kind."""
    n = result.n_shape + result.n_texture
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, confidence, "wilson", 0)
    lo, hi = wilson_interval(result.n_shape, n, confidence)
    return Interval(result.n_shape / n, float(lo), float(hi), confidence, "wilson", n)


# ------------------------------------------------------------------------------------------------
# The Navon design


def _decisions(model: torch.nn.Module, classifier: torch.Tensor, stimuli: NavonSet,
               device: Device, batch_size: int) -> np.ndarray:
    from unirepclip.analysis.cue_conflict import navon_decisions

    return np.asarray(navon_decisions(model, classifier, stimuli, device=device,
                                      batch_size=batch_size), dtype=object)


def navon_design_rows(model: torch.nn.Module, classifier: torch.Tensor,
                      designs: Sequence[Sequence[float]], *, colours: Sequence[str] = ("blue", "red"),
                      device: Device = "cpu", batch_size: int = 64) -> List[Dict[str, Any]]:
    """Each design ``(image_size, global_scale, element_scale)`` scored on the two controls:
    ``plain`` (accuracy on the plain figures, naming the global shape) and ``elements_alone``
    (accuracy on one element alone), each a Wilson :class:`Interval`, with ``element_px``. A
    design whose elements do not fit is kept with its ``error`` (the generator's message)."""
    rows = []
    for design in designs:
        if len(design) != 3:
            raise ValueError(f"navon design {design!r}: expected [image_size, global_scale, "
                             f"element_scale]")
        size, gs, es = int(design[0]), float(design[1]), float(design[2])
        row: Dict[str, Any] = {"image_size": size, "global_scale": gs, "element_scale": es}
        try:
            stim = navon_set(image_size=size, global_scale=gs, element_scale=es, colours=colours,
                             kinds=("plain", "elements_alone"))
        except ValueError as e:
            rows.append({**row, "error": str(e)})
            continue
        d = _decisions(model, classifier, stim, device, batch_size)
        truth = np.asarray(stim.global_shape, dtype=object)
        for kind in ("plain", "elements_alone"):
            idx = stim.select(kind)
            row[kind] = proportion_interval(d[idx] == truth[idx])
        rows.append({**row, "element_px": int(stim.element_px), "error": None})
    return rows


def _readable(row: Mapping[str, Any], chance: float) -> bool:
    return row.get("error") is None and all(row[k].low > chance
                                            for k in ("plain", "elements_alone"))


def choose_design(rows: Sequence[Mapping[str, Any]], chance: float) -> Dict[str, Any]:
    """The design the cue conflict runs on: among the readable rows (both controls' lower
    bounds above ``chance``) the one with the best worse-of-the-two accuracy; with none
    readable, the best such row anyway, flagged ``readable=False``. Returns ``{"index",
    "readable", "n_readable", "chance"}``; ValueError when no design could be drawn at all."""
    scored = [(i, min(r["plain"].estimate, r["elements_alone"].estimate))
              for i, r in enumerate(rows) if r.get("error") is None]
    if not scored:
        raise ValueError("navon_designs: no design could be drawn (elements too large or too "
                         "small for every image size given)")
    readable = [(i, s) for i, s in scored if _readable(rows[i], chance)]
    pool = readable or scored
    best = max(pool, key=lambda t: (t[1], -t[0]))[0]
    return {"index": int(best), "readable": bool(readable), "n_readable": len(readable),
            "chance": float(chance)}


def _iv(iv: Interval) -> str:
    return f"{iv.estimate:.2f} ({100 * iv.confidence:g}% interval {iv.low:.2f}-{iv.high:.2f})"


def _design_label(row: Mapping[str, Any]) -> str:
    return (f"{row['image_size']} px, global shape {row['global_scale']:g} of the side, elements "
            f"of {row['element_px']} px ({row['element_scale']:g} of the side)")


def describe_design(rows: Sequence[Mapping[str, Any]], choice: Mapping[str, Any]) -> str:
    """The sentence on the design: how many were readable, which was chosen, its two controls,
    and, when none was readable, that the cue conflict measures nothing on this model."""
    row, drawn = rows[choice["index"]], sum(r.get("error") is None for r in rows)
    controls = (f"plain figures named by their global shape {_iv(row['plain'])}, elements alone "
                f"named {_iv(row['elements_alone'])}, chance {choice['chance']:.3f}")
    if choice["readable"]:
        return (f"{choice['n_readable']} of {drawn} designs have both controls recognized above "
                f"chance; the cue conflict runs on the best of them: {_design_label(row)} "
                f"({controls}).")
    return (f"None of the {drawn} designs has both controls recognized above chance, so this "
            f"model cannot read the Navon cue conflict: a global or local answer on it says "
            f"little about shape bias. The figures below use the design whose worse control is "
            f"best, {_design_label(row)} ({controls}), and should be read as that.")


def navon_result(stimuli: NavonSet, decisions: Sequence[str], confidence: float = 0.95
                 ) -> Dict[str, Any]:
    """The conflict figures scored (:func:`~unirepclip.eval.shape_bias.shape_bias`, global shape
    as "shape") with Wilson intervals: ``shape_bias``, and per kind of control its accuracy."""
    d = np.asarray(list(decisions), dtype=object)
    if len(d) != len(stimuli):
        raise ValueError(f"{len(d)} decisions for {len(stimuli)} Navon stimuli")
    g = np.asarray(stimuli.global_shape, dtype=object)
    loc = np.asarray(stimuli.local_shape, dtype=object)
    idx = stimuli.select("conflict")
    if not len(idx):
        raise ValueError("navon_result: the stimuli hold no conflict figure")
    result = shape_bias(g[idx], loc[idx], d[idx])
    out: Dict[str, Any] = {"counts": result, "shape_bias": shape_bias_interval(result, confidence)}
    for kind in ("plain", "elements_alone"):
        k = stimuli.select(kind)
        if len(k):
            out[kind] = proportion_interval(d[k] == g[k], confidence)
    return out


def navon_records(result: Mapping[str, Any]) -> Dict[str, Any]:
    """:func:`navon_result` as JSON data: the shape bias and controls as intervals, the counts
    of global, local and other answers, the per-class (global shape) bias."""
    c: ShapeBias = result["counts"]
    out = {"shape_bias": result["shape_bias"].record(), "n_global": c.n_shape,
           "n_local": c.n_texture, "n_other": c.n_other, "n_conflict": c.n_conflict,
           "per_class": {k: (None if not math.isfinite(v) else float(v))
                         for k, v in c.per_class.items()}}
    for kind in ("plain", "elements_alone"):
        if kind in result:
            out[f"{kind}_accuracy"] = result[kind].record()
    return out


# ------------------------------------------------------------------------------------------------
# Kernel surgery


def encode_test_images(model: torch.nn.Module, images: np.ndarray, *, image_size: int,
                       device: Device = "cpu", batch_size: int = 64) -> torch.Tensor:
    """(N, C, S, S) model inputs of (N, H, W, 3) uint8 ``images`` through the model's evaluation
    preprocessing at ``image_size`` (once, shared by every cut)."""
    from PIL import Image

    from unirepclip.data.sets import val_transform

    transform = val_transform(model, image_size)
    return torch.stack([transform(Image.fromarray(im)) for im in images])


def surgery_plan(model: torch.nn.Module, stages: Sequence[int], keeps: Sequence[int],
                 image_size: int, *, drop_dilated: bool = True) -> Dict[str, Any]:
    """The cuts of a sweep: per stage of ``stages`` that has large kernels, each odd ``keeps``
    below its full kernel size (smallest first), each with ``noop`` (by construction, at
    ``image_size``), then the dilated branches dropped when ``drop_dilated``. Returns
    ``{"cuts": [...], "skipped": {stage: why}}``."""
    from unirepclip.analysis.surgery import Cut, cut_is_noop, cut_plan, large_kernel_blocks

    cuts: List[Dict[str, Any]] = []
    skipped: Dict[int, str] = {}
    for stage in stages:
        if not large_kernel_blocks(model, stage):
            skipped[int(stage)] = f"stage {stage} has no large kernel"
            continue
        full = max(b.dwconv.kernel_size for b in large_kernel_blocks(model, stage))
        wanted = sorted({int(k) for k in keeps if k % 2 == 1 and 1 <= k < full})
        for p in cut_plan(model, stage, image_size, wanted):
            cuts.append({"cut": p["cut"], "stage": int(stage), "keep": p["keep"],
                         "full": p["full"], "drop_dilated": False, "noop": p["noop"]})
        if drop_dilated:
            cut = Cut(stage, drop_dilated=True)
            cuts.append({"cut": cut, "stage": int(stage), "keep": None, "full": full,
                         "drop_dilated": True, "noop": cut_is_noop(model, cut, image_size)})
    return {"cuts": cuts, "skipped": skipped}


def _cue_conflict_scores(model: torch.nn.Module, probe: Mapping[str, Any], device: Device,
                         batch_size: int) -> Dict[str, Any]:
    from unirepclip.data.modelvshuman import CATEGORIES
    from unirepclip.eval.shape_bias import zero_shot_decisions
    from unirepclip.eval.zeroshot import encode_images

    x = probe["inputs"]
    feats, _ = encode_images(model, [x[i:i + batch_size] for i in range(0, len(x), batch_size)],
                             device=device, progress=False)
    d = zero_shot_decisions(feats, probe["classifier"])
    counts = shape_bias(probe["shape"], probe["texture"], d, CATEGORIES)
    return {"counts": counts, "shape_bias": shape_bias_interval(counts), "decisions": d}


def cue_conflict_probe(model: torch.nn.Module, folder: str, classifier16: Any, *,
                       image_size: int) -> Dict[str, Any]:
    """The cue-conflict images of ``folder`` as model inputs at ``image_size``, with their shape
    and texture classes and the (D, 16) zero-shot classifier (:func:`cue_conflict_shape_bias`'s
    ``classifiers["zero_shot_16"]``): what :func:`tower_scores` needs to score the cue-conflict
    shape bias of each cut (the zero-shot rule over the 16 names)."""
    from unirepclip.data.cue_conflict import CueConflictDataset, read_cue_conflict
    from unirepclip.data.sets import val_transform

    stimuli = read_cue_conflict(folder)
    data = CueConflictDataset(stimuli, val_transform(model, image_size))
    return {"inputs": torch.stack([data[i][0] for i in range(len(data))]),
            "shape": stimuli.shape, "texture": stimuli.texture, "classifier": classifier16}


def tower_scores(model: torch.nn.Module, classifier: torch.Tensor, *, test_inputs: torch.Tensor,
                 test_labels: np.ndarray, stimuli: NavonSet, erf_inputs: Optional[torch.Tensor],
                 erf_stages: Sequence[int], device: Device = "cpu", batch_size: int = 64,
                 cue_conflict: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """One tower scored: zero-shot accuracy on ``test_inputs`` (per-image ``correct`` and a
    Wilson interval), the Navon result (:func:`navon_result`), the ERF area ratios of
    ``erf_stages`` (:func:`unirepclip.analysis.erf.area_ratios`; none without ``erf_inputs``)
    and, given a :func:`cue_conflict_probe`, the cue-conflict shape bias (``cue_conflict``)."""
    from unirepclip.analysis.erf import area_ratios, stage_erfs
    from unirepclip.eval.zeroshot import encode_images, zeroshot_logits

    loader = [test_inputs[i:i + batch_size] for i in range(0, len(test_inputs), batch_size)]
    feats, _ = encode_images(model, loader, device=device, progress=False)
    correct = zeroshot_logits(feats, classifier).argmax(1) == np.asarray(test_labels)
    decisions = _decisions(model, classifier, stimuli, device, batch_size)
    navon = navon_result(stimuli, decisions)
    erf: Dict[str, Any] = {}
    if erf_inputs is not None and len(erf_stages):
        maps = stage_erfs(model, erf_inputs, list(erf_stages), batch_size=batch_size,
                          device=device, progress=False)
        erf = {name: area_ratios(m) for name, m in maps.items()}
    cc = None if cue_conflict is None else _cue_conflict_scores(model, cue_conflict, device,
                                                                batch_size)
    return {"correct": np.asarray(correct, bool), "accuracy": proportion_interval(correct),
            "navon": navon, "shape_bias": navon["shape_bias"], "erf": erf,
            "decisions": decisions, "cue_conflict": cc}


def surgery_sweep(model: torch.nn.Module, classifier: torch.Tensor, plan: Mapping[str, Any],
                  **data: Any) -> Dict[str, Any]:
    """Every cut of ``plan`` (:func:`surgery_plan`) on a copy of ``model``, scored by
    :func:`tower_scores` (``data``: its keywords but ``erf_stages``), beside the uncut inference
    form. A no-op cut is not run: its scores are the uncut ones (``ran=False``; a test proves
    such a cut leaves the outputs bit for bit). Each row's ``mcnemar`` compares its per-image
    correctness with the uncut model's. ``model`` is not modified."""
    from unirepclip.analysis.surgery import cut_kernels, inference_form

    stages = sorted({c["stage"] for c in plan["cuts"]})
    uncut = tower_scores(inference_form(model), classifier, erf_stages=stages, **data)
    rows = []
    for entry in plan["cuts"]:
        if entry["noop"]:
            scores = uncut
        else:
            scores = tower_scores(cut_kernels(model, entry["cut"]), classifier,
                                  erf_stages=[entry["stage"]], **data)
        rows.append({**{k: v for k, v in entry.items() if k != "cut"},
                     "label": entry["cut"].label, "ran": not entry["noop"],
                     "accuracy": scores["accuracy"], "shape_bias": scores["shape_bias"],
                     "cue_conflict_shape_bias": (None if scores["cue_conflict"] is None else
                                                 scores["cue_conflict"]["shape_bias"]),
                     "erf": scores["erf"].get(f"stage{entry['stage']}", {}),
                     "mcnemar": mcnemar_exact(scores["correct"], uncut["correct"])})
    return {"uncut": uncut, "rows": rows, "skipped": dict(plan.get("skipped", {}))}


def _row_key(row: Mapping[str, Any]) -> str:
    what = "no_dilated" if row["drop_dilated"] else f"keep{row['keep']}"
    return f"stage{row['stage']}_{what}"


def _erf_record(ratios: Mapping[str, Any]) -> Dict[str, Any]:
    return {t: float(ratios[t]["area_ratio"]) for t in ("t20", "t50") if t in ratios}


def surgery_records(sweep: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """:func:`surgery_sweep` as records under ``prefix`` (e.g. ``shape.surgery.demo``): the
    uncut model's accuracy, shape bias and ERF area ratios, and per cut (``stage<s>_keep<k>``,
    ``stage<s>_no_dilated``) its own with ``noop``, ``ran`` and McNemar's test against uncut."""
    u = sweep["uncut"]
    out: Dict[str, Any] = {
        f"{prefix}.uncut.accuracy": u["accuracy"].record(),
        f"{prefix}.uncut.shape_bias": u["shape_bias"].record(),
        f"{prefix}.uncut.erf_area_ratio": {s: _erf_record(r) for s, r in u["erf"].items()}}
    if u.get("cue_conflict") is not None:
        out[f"{prefix}.uncut.cue_conflict_shape_bias"] = u["cue_conflict"]["shape_bias"].record()
    for row in sweep["rows"]:
        entry = out[f"{prefix}.cuts.{_row_key(row)}"] = {
            "stage": row["stage"], "keep": row["keep"], "full": row["full"],
            "drop_dilated": row["drop_dilated"], "noop": row["noop"], "ran": row["ran"],
            "accuracy": row["accuracy"].record(),
            "shape_bias": row["shape_bias"].record(),
            "erf_area_ratio": _erf_record(row["erf"]), "accuracy_vs_uncut": dict(row["mcnemar"])}
        if row.get("cue_conflict_shape_bias") is not None:
            entry["cue_conflict_shape_bias"] = row["cue_conflict_shape_bias"].record()
    return out


def harshest_cut(sweep: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The real cut that costs the most zero-shot accuracy (ties: the earlier stage, the
    smaller kernel), for a headline: ``{"key": <results key under .cuts>, "label"}``; None when
    no cut ran."""
    ran = [r for r in sweep["rows"] if r["ran"]]
    if not ran:
        return None
    row = min(ran, key=lambda r: (r["accuracy"].estimate, r["stage"], r["drop_dilated"],
                                  r["keep"] or 0))
    what = ("its dilated branches dropped" if row["drop_dilated"]
            else f"its {row['full']}x{row['full']} kernels cut to {row['keep']}x{row['keep']}")
    return {"key": _row_key(row),
            "label": f"zero-shot accuracy, stage {row['stage']} with {what} (uncut "
                     f"{sweep['uncut']['accuracy'].estimate:.2f})"}


def _change(name: str, before: float, after: float, digits: int = 2) -> str:
    if not (math.isfinite(before) and math.isfinite(after)):
        return f"{name} is undefined (no decision of either kind) before or after"
    if round(after - before, digits) == 0:
        return f"{name} stays at {before:.{digits}f}"
    way = "rises" if after > before else "falls"
    return f"{name} {way} from {before:.{digits}f} to {after:.{digits}f}"


def _overlap(a: Interval, b: Interval) -> str:
    if not (a.defined and b.defined):
        return "no interval to compare"
    apart = a.low > b.high or b.low > a.high
    return "Wilson intervals do not overlap" if apart else "Wilson intervals overlap"


def _cut_sentence(row: Mapping[str, Any], uncut: Mapping[str, Any], alpha: float) -> str:
    what = ("without its dilated branches" if row["drop_dilated"] else
            f"kept to {row['keep']}x{row['keep']} of {row['full']}x{row['full']}")
    p = row["mcnemar"]["p_value"]
    verdict = "distinguishable" if p < alpha else "not distinguishable"
    return (f"Stage {row['stage']} {what}: "
            f"{_change('accuracy', uncut['accuracy'].estimate, row['accuracy'].estimate)} "
            f"(McNemar p = {p:.2g}: {verdict} on these {row['accuracy'].n} images); "
            f"{_change('Navon shape bias', uncut['shape_bias'].estimate, row['shape_bias'].estimate)}"
            f" ({_overlap(uncut['shape_bias'], row['shape_bias'])})" + _cue_clause(row, uncut)
            + ".")


def _cue_clause(row: Mapping[str, Any], uncut: Mapping[str, Any]) -> str:
    after, before = row.get("cue_conflict_shape_bias"), uncut.get("cue_conflict")
    if after is None or before is None:
        return ""
    before = before["shape_bias"]
    return (f"; {_change('cue-conflict shape bias', before.estimate, after.estimate)} "
            f"({_overlap(before, after)})")


def describe_surgery(sweep: Mapping[str, Any], *, alpha: float = 0.05) -> str:
    """Sentences on a sweep: per stage, what its harshest real kernel cut and the dropped
    dilated branches did to accuracy and shape bias (which way, from what to what, whether
    distinguishable), and how many cuts were no-ops by construction."""
    rows, uncut = sweep["rows"], sweep["uncut"]
    lines = []
    for stage in sorted({r["stage"] for r in rows}):
        mine = [r for r in rows if r["stage"] == stage]
        real = [r for r in mine if r["ran"] and not r["drop_dilated"]]
        if real:
            lines.append(_cut_sentence(min(real, key=lambda r: r["keep"]), uncut, alpha))
        lines += [_cut_sentence(r, uncut, alpha) for r in mine if r["drop_dilated"] and r["ran"]]
        noops = [r["keep"] for r in mine if r["noop"]]
        if noops:
            lines.append(f"Stage {stage}: the cuts to {', '.join(map(str, noops))} are no-ops by "
                         f"construction (the kept kernel still spans its feature map).")
    return " ".join(lines) if lines else "No cut was measured."


# ------------------------------------------------------------------------------------------------
# The model-vs-human cue conflict (a local folder)

#: The two decision rules: zero-shot over the 16 class names, and the toolbox's aggregation of
#: 1,000-class ImageNet zero-shot probabilities (declared with the notebook's parameters).
RULES = DECISION_RULES


def cue_conflict_shape_bias(model: torch.nn.Module, tokenizer: Any, folder: str, *,
                            rules: Sequence[str] = RULES, image_size: int = 224,
                            device: Device = "cpu", precision: str = "fp32",
                            batch_size: int = 64, max_templates: int = 0) -> Dict[str, Any]:
    """The cue-conflict stimuli of ``folder`` (:func:`~unirepclip.data.cue_conflict.
    read_cue_conflict`) decided by each of ``rules``: ``{rule: {"counts": ShapeBias (per class
    over the 16 categories), "shape_bias": Wilson Interval, "decisions"}}``, ``"n_images"`` and
    the two rules' ``"classifiers"``."""
    from unirepclip.data.cue_conflict import CueConflictDataset, read_cue_conflict
    from unirepclip.data.modelvshuman import CATEGORIES
    from unirepclip.data.sets import val_transform
    from unirepclip.eval.shape_bias import (cue_conflict_classifiers, toolbox_decisions,
                                            zero_shot_decisions)
    from unirepclip.eval.zeroshot import encode_images

    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise ValueError(f"decision_rules: {bad or 'none'} given; expected some of {RULES}")
    stimuli = read_cue_conflict(folder)
    data = CueConflictDataset(stimuli, val_transform(model, image_size))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    feats, _ = encode_images(model, loader, device=device, precision=precision, progress=False)
    classifiers = cue_conflict_classifiers(model, tokenizer, device=device,
                                           max_templates=max_templates)
    out: Dict[str, Any] = {"n_images": len(stimuli), "classifiers": classifiers}
    for rule in rules:
        d = (zero_shot_decisions(feats, classifiers["zero_shot_16"]) if rule == "zero_shot_16"
             else toolbox_decisions(feats, classifiers["imagenet_1000"]))
        counts = shape_bias(stimuli.shape, stimuli.texture, d, CATEGORIES)
        out[rule] = {"counts": counts, "shape_bias": shape_bias_interval(counts), "decisions": d}
    return out


def human_records() -> Dict[str, Any]:
    """The human reference (:func:`~unirepclip.eval.shape_bias.human_reference`, computed from
    the shipped raw data) as JSON data: mean, min, max over the subjects, and the per-class mean
    over subjects."""
    from unirepclip.eval.shape_bias import human_reference

    ref = human_reference()
    classes = list(next(iter(ref["subjects"].values())).per_class)
    per_class = {c: float(np.nanmean([s.per_class[c] for s in ref["subjects"].values()]))
                 for c in classes}
    return {"mean": ref["mean"], "min": ref["min"], "max": ref["max"],
            "n_subjects": len(ref["subjects"]), "per_class": per_class}


# ------------------------------------------------------------------------------------------------
# Other towers beside the model


def compare_towers(stimuli: NavonSet, scores: Mapping[str, Mapping[str, Any]], main: str, *,
                   names: Optional[Mapping[str, str]] = None, n_boot: int = 2000,
                   seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """``main``'s Navon shape bias against each other tower's in ``scores`` (each a
    :func:`tower_scores` on the same stimuli and test images): the paired bootstrap interval of
    the difference (main minus other), McNemar's test on accuracy, and the generated sentence
    (:func:`~unirepclip.analysis.cue_conflict.describe_difference`)."""
    from unirepclip.analysis.cue_conflict import describe_difference, paired_difference

    names = dict(names or {})
    a = scores[main]
    out = {}
    for key, b in scores.items():
        if key == main:
            continue
        ca, cb = a["navon"]["counts"], b["navon"]["counts"]
        diff: Optional[Interval] = None
        if ca.n_shape + ca.n_texture and cb.n_shape + cb.n_texture:
            try:  # refused when too many resamples hold no decision (a few decided stimuli)
                diff = paired_difference(stimuli, a["decisions"], b["decisions"], n_boot=n_boot,
                                         seed=seed)
            except ValueError:
                diff = None
        sentence = describe_difference(names.get(main, main), a["shape_bias"],
                                       names.get(key, key), b["shape_bias"], diff)
        out[key] = {"difference": diff, "sentence": sentence,
                    "accuracy_test": mcnemar_exact(a["correct"], b["correct"])}
    return out


def design_records(rows: Sequence[Mapping[str, Any]], choice: Mapping[str, Any]
                   ) -> Dict[str, Any]:
    """The design search as JSON data: each candidate's two controls (intervals) or its error,
    and the chosen design with whether it is readable."""
    cands = []
    for r in rows:
        entry = {k: r[k] for k in ("image_size", "global_scale", "element_scale")}
        if r.get("error") is not None:
            cands.append({**entry, "error": r["error"]})
            continue
        cands.append({**entry, "element_px": r["element_px"],
                      "plain_accuracy": r["plain"].record(),
                      "elements_alone_accuracy": r["elements_alone"].record()})
    chosen = cands[choice["index"]]
    return {"candidates": cands, "chosen": {k: chosen[k] for k in ("image_size", "global_scale",
                                                                   "element_scale",
                                                                   "element_px")},
            "readable": bool(choice["readable"]), "n_readable": int(choice["n_readable"]),
            "chance": float(choice["chance"])}


def tower_records(scores: Mapping[str, Any]) -> Dict[str, Any]:
    """:func:`tower_scores` as JSON data: accuracy (interval), the Navon records
    (:func:`navon_records`)."""
    return {"accuracy": scores["accuracy"].record(),
            **navon_records(scores["navon"])}


def larger_input_check(model: torch.nn.Module, classifier: torch.Tensor, *, stages: Sequence[int],
                       keeps: Sequence[int], image_size: int, n_images: int, seed: int = 0,
                       device: Device = "cpu", batch_size: int = 64) -> Dict[str, Any]:
    """What cutting at a larger input would measure: the uncut model's zero-shot accuracy on
    the synthetic test split rendered at ``image_size`` (objects keep their share of the image)
    with a Wilson interval, and how many of the sweep's cuts are real there (``n_real``) out of
    ``n_cuts``. No cut is run."""
    from unirepclip.data.synthetic import SyntheticShapes
    from unirepclip.eval.zeroshot import encode_images, zeroshot_logits

    test = SyntheticShapes("test", n=n_images, image_size=image_size, seed=seed)
    x = encode_test_images(model, test.samples.images, image_size=image_size)
    feats, _ = encode_images(model, [x[i:i + batch_size] for i in range(0, len(x), batch_size)],
                             device=device, progress=False)
    correct = zeroshot_logits(feats, classifier).argmax(1) == np.asarray(test.samples.shape)
    cuts = surgery_plan(model, stages, keeps, image_size)["cuts"]
    return {"image_size": int(image_size), "accuracy": proportion_interval(correct),
            "n_cuts": len(cuts), "n_real": sum(not c["noop"] for c in cuts)}


def describe_larger_input(check: Mapping[str, Any], trained_size: int, trained: Interval,
                          n_real_trained: int) -> str:
    """The sentence on :func:`larger_input_check`: how many more cuts are real at the larger
    size, and what the uncut model's accuracy does there (which way, whether the Wilson
    intervals separate it from the trained size's)."""
    acc = check["accuracy"]
    apart = acc.high < trained.low or acc.low > trained.high
    way = ("lower" if acc.estimate < trained.estimate else "higher"
           if acc.estimate > trained.estimate else "the same")
    verdict = ("the intervals do not overlap" if apart else "the intervals overlap")
    reading = (" Cuts there would be measured on a model already worse off than at its trained "
               "size." if apart and way == "lower" else "")
    return (f"At {check['image_size']} px, {check['n_real']} of the {check['n_cuts']} cuts change "
            f"something ({n_real_trained} at {trained_size} px), but the uncut model's accuracy "
            f"there is {_iv(acc)}, {way} than at {trained_size} px ({_iv(trained)}; "
            f"{verdict}).{reading}")


def larger_input_records(check: Mapping[str, Any], sentence: str) -> Dict[str, Any]:
    """:func:`larger_input_check` as JSON data with its sentence."""
    return {"image_size": check["image_size"], "accuracy": check["accuracy"].record(),
            "n_cuts": check["n_cuts"], "n_real_cuts": check["n_real"], "sentence": sentence}


def _json_number(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_number(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cue_conflict_records(rule_result: Mapping[str, Any]) -> Dict[str, Any]:
    """One rule of :func:`cue_conflict_shape_bias` as JSON data: the shape bias with its Wilson
    interval, the counts (shape, texture, other, dropped), the shape and texture rates and the
    per-class bias (``None`` where a class had no shape or texture decision)."""
    counts = {k: v for k, v in rule_result["counts"].as_dict().items() if k != "shape_bias"}
    return {"shape_bias": rule_result["shape_bias"].record(), **_json_number(counts)}


def describe_cue_conflict(label: str, shape_bias: Interval, human_mean: float) -> str:
    """The sentence on one rule's cue-conflict shape bias against people's mean: below, above
    or around it by its Wilson interval, or undefined with no shape or texture decision."""
    if not shape_bias.defined:
        return (f"{label}: no shape or texture decision on the {shape_bias.n} decided images, "
                f"so no shape bias (people: {human_mean:.3f}).")
    way = ("below" if shape_bias.high < human_mean else "above" if shape_bias.low > human_mean
           else "not distinguishable from")
    return (f"{label}: shape bias {_iv(shape_bias)} over {shape_bias.n} decided images, {way} "
            f"people's {human_mean:.3f}.")
