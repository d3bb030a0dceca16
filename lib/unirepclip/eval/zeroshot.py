"""Zero-shot classification with prompt ensembles (Radford et al. 2021, section 3.1.4).

The classifier is built by open_clip's ``build_zero_shot_classifier``: for each class every
template is filled with the class name, encoded, L2-normalized, averaged over templates and
re-normalized, giving a (D, C) matrix. Logits are ``100 * image_features @ classifier`` (CLIP's
learned temperature saturates at 100, and open_clip's evaluation uses this constant), so softmax
confidences match open_clip's.

One template at a time. Comparing the ensemble with each template alone needs the same prompt
embeddings once more per template; encoding all ``T x C`` prompts once and slicing
(:func:`build_classifiers`) gives every single-template classifier for the price of the ensemble
(1000 classes x 80 templates through a 354M-parameter text tower is the expensive part of an
ImageNet evaluation), and equals open_clip's builder template by template.

``evaluate`` (CLIP_benchmark's ``evaluate -> dict``) works from precomputed, cached image features
as well as from a loader, so the notebooks encode a dataset once and score many prompt sets,
resolutions and tasks. The workbook's summaries (:func:`summary`, :func:`template_summary`,
:func:`resolution_sweep`) return the plain dicts notebook 02 records. Metrics follow
CLIP_benchmark (see :mod:`unirepclip.eval.metrics`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from tqdm.auto import tqdm

from unirepclip.data.sets import ZeroShotTask, classification_set, val_transform
from unirepclip.eval.metrics import (ArrayLike, classification_report, ranks_of_first_positive,
                                     to_numpy)
from unirepclip.eval.uncertainty import mean_per_class_recall_interval, proportion_interval
from unirepclip.features.extract import extract_image_features, extract_text_features
from unirepclip.utils import autocast, eval_mode, l2_normalize, softmax

Template = Union[str, Callable[[str], str]]

__all__ = [
    # prompts
    "LOGIT_SCALE", "prepare_templates", "prompt_texts", "template_label",
    # classifiers
    "build_classifier", "classifiers_from_embeddings", "PromptClassifiers", "build_classifiers",
    "build_task_classifiers",
    # scoring
    "encode_images", "zeroshot_logits", "confidence", "most_confident_mistakes", "top1_accuracy",
    "evaluate", "evaluate_tasks",
    # what notebook 02 records and shows
    "item_outcomes", "intervals", "outcome_arrays", "summary", "template_accuracies", "template_summary", "template_summaries", "resolution_sweep",
    "prediction_captions",
]

LOGIT_SCALE = 100.0


def _fill(template: str) -> Callable[[str], str]:
    def fill(classname: str) -> str:
        return template.format(classname)
    fill.template = template  # keeps the text readable when a classifier is inspected
    return fill


def prepare_templates(templates: Sequence[Template], template_index: Optional[int] = None
                      ) -> List[Callable[[str], str]]:
    """Validate templates and return them as callables (a mix of both kinds is allowed).

    Args:
        templates: format strings with one ``{}`` or callables ``classname -> text``.
        template_index: None for the whole ensemble; an int to keep only that template (the
            single-template baseline a prompt ensemble is compared with).
    """
    if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence):
        raise TypeError("templates must be a sequence of format strings or callables, got "
                        f"{type(templates).__name__}")
    if len(templates) == 0:
        raise ValueError("templates is empty")
    out = []
    for i, t in enumerate(templates):
        if isinstance(t, str):
            # a string without exactly one '{}' would give every class the same prompt
            try:
                probe = t.format("\0")
            except (IndexError, KeyError, ValueError) as e:
                raise ValueError(f"templates[{i}] = {t!r} is not a format string with one "
                                 f"'{{}}' ({e})") from e
            if probe.count("\0") != 1:
                raise ValueError(f"templates[{i}] = {t!r} must contain the class-name slot "
                                 "'{}' exactly once")
            out.append(_fill(t))
        elif callable(t):
            out.append(t)
        else:
            raise TypeError(f"templates[{i}] must be a str or a callable, got {type(t).__name__}")
    if template_index is not None:
        if not -len(out) <= template_index < len(out):
            raise ValueError(f"template_index {template_index} is out of range for "
                             f"{len(out)} templates")
        out = [out[template_index]]
    return out


def prompt_texts(classnames: Sequence[str], templates: Sequence[Template]) -> List[str]:
    """Every prompt, template-major: ``texts[t * C + c] = templates[t](classnames[c])``."""
    if isinstance(classnames, str) or not classnames:
        raise ValueError("classnames must be a non-empty sequence of strings")
    fns = prepare_templates(templates)
    return [fn(c) for fn in fns for c in classnames]


def template_label(template: Template) -> str:
    """A readable form of a template: the format string, or what a callable makes of ``{}``."""
    if isinstance(template, str):
        return template
    text = getattr(template, "template", None)
    if isinstance(text, str):
        return text
    return str(template("{}"))


# ------------------------------------------------------------------------------------------------
# Classifiers


def build_classifier(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                     templates: Sequence[Template], *, template_index: Optional[int] = None,
                     device: Union[str, torch.device] = "cpu",
                     num_classes_per_batch: Optional[int] = 10, progress: bool = False
                     ) -> torch.Tensor:
    """(D, C) zero-shot weights from open_clip's ``build_zero_shot_classifier``.

    ``template_index`` selects one template instead of the ensemble (see
    :func:`prepare_templates`). The model runs in eval mode (dropout would make the weights
    random); each submodule's own mode is restored afterwards.
    """
    if isinstance(classnames, str) or not isinstance(classnames, Sequence) or not classnames:
        raise ValueError("classnames must be a non-empty sequence of strings")
    bad = [i for i, c in enumerate(classnames) if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"classnames[{bad[0]}] = {classnames[bad[0]]!r} is not a non-empty string")
    fns = prepare_templates(templates, template_index)
    with eval_mode(model):
        return build_zero_shot_classifier(model, tokenizer, list(classnames), fns,
                                          num_classes_per_batch=num_classes_per_batch,
                                          device=device, use_tqdm=progress)


def classifiers_from_embeddings(embeddings: Any, n_templates: int, n_classes: int
                                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ensemble (D, C), singles (T, D, C))`` zero-shot classifiers from the embeddings of
    :func:`prompt_texts` (rows template-major, normalized here in float32).

    ``singles[t]`` is the classifier of template ``t`` alone; ``ensemble`` averages the normalized
    prompt embeddings over templates and re-normalizes, as open_clip does.
    """
    emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings)
                          else embeddings).float()
    if emb.ndim != 2 or emb.shape[0] != n_templates * n_classes:
        raise ValueError(f"embeddings must be ({n_templates} templates x {n_classes} classes, D) "
                         f"= ({n_templates * n_classes}, D) rows, got shape {tuple(emb.shape)}")
    # torch's norm, as open_clip's builder uses: numpy's (utils.l2_normalize) sums in another
    # order and moves a few float32 weights by one ulp, which the recorded figures would show
    norm = emb.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("a prompt embedding is all zeros and cannot be normalized")
    emb = (emb / norm).reshape(n_templates, n_classes, -1)
    singles = emb.transpose(1, 2).contiguous()
    mean = emb.mean(0)
    ensemble = (mean / mean.norm(dim=1, keepdim=True)).T.contiguous()
    return ensemble, singles


