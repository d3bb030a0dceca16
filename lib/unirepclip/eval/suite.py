"""The DataComp 38-task suite (:mod:`unirepclip.data.suite`): main metrics, the average, the
like-for-like comparison with the published rows, and a run over CLIP_benchmark's webdataset
folders (:mod:`unirepclip.data.wds`).

The metrics, as DataComp's ``eval_utils`` computes them:

* ``acc1``; ``mean_per_class_recall`` (scikit-learn's ``balanced_accuracy_score``, the classes
  present in the labels);
* ``mean_recall@1``: the mean of CLIP_benchmark's ``image_retrieval_recall@1`` (each caption's
  image ranked first) and ``text_retrieval_recall@1`` (each image has one of its captions first);
* ``F1-macro_all`` (iWildCam): scikit-learn's macro F1 over the labels in either the truth or the
  predictions (WILDS' ``F1(average="macro")``);
* worst-group accuracies (WILDS' ``standard_group_eval``): a metric per group of the metadata,
  the minimum over the groups with at least one item: ``acc_worst_region`` (FMoW, metadata
  ``[region, year, y]``), ``acc_top5_wg`` (Dollar Street: top-5 per ``income_ds`` group,
  metadata ``[income_ds, income_meta, region]``) and ``acc_wg`` (GeoDE: top-1 per region,
  metadata ``[region, country]``). DataComp's FMoW evaluator skips a region whose *name*
  contains "Other"; its grouper is given no names (no ``metadata_map``), so as we read its code no
  region is skipped, and none is here by default (``exclude`` names group codes to skip);
* ``jaccard_score_10-12`` (WinoGAViL): per instance, the k candidates scored highest against the
  cue (k: the number of true associations) against the true ones, Jaccard's index, averaged over
  the instances with 10 or 12 candidates.

The suite's average is the unweighted mean over the tasks measured, marked partial with the
missing tasks listed when any is missing. Beside a published row, the comparison is over the
tasks both have; a published 0 is an evaluation that failed upstream (open_clip's averages count
it as 0): it is shown as failed and left out of the like-for-like average.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from unirepclip.data.suite import TASKS, SuiteTask
from unirepclip.eval.metrics import mean_per_class_recall

__all__ = ["worst_group", "topk_correct", "macro_f1", "retrieval_mean_recall_at_1",
           "winogavil_jaccard", "classification_metrics", "suite_average",
           "compare_with_published", "run_suite", "suite_records", "suite_table", "peer_records",
           "peer_table"]

#: The metadata column that groups each worst-group task.
GROUP_COLUMN = {"wilds/fmow": 0, "fairness/dollar_street": 0, "fairness/geode": 0}


def topk_correct(logits: Any, labels: Any, k: int = 1) -> np.ndarray:
    """Per item: is the label among the ``k`` highest logits (ties to the lower index)."""
    s = np.asarray(logits, float)
    y = np.asarray(labels).astype(int)
    k = min(int(k), s.shape[1])
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return (top == y[:, None]).any(axis=1)


def worst_group(correct: Any, groups: Any, exclude: Sequence[int] = ()) -> Dict[str, Any]:
    """``{"worst": min over groups, "per_group": {group: mean}, "counts": {group: n}}`` of
    per-item 0/1 ``correct`` grouped by integer ``groups`` (groups without items do not exist
    here; ``exclude``: group codes left out)."""
    c = np.asarray(correct, float)
    g = np.asarray(groups).astype(int)
    if c.shape != g.shape or c.size == 0:
        raise ValueError(f"worst_group: {c.size} outcomes and {g.size} groups; expected as many, "
                         f"at least one")
    keep = [int(v) for v in np.unique(g) if int(v) not in set(exclude)]
    if not keep:
        raise ValueError(f"worst_group: every group is excluded ({sorted(set(exclude))})")
    per = {v: float(c[g == v].mean()) for v in keep}
    return {"worst": min(per.values()), "per_group": per,
            "counts": {v: int((g == v).sum()) for v in keep}}


def macro_f1(labels: Any, predictions: Any) -> float:
    """scikit-learn's macro F1 (the labels in either array), as WILDS reports iWildCam's."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(labels), np.asarray(predictions), average="macro"))


