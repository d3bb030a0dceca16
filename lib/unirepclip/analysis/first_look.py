"""A first look at a model's zero-shot predictions on a few images (notebook 01, section 4).

The scoring itself is :mod:`unirepclip.eval.zeroshot`'s; this module turns it into what the notebook
shows (a caption per image) and records (the share of images on which every labelled task is
right).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

from unirepclip.eval import zeroshot

__all__ = ["first_look"]


def first_look(tasks: Mapping[str, Any], classifiers: Mapping[str, Any], embeddings: Any,
               rows: Sequence[int]) -> Dict[str, Any]:
    """Zero-shot predictions of every task on a few images.

    ``tasks`` are an evaluation set's tasks (name -> ``ZeroShotTask``), ``classifiers`` their
    prompt classifiers (:func:`unirepclip.eval.zeroshot.build_task_classifiers`), ``embeddings``
    the images' (n, D) features and ``rows`` their dataset rows (for the labels).

    Returns ``{"captions": one per image, "correct": True / False / None per image (see
    ``prediction_captions``), "results": {"first_look.all_tasks_right": share}}``; the share is
    over the images with a labelled task, and ``results`` is empty when there is none
    (photographs scored against a vocabulary have no right answer).
    """
    missing = [name for name in tasks if name not in classifiers]
    if missing:
        raise KeyError(f"first_look: no classifier for task(s) {missing}")
    logits = {name: zeroshot.zeroshot_logits(embeddings, classifiers[name].ensemble)
              for name in tasks}
    captions, correct = zeroshot.prediction_captions(tasks, logits, rows)
    judged = [bool(c) for c in correct if c is not None]
    results = {"first_look.all_tasks_right": sum(judged) / len(judged)} if judged else {}
    return {"captions": captions, "correct": correct, "results": results}