@dataclasses.dataclass
class PromptClassifiers:
    """Zero-shot classifiers of one task: ``ensemble`` (D, C), ``singles`` (T, D, C) and the
    readable ``templates`` (T) and ``classnames`` (C) they were built from."""

    ensemble: torch.Tensor
    singles: torch.Tensor
    templates: List[str]
    classnames: List[str]

    @property
    def n_templates(self) -> int:
        return len(self.templates)


def build_classifiers(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                      templates: Sequence[Template], *, max_templates: int = 0,
                      batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                      precision: str = "fp32", cache: Optional[Any] = None,
                      model_ident: Optional[Dict[str, Any]] = None,
                      progress: bool = False) -> PromptClassifiers:
    """Encode every prompt of a task once (through
    :func:`unirepclip.features.extract_text_features`, so a ``cache`` can keep them) and return the
    ensemble and each single-template classifier.

    ``max_templates > 0`` keeps only the first that many templates (a count to shrink a dry run;
    ``0`` keeps all).
    """
    if int(max_templates) != max_templates or max_templates < 0:
        raise ValueError(f"max_templates={max_templates!r}: expected an integer >= 0 (0 = all)")
    templates = list(templates)[:max_templates] if max_templates else list(templates)
    texts = prompt_texts(classnames, templates)
    feats = extract_text_features(model, tokenizer, texts, batch_size=batch_size, device=device,
                                  precision=precision, cache=cache, model_ident=model_ident,
                                  progress=progress)
    ensemble, singles = classifiers_from_embeddings(feats.embeddings, len(templates),
                                                    len(classnames))
    return PromptClassifiers(ensemble, singles, [template_label(t) for t in templates],
                             list(classnames))