def retrieval_mean_recall_at_1(image_emb: Any, text_emb: Any, text_to_image: Any
                               ) -> Dict[str, float]:
    """CLIP_benchmark's ``image_retrieval_recall@1``, ``text_retrieval_recall@1`` and DataComp's
    ``mean_recall@1`` (their mean) of normalized embeddings; ``text_to_image[t]`` is caption t's
    image. A score tie goes to the lower index (the top-1 of a stable sort)."""
    img, txt = np.asarray(image_emb, float), np.asarray(text_emb, float)
    owner = np.asarray(text_to_image).astype(int)
    s = txt @ img.T                                     # (texts, images)
    image_r1 = float(np.mean(np.argmax(s, axis=1) == owner))
    best_text = np.argmax(s, axis=0)                    # per image, its top caption
    text_r1 = float(np.mean(owner[best_text] == np.arange(img.shape[0])))
    return {"image_retrieval_recall@1": image_r1, "text_retrieval_recall@1": text_r1,
            "mean_recall@1": 0.5 * (image_r1 + text_r1)}


def winogavil_jaccard(scores: Sequence[Any], truth: Sequence[Any]) -> Dict[str, float]:
    """DataComp's WinoGAViL figures from per-instance candidate ``scores`` and boolean
    ``truth`` (the true associations): ``avg_jaccard_score`` and ``jaccard_score_5-6|10-12``
    (NaN where no instance has that many candidates)."""
    out, sizes = [], []
    for s, t in zip(scores, truth):
        s, t = np.asarray(s, float), np.asarray(t, bool)
        k = int(t.sum())
        pred = np.zeros_like(t)
        pred[np.argsort(s, kind="stable")[len(s) - k:]] = True
        union = (pred | t).sum()
        out.append(float((pred & t).sum() / union) if union else 0.0)
        sizes.append(len(s))
    a, n = np.asarray(out), np.asarray(sizes)
    mean = (lambda m: float(a[m].mean()) if m.any() else float("nan"))
    return {"avg_jaccard_score": float(a.mean()), "jaccard_score_5-6": mean(n <= 6),
            "jaccard_score_10-12": mean(n >= 10)}


def classification_metrics(task: SuiteTask, logits: Any, labels: Any,
                           metadata: Optional[Any] = None, exclude: Sequence[int] = ()
                           ) -> Dict[str, Any]:
    """``acc1``, ``acc5`` (None below 5 classes), ``mean_per_class_recall`` and the task's main
    metric (``main``), with the worst group's figures where the task has one."""
    s = np.asarray(logits, float)
    y = np.asarray(labels).astype(int)
    pred = np.argmax(s, axis=1)
    out: Dict[str, Any] = {"acc1": float(topk_correct(s, y, 1).mean()),
                           "acc5": float(topk_correct(s, y, 5).mean()) if s.shape[1] >= 5 else None,
                           "mean_per_class_recall": mean_per_class_recall(y, pred), "n": int(len(y))}
    if task.metric == "F1-macro_all":
        out[task.metric] = macro_f1(y, pred)
    elif task.key in GROUP_COLUMN:
        if metadata is None:
            raise ValueError(f"{task.column}: its main metric {task.metric} needs the shards' "
                             f"per-sample metadata (<key>.npy)")
        groups = np.asarray(metadata)[:, GROUP_COLUMN[task.key]]
        correct = topk_correct(s, y, 5 if task.metric == "acc_top5_wg" else 1)
        wg = worst_group(correct, groups, exclude)
        out.update({task.metric: wg["worst"], "per_group": wg["per_group"], "counts": wg["counts"]})
    out["main"] = out[task.metric]
    return out