def build_task_classifiers(model: torch.nn.Module, tokenizer: Callable,
                           tasks: Mapping[str, ZeroShotTask], *, max_templates: int = 0,
                           **text_kw: Any) -> Dict[str, PromptClassifiers]:
    """:func:`build_classifiers` for every task of an evaluation set (``EvalSet.tasks``), by name;
    ``text_kw`` go to :func:`unirepclip.features.extract_text_features`."""
    return {name: build_classifiers(model, tokenizer, task.classnames, task.templates,
                                    max_templates=max_templates, **text_kw)
            for name, task in tasks.items()}


# ------------------------------------------------------------------------------------------------
# Scoring


def _split_batch(batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"loader yields dicts without an 'image' key (keys: {list(batch)})")
        return batch["image"], batch.get("label")
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(f"loader yields {type(batch).__name__}; expected a tensor, an "
                    "(images, labels) pair or a dict with 'image' and 'label'")


@torch.no_grad()
def encode_images(model: torch.nn.Module, loader: Iterable, *,
                  device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                  progress: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Normalized image embeddings (N, D) float32, and the labels when the loader yields them.

    ``loader`` yields image tensors, ``(images, labels, ...)`` or ``{"image", "label"}`` dicts.
    ``precision="bf16"`` runs the forward under bf16 autocast (:func:`unirepclip.utils.autocast`).
    The model runs in eval mode; each submodule's own mode is restored afterwards.
    """
    device = torch.device(device)
    feats, labels, have_labels = [], [], None
    with eval_mode(model):
        for batch in tqdm(loader, desc="encode images", disable=not progress, leave=False):
            x, y = _split_batch(batch)
            if have_labels is None:
                have_labels = y is not None
            elif have_labels != (y is not None):
                raise ValueError("loader yields labels for some batches and not for others")
            with autocast(device, precision):
                f = model.encode_image(x.to(device), normalize=True)
            feats.append(f.float().cpu())
            if y is not None:
                labels.append(torch.as_tensor(y).cpu())
    if not feats:
        raise ValueError("loader yielded no batches")
    return (torch.cat(feats).numpy(),
            torch.cat(labels).numpy().astype(np.int64) if have_labels else None)


def zeroshot_logits(image_features: ArrayLike, classifier: ArrayLike,
                    logit_scale: float = LOGIT_SCALE, normalize: bool = True) -> np.ndarray:
    """``logit_scale * img @ classifier`` as float32 (N, C); rows of ``img`` L2-normalized first
    unless ``normalize=False`` (cached features usually are; renormalizing is harmless)."""
    img = to_numpy(image_features, "image_features").astype(np.float32, copy=False)
    clf = to_numpy(classifier, "classifier").astype(np.float32, copy=False)
    if img.ndim != 2 or clf.ndim != 2:
        raise ValueError(f"image_features (N, D) and classifier (D, C) must be 2-D, got shapes "
                         f"{img.shape} and {clf.shape}")
    if img.shape[1] != clf.shape[0]:
        raise ValueError(f"image_features have dim {img.shape[1]} but the classifier has "
                         f"{clf.shape[0]} rows; expected a (D, C) classifier")
    if normalize:
        img = l2_normalize(img, "image_features")
    return logit_scale * (img @ clf)


def confidence(logits: ArrayLike) -> np.ndarray:
    """(N,) float32 softmax probability of each row's best class."""
    return softmax(to_numpy(logits, "logits"), axis=1).max(axis=1).astype(np.float32)


def most_confident_mistakes(logits: ArrayLike, labels: ArrayLike, n: int = 16) -> np.ndarray:
    """Indices of up to ``n`` wrong predictions, most confident (softmax max) first; ties keep
    sample order."""
    s = to_numpy(logits, "logits")
    y = to_numpy(labels, "labels")
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"logits (N, C) and labels (N,) disagree: {s.shape} vs {y.shape}")
    wrong = np.flatnonzero(s.argmax(axis=1) != y)
    conf = confidence(s)[wrong]
    return wrong[np.argsort(-conf, kind="stable")[:max(int(n), 0)]]


@torch.no_grad()
def top1_accuracy(image_features: Any, labels: Any, classifiers: torch.Tensor, *,
                  device: Union[str, torch.device] = "cpu", chunk: int = 8192) -> np.ndarray:
    """Top-1 accuracy of each classifier in ``classifiers`` ((D, C), or (T, D, C) for T of them)
    on normalized-or-not ``image_features`` (N, D), computed in chunks on ``device``.

    Ties go to the lower class index (``argmax``), as in :mod:`unirepclip.eval.metrics`. Returns
    a float64 array of shape (T,) (a 0-d array for one (D, C) classifier).
    """
    clf = torch.as_tensor(classifiers).float().to(device)
    single = clf.ndim == 2
    if single:
        clf = clf[None]
    if clf.ndim != 3:
        raise ValueError(f"classifiers must be (D, C) or (T, D, C), got {tuple(clf.shape)}")
    feats = torch.as_tensor(np.asarray(image_features) if not torch.is_tensor(image_features)
                            else image_features).float()
    y = torch.as_tensor(np.asarray(labels)).long()
    if feats.ndim != 2 or feats.shape[1] != clf.shape[1] or len(y) != len(feats):
        raise ValueError(f"image_features {tuple(feats.shape)}, labels {tuple(y.shape)} and "
                         f"classifiers {tuple(clf.shape)} do not fit (N, D), (N,), (T, D, C)")
    correct = torch.zeros(clf.shape[0], dtype=torch.float64)
    for start in range(0, len(feats), chunk):
        f = feats[start:start + chunk].to(device)
        pred = torch.einsum("nd,tdc->tnc", f, clf).argmax(-1).cpu()
        correct += (pred == y[start:start + chunk]).sum(1).double()
    acc = (correct / max(len(feats), 1)).numpy()
    return acc[0] if single else acc