def suite_average(scores: Mapping[str, Optional[float]]) -> Dict[str, Any]:
    """The unweighted mean over the tasks with a score (by table column), ``partial`` when any of
    the 38 is missing, and ``missing`` in the table's order."""
    unknown = [c for c in scores if c not in {t.column for t in TASKS}]
    if unknown:
        raise ValueError(f"suite_average: {unknown} are not task columns of open_clip's table")
    present = {c: float(v) for c, v in scores.items() if v is not None}
    missing = [t.column for t in TASKS if t.column not in present]
    return {"average": float(np.mean(list(present.values()))) if present else float("nan"),
            "n_tasks": len(present), "partial": bool(missing), "missing": missing}


def compare_with_published(scores: Mapping[str, Optional[float]], published: Any
                           ) -> Dict[str, Any]:
    """Per task, ours beside a :class:`~unirepclip.data.published.PublishedResult`'s (a
    published 0 is ``"failed"``), and the two like-for-like averages over the tasks both have
    (failed upstream left out); ``published_average`` as published (failed counted as 0)."""
    from unirepclip.data.published import FAILED

    rows, ours_both, theirs_both = [], [], []
    for t in TASKS:
        mine = scores.get(t.column)
        theirs = published.task(t.column)
        shown = FAILED if theirs == 0 else theirs
        rows.append({"task": t.column, "ours": mine, "published": shown})
        if mine is not None and shown != FAILED:
            ours_both.append(float(mine))
            theirs_both.append(float(theirs))
    n = len(ours_both)
    return {"label": published.label, "rows": rows, "n_both": n,
            "ours_like_for_like": float(np.mean(ours_both)) if n else float("nan"),
            "published_like_for_like": float(np.mean(theirs_both)) if n else float("nan"),
            "failed_upstream": [r["task"] for r in rows if r["published"] == FAILED],
            "published_average": published.average}


def _classifier(model: Any, tokenizer: Callable, wds: Any, device: Any) -> Any:
    from unirepclip.data.wds import fill_template
    from unirepclip.eval.zeroshot import build_classifier

    if not wds.classes or not wds.templates:
        raise ValueError(f"{wds.folder}: classnames.txt and zeroshot_classification_templates.txt "
                         f"are needed for zero-shot classification")
    templates = [(lambda c, t=t: fill_template(t, c)) for t in wds.templates]
    return build_classifier(model, tokenizer, wds.classes, templates, device=device)


def _encode(model: Any, images: List[Any], transform: Callable, batch_size: int, device: Any,
            precision: str) -> np.ndarray:
    import torch

    from unirepclip.eval.zeroshot import encode_images

    loader = (torch.stack([transform(im) for im in images[i:i + batch_size]])
              for i in range(0, len(images), batch_size))
    return encode_images(model, loader, device=device, precision=precision, progress=False)[0]


def _run_task(task: SuiteTask, wds: Any, model: Any, tokenizer: Callable, transform: Callable,
              batch_size: int, device: Any, precision: str) -> Dict[str, Any]:
    samples = list(wds.samples())
    feats = _encode(model, [s["image"] for s in samples], transform, batch_size, device, precision)
    if task.kind == "retrieval":
        from unirepclip.features.extract import extract_text_features

        captions = [(i, c) for i, s in enumerate(samples) for c in s["txt"]]
        text = extract_text_features(model, tokenizer, [c for _, c in captions],
                                     batch_size=batch_size, device=device, precision=precision,
                                     progress=False).embeddings
        out = retrieval_mean_recall_at_1(feats, text, [i for i, _ in captions])
        return dict(out, main=out["mean_recall@1"], n=len(samples))
    classifier = _classifier(model, tokenizer, wds, device)
    logits = feats @ np.asarray(classifier.float().cpu())
    metadata = (np.stack([s["npy"] for s in samples]) if samples and "npy" in samples[0]
                else None)
    return classification_metrics(task, logits, [s["cls"] for s in samples], metadata)