def evaluate(model: Optional[torch.nn.Module], tokenizer: Optional[Callable],
             image_features_or_loader: Union[ArrayLike, Iterable],
             labels: Optional[ArrayLike] = None, classnames: Optional[Sequence[str]] = None,
             templates: Optional[Sequence[Template]] = None, *,
             classifier: Optional[ArrayLike] = None, template_index: Optional[int] = None,
             ks: Sequence[int] = (1, 5), n_mistakes: int = 16,
             logit_scale: float = LOGIT_SCALE, device: Union[str, torch.device] = "cpu",
             precision: str = "fp32", progress: bool = False
             ) -> Dict[str, Any]:
    """Zero-shot classification metrics.

    Args:
        model, tokenizer: the CLIP model and its tokenizer; only needed to build the classifier
            (when ``classifier`` is None) or to encode images (when a loader is given).
        image_features_or_loader: (N, D) image embeddings (NumPy or torch; cached features) or
            an iterable of batches (see :func:`encode_images`).
        labels: (N,) class indices; may be omitted when the loader yields them.
        classnames, templates: what the classifier is built from (see :func:`build_classifier`).
        classifier: a prebuilt (D, C) classifier; skips building.
        template_index: score with one template instead of the ensemble.
        ks: top-k cut-offs (``acc{k}``; k clipped to the number of classes).
        n_mistakes: how many of the most confident mistakes to return.

    Returns:
        A dict with ``acc1``, ``acc5`` (per ``ks``), ``mean_per_class_recall`` (floats in [0, 1]),
        ``per_class_accuracy`` ((C,) array, NaN for classes without samples),
        ``confusion_matrix`` ((C, C), rows = truth), ``logits`` ((N, C) float32),
        ``predictions`` ((N,)), ``confidence`` ((N,) softmax probability of the prediction),
        ``most_confident_mistakes`` (indices), ``classifier`` ((D, C) tensor), ``classnames``,
        ``n_templates`` and ``n_samples``.
    """
    feats = image_features_or_loader
    is_features = isinstance(feats, (np.ndarray, torch.Tensor)) and feats.ndim == 2
    if not is_features:
        if model is None:
            raise ValueError("model is needed to encode images from a loader")
        if isinstance(feats, (np.ndarray, torch.Tensor)):
            raise ValueError("image_features_or_loader: an array must be (N, D) features, got "
                             f"shape {tuple(feats.shape)}; pass images through a loader")
        feats, loader_labels = encode_images(model, feats, device=device, precision=precision,
                                             progress=progress)
        if labels is None:
            labels = loader_labels
    if labels is None:
        raise ValueError("labels are required (the loader did not yield any)")

    n_templates = None
    if classifier is None:
        if model is None or tokenizer is None or classnames is None or templates is None:
            raise ValueError("without a prebuilt classifier, model, tokenizer, classnames and "
                             "templates are all required")
        n_templates = 1 if template_index is not None else len(templates)
        classifier = build_classifier(model, tokenizer, classnames, templates,
                                      template_index=template_index, device=device,
                                      progress=progress)
    clf = classifier if isinstance(classifier, torch.Tensor) else torch.as_tensor(classifier)
    if classnames is not None and len(classnames) != clf.shape[1]:
        raise ValueError(f"classnames has {len(classnames)} entries but the classifier has "
                         f"{clf.shape[1]} columns")

    logits = zeroshot_logits(feats, clf, logit_scale=logit_scale)
    out: Dict[str, Any] = classification_report(logits, labels, ks)
    y = to_numpy(labels, "labels").astype(np.int64)
    out["logits"] = logits
    out["confidence"] = confidence(logits)
    out["most_confident_mistakes"] = most_confident_mistakes(logits, y, n_mistakes)
    out["classifier"] = clf
    out["classnames"] = list(classnames) if classnames is not None else None
    out["n_templates"] = n_templates
    out["n_samples"] = int(len(y))
    return out


def _task_labels(task: ZeroShotTask, rows: ArrayLike) -> np.ndarray:
    if task.labels is None:
        raise ValueError(f"task {task.name!r} has no labels to score against")
    return np.asarray(task.labels)[np.asarray(rows)]


def evaluate_tasks(image_features: ArrayLike, rows: ArrayLike, tasks: Mapping[str, ZeroShotTask],
                   classifiers: Mapping[str, PromptClassifiers], *, n_mistakes: int = 16
                   ) -> Dict[str, Dict[str, Any]]:
    """:func:`evaluate` of every task's prompt ensemble on the same image features, by task name.

    ``rows`` are the dataset rows of the feature rows (a ``FeatureSet``'s ``indices``: unreadable
    images are missing), which pick each task's labels."""
    missing = [name for name in tasks if name not in classifiers]
    if missing:
        raise KeyError(f"evaluate_tasks: no classifier for task(s) {missing}")
    return {name: evaluate(None, None, image_features, _task_labels(task, rows), task.classnames,
                           classifier=classifiers[name].ensemble, n_mistakes=n_mistakes)
            for name, task in tasks.items()}


# ------------------------------------------------------------------------------------------------
# What notebook 02 records: plain dicts, each from one function

SUMMARY_METRICS = ("acc1", "acc5", "mean_per_class_recall")


def item_outcomes(reports: Mapping[str, Mapping[str, Any]], tasks: Mapping[str, ZeroShotTask],
                  rows: ArrayLike) -> Dict[str, Dict[str, np.ndarray]]:
    """Per image, in feature-row order, for every task of :func:`evaluate_tasks`'s ``reports``
    (``rows`` as there): ``labels`` and ``predictions`` (class indices), ``top1`` and ``top5``
    (booleans: the label ranks first / within the first five, by the tie rule of ``acc1`` and
    ``acc5``, whose means they are). What intervals and paired tests resample."""
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for name, r in reports.items():
        y = _task_labels(tasks[name], rows).astype(np.int64)
        scores = to_numpy(r["logits"], "logits")
        mask = np.zeros(scores.shape, dtype=bool)
        mask[np.arange(len(y)), y] = True
        rank = ranks_of_first_positive(scores, mask)
        out[name] = {"labels": y, "predictions": np.asarray(r["predictions"], dtype=np.int64),
                     "top1": rank < 1, "top5": rank < min(5, scores.shape[1])}
    return out


def intervals(outcomes: Mapping[str, Mapping[str, np.ndarray]], *, seed: int = 0,
              confidence: float = 0.95) -> Dict[str, Dict[str, List[float]]]:
    """The interval of every :data:`SUMMARY_METRICS` figure of every task, as ``[low, high]``
    keyed ``<metric>_ci``: Wilson's for ``acc1`` and ``acc5`` (proportions of images), the
    seeded BCa bootstrap over the images for ``mean_per_class_recall``
    (:mod:`unirepclip.eval.uncertainty`). ``outcomes``: :func:`item_outcomes`."""
    out: Dict[str, Dict[str, List[float]]] = {}
    for name, o in outcomes.items():
        ivs = {"acc1": proportion_interval(o["top1"], confidence),
               "acc5": proportion_interval(o["top5"], confidence),
               "mean_per_class_recall": mean_per_class_recall_interval(
                   o["labels"], o["predictions"], seed=seed, confidence=confidence)}
        out[name] = {f"{k}_ci": [iv.low, iv.high] for k, iv in ivs.items()}
    return out


def outcome_arrays(outcomes: Mapping[str, Mapping[str, np.ndarray]], main_task: str,
                   rows: ArrayLike) -> Dict[str, np.ndarray]:
    """:func:`item_outcomes` under the result keys they explain, for
    :func:`unirepclip.eval.uncertainty.save_outcomes` (paired tests between runs):
    ``zeroshot.acc1`` / ``acc5`` (the main task) and ``zeroshot.tasks.<task>.acc1`` / ``acc5``
    (per image, right or not), ``<key>:labels`` / ``<key>:predictions`` for each
    ``mean_per_class_recall``, and ``zeroshot:items`` (the dataset rows scored)."""
    out: Dict[str, np.ndarray] = {"zeroshot:items": np.asarray(rows, dtype=np.int64)}
    for name, o in outcomes.items():
        for prefix in (["zeroshot", f"zeroshot.tasks.{name}"] if name == main_task
                       else [f"zeroshot.tasks.{name}"]):
            out[f"{prefix}.acc1"], out[f"{prefix}.acc5"] = o["top1"], o["top5"]
            out[f"{prefix}.mean_per_class_recall:labels"] = o["labels"]
            out[f"{prefix}.mean_per_class_recall:predictions"] = o["predictions"]
    return out