def run_suite(model: Any, tokenizer: Callable, root: str, *, batch_size: int = 64,
              device: Union[str, Any] = "cpu", precision: str = "fp32",
              transform: Optional[Callable] = None) -> Dict[str, Any]:
    """Every task whose folder is under ``root`` (:func:`unirepclip.data.suite.find_tasks`), by
    zero-shot classification (the folder's class names and templates) or retrieval:
    ``{"scores": {column: main metric}, "details": {column: figures}, "average": ...}``."""
    from unirepclip.data.sets import val_transform
    from unirepclip.data.suite import find_tasks
    from unirepclip.data.wds import read_wds

    present, _ = find_tasks(root)
    transform = transform or val_transform(model)
    details = {t.column: _run_task(t, read_wds(f"{root}/{t.folder}"), model, tokenizer,
                                   transform, batch_size, device, precision) for t in present}
    scores = {c: d["main"] for c, d in details.items()}
    return {"scores": scores, "details": details, "average": suite_average(scores),
            "metrics": {t.column: t.metric for t in present}}


def suite_records(prefix: str, report: Mapping[str, Any]) -> Dict[str, Any]:
    """``{prefix}.tasks.<task key>.main|metric|n``, ``{prefix}.average|n_tasks|partial|missing``."""
    by_column = {t.column: t for t in TASKS}
    out: Dict[str, Any] = {}
    for column, d in report["details"].items():
        key = by_column[column].key.replace("/", "_")
        out.update({f"{prefix}.tasks.{key}.main": d["main"],
                    f"{prefix}.tasks.{key}.metric": by_column[column].metric,
                    f"{prefix}.tasks.{key}.n": d["n"]})
    out.update({f"{prefix}.{k}": v for k, v in report["average"].items()})
    return out


def suite_table(report: Mapping[str, Any]) -> str:
    """A Markdown table of the measured tasks (main metric in %) and the average's line."""
    lines = ["| task | main metric | value |", "|---|---|---|"]
    for column, value in report["scores"].items():
        lines.append(f"| {column} | {report['metrics'][column]} | {100 * value:.1f} |")
    a = report["average"]
    note = (f"partial: {a['n_tasks']} of {len(TASKS)} tasks; missing {', '.join(a['missing'])}"
            if a["partial"] else f"all {len(TASKS)} tasks")
    return "\n".join(lines) + f"\n\nAverage {100 * a['average']:.1f} ({note})."


def peer_records(prefix: str, comparison: Mapping[str, Any]) -> Dict[str, Any]:
    """``{prefix}.<peer>.n_both|ours_like_for_like|published_like_for_like|failed_upstream|
    published_average`` of :func:`compare_with_published` (``<peer>``: its label with every
    character other than a letter, digit or ``-`` as ``_``)."""
    import re

    key = re.sub(r"[^A-Za-z0-9-]+", "_", comparison["label"]).strip("_")
    return {f"{prefix}.{key}.{k}": comparison[k] for k in
            ("n_both", "ours_like_for_like", "published_like_for_like", "failed_upstream",
             "published_average")}


def peer_table(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: per peer, the tasks both have, both like-for-like averages (%), the
    tasks that failed upstream and the average as published (failed counted as 0)."""
    lines = ["| peer | tasks both have | this model | peer, same tasks | failed upstream "
             "| peer, published average |", "|---|---|---|---|---|---|"]
    for c in comparisons:
        pct = (lambda v: "n/a" if v != v else f"{100 * v:.1f}")
        lines.append(f"| {c['label']} | {c['n_both']} | {pct(c['ours_like_for_like'])} | "
                     f"{pct(c['published_like_for_like'])} | "
                     f"{', '.join(c['failed_upstream']) or 'none'} | "
                     f"{100 * c['published_average']:.1f} |")
    return "\n".join(lines)