def summary(reports: Mapping[str, Mapping[str, Any]], main_task: str, n_images: int,
            cis: Optional[Mapping[str, Mapping[str, List[float]]]] = None) -> Dict[str, Any]:
    """The ``zeroshot`` record: the main task's ``acc1``, ``acc5`` and ``mean_per_class_recall``,
    ``main_task``, ``n_images``, and ``tasks.<name>`` with those three and ``per_class_accuracy``
    (a list in class order, ``None`` for a class without images: JSON has no NaN). With ``cis``
    (:func:`intervals`), each of the three figures has its ``<metric>_ci`` beside it.

    ``reports`` are :func:`evaluate`'s dicts by task name (:func:`evaluate_tasks`)."""
    if main_task not in reports:
        raise KeyError(f"summary: main_task {main_task!r} is not among the tasks {list(reports)}")
    cis = cis or {}
    tasks: Dict[str, Dict[str, Any]] = {}
    for name, r in reports.items():
        tasks[name] = {k: r[k] for k in SUMMARY_METRICS}
        tasks[name].update(cis.get(name, {}))
        tasks[name]["per_class_accuracy"] = [None if np.isnan(a) else float(a)
                                             for a in r["per_class_accuracy"]]
    main = {k: reports[main_task][k] for k in SUMMARY_METRICS}
    main.update(cis.get(main_task, {}))
    return {**main, "main_task": main_task, "n_images": int(n_images), "tasks": tasks}


def template_accuracies(image_features: ArrayLike, rows: ArrayLike,
                        tasks: Mapping[str, ZeroShotTask],
                        classifiers: Mapping[str, PromptClassifiers], *,
                        device: Union[str, torch.device] = "cpu") -> Dict[str, np.ndarray]:
    """Each task's (T,) top-1 accuracy of every template alone (:func:`top1_accuracy` of
    ``classifiers[name].singles``), by task name; ``rows`` as in :func:`evaluate_tasks`."""
    return {name: top1_accuracy(image_features, _task_labels(task, rows),
                                classifiers[name].singles, device=device)
            for name, task in tasks.items()}


def template_summary(single_acc1: ArrayLike, templates: Sequence[str], ensemble_acc1: float
                     ) -> Dict[str, Any]:
    """One template alone vs the ensemble: ``ensemble_acc1``, the mean, best (max) and worst
    (min) of the single-template accuracies, the ``best_template`` (the first of equals) and
    ``n_templates``."""
    acc = np.asarray(single_acc1, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0 or acc.size != len(templates):
        raise ValueError(f"template_summary: single_acc1 has shape {acc.shape} but there are "
                         f"{len(templates)} templates; expected one accuracy per template")
    return {"ensemble_acc1": float(ensemble_acc1), "single_acc1_mean": float(acc.mean()),
            "single_acc1_best": float(acc.max()), "single_acc1_worst": float(acc.min()),
            "best_template": str(templates[int(acc.argmax())]), "n_templates": len(templates)}


def template_summaries(single_acc1: Mapping[str, ArrayLike],
                       classifiers: Mapping[str, PromptClassifiers],
                       reports: Mapping[str, Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """:func:`template_summary` of every task (the ``zeroshot.templates`` record): the accuracies
    of :func:`template_accuracies`, the templates of ``classifiers`` and each ensemble's ``acc1``
    from ``reports``."""
    return {name: template_summary(acc, classifiers[name].templates, reports[name]["acc1"])
            for name, acc in single_acc1.items()}


def resolution_sweep(model: torch.nn.Module, classifiers: Mapping[str, Any], dataset: str,
                     sizes: Sequence[int], *, n_images: int, seed: int = 0, data_dir: str = "",
                     classnames_file: str = "", **extract_kw: Any) -> Dict[str, Dict[str, float]]:
    """Top-1 of each task's ensemble classifier with the images at each of ``sizes`` px (the
    ``zeroshot.resolution`` record): ``{task: {"<px>": acc1}}``, sizes in the order given.

    At each size the dataset (:func:`unirepclip.data.sets.classification_set`) is rendered or
    read at that size and encoded through the model's evaluation preprocessing at that size.
    ``classifiers[name]`` is a :class:`PromptClassifiers` (its ensemble is used) or a (D, C)
    classifier; ``extract_kw`` go to :func:`unirepclip.features.extract_image_features`.
    """
    sizes = list(sizes)
    if not sizes:
        raise ValueError("resolution_sweep: sizes is empty")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"resolution_sweep: sizes {sizes} repeat a size")
    device = extract_kw.get("device", "cpu")
    out: Dict[str, Dict[str, float]] = {}
    for size in sizes:
        at_size = classification_set(dataset, n_images=n_images, image_size=size, seed=seed,
                                     data_dir=data_dir, classnames_file=classnames_file)
        fs = extract_image_features(model, at_size.dataset,
                                    transform=val_transform(model, size), **extract_kw)
        for name, task in at_size.tasks.items():
            if name not in classifiers:
                raise KeyError(f"resolution_sweep: no classifier for task {name!r}")
            clf = classifiers[name]
            clf = clf.ensemble if isinstance(clf, PromptClassifiers) else clf
            acc = top1_accuracy(fs.embeddings, _task_labels(task, fs.indices), clf, device=device)
            out.setdefault(name, {})[str(size)] = float(acc)
    return out


def prediction_captions(tasks: Mapping[str, ZeroShotTask], logits: Mapping[str, Any],
                        rows: Sequence[int], *, top_k_unlabelled: int = 3
                        ) -> Tuple[List[str], List[Optional[bool]]]:
    """Captions for an image grid of predictions, and whether each image was right.

    ``logits[name]`` are the (n, C) zero-shot logits of task ``name`` for the images shown, whose
    dataset rows are ``rows`` (for the true labels). Each task with labels gives a line with its
    prediction and confidence (``"heart 97%"``, ``"red 99%"``), followed, when one of them is
    wrong, by the truth (``"true: star, red"``); a task without labels adds its
    ``top_k_unlabelled`` best classes, one per line. ``correct[i]`` is True when every labelled
    task is right, False when one is wrong, None when no task has labels.
    """
    n = len(rows)
    probs = {}
    for name, task in tasks.items():
        if name not in logits:
            raise KeyError(f"prediction_captions: no logits for task {name!r}")
        lg = np.asarray(logits[name], dtype=np.float64)
        if lg.shape != (n, task.num_classes):
            raise ValueError(f"prediction_captions: logits of {name!r} have shape {lg.shape}, "
                             f"expected ({n}, {task.num_classes})")
        probs[name] = softmax(lg, axis=1)
    captions: List[str] = []
    correct: List[Optional[bool]] = []
    for i in range(n):
        preds, truths, extra = [], [], []
        ok: Optional[bool] = None
        for name, task in tasks.items():
            p = probs[name][i]
            order = np.argsort(-p, kind="stable")
            if task.labels is None:
                top = order[:max(1, top_k_unlabelled)]
                extra += [f"{task.classnames[c]} {p[c]:.0%}" for c in top]
                continue
            pred, true = int(order[0]), int(task.labels[int(rows[i])])
            preds.append(f"{task.classnames[pred]} {p[pred]:.0%}")
            truths.append(task.classnames[true])
            ok = (pred == true) if ok is None else (ok and pred == true)
        lines = list(preds)
        if ok is False:
            lines.append("true: " + ", ".join(truths))
        captions.append("\n".join(lines + extra))
        correct.append(ok)
    return captions, correct
