"""The evaluation data a notebook's parameters name: images with their zero-shot tasks, and
image-caption pairs for retrieval.

Notebook parameters (shared names, see :mod:`unirepclip.workbook`):

* ``dataset``: ``"synthetic"`` (the captioned synthetic world's test split, held-out phrasings;
  tasks ``shape`` and ``colour``), ``"imagefolder"`` (``data_dir/<class>/<image>``, ImageNet's
  layout), ``"digits"`` (scikit-learn's handwritten digits, test split) or ``"skimage"``
  (scikit-image's sample photographs, each its own class, named by its description);
* ``classnames_file``: the class vocabulary of an image folder: ``""`` for the folder names,
  ``"imagenet"`` for open_clip's ``IMAGENET_CLASSNAMES`` (in the sorted WordNet-id order of
  ImageNet's folders), else a text file with one name per line in sorted folder order. Image
  folders are scored with the 80 prompt templates of CLIP's ImageNet evaluation
  (``OPENAI_IMAGENET_TEMPLATES``);
* ``captions_file``: a CSV/TSV/JSONL of image-caption pairs (open_clip's ``filepath`` and
  ``title`` columns) for retrieval; ``""`` means the synthetic test captions when the dataset is
  synthetic, and no retrieval otherwise.

Datasets are built without a transform, so ``dataset[i]`` is the PIL image (what the figures
show) and the model's preprocessing is passed to :func:`unirepclip.features.extract_image_features`
(:func:`val_transform` gives it at any resolution, for resolution sweeps). Every dataset has an
``identity`` for the feature cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DATASETS", "ZeroShotTask", "EvalSet", "CaptionSet", "Subset", "resolve_vocabulary",
           "classification_set", "sample_set", "caption_set", "val_transform", "image_batch",
           "prediction_captions"]

DATASETS = ("synthetic", "imagefolder", "digits", "skimage")
_DISPLAY_SIDE = 160  # thumbnails for figures: vector files stay small


@dataclasses.dataclass
class ZeroShotTask:
    """Class names, prompt templates (format strings or callables) and, where known, the true
    class of each image of the set (``labels``, (N,) ints aligned with the dataset's rows)."""

    name: str
    classnames: List[str]
    templates: List[Any]
    labels: Optional[np.ndarray]

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


class Subset:
    """Rows ``indices`` of ``dataset`` (kept in the given order), with an ``identity`` for the
    feature cache and ``transform`` passed through."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or (len(self.indices) and (
                self.indices.min() < 0 or self.indices.max() >= len(dataset))):
            raise ValueError(f"Subset: indices must be 1-D within [0, {len(dataset)})")

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])]

    @property
    def identity(self) -> Dict[str, Any]:
        base = getattr(self.dataset, "identity", {"repr": repr(self.dataset)})
        digest = hashlib.sha256(self.indices.tobytes()).hexdigest()
        return {"class": "Subset", "of": base, "indices_sha256": digest, "n": len(self)}

    def __repr__(self) -> str:
        return f"Subset({self.dataset!r}, n={len(self)})"


def _subset_indices(n_total: int, n: int, seed: int) -> Optional[np.ndarray]:
    """A seeded random subset of ``n`` of ``n_total`` rows in ascending order, or None for all
    (``n <= 0`` or ``n >= n_total``). Random, because class folders are sorted by class."""
    if n <= 0 or n >= n_total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


@dataclasses.dataclass
class EvalSet:
    """A dataset with its zero-shot tasks.

    ``dataset[i]`` is ``(PIL image, target)``; ``tasks`` maps a task name to a
    :class:`ZeroShotTask` whose labels follow the dataset's rows; ``main_task`` is the one whose
    figures are the notebook's headline (``zeroshot.acc1``); ``description`` says what it is.
    """

    kind: str
    dataset: Any
    tasks: Dict[str, ZeroShotTask]
    main_task: str
    description: str

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, i: int, max_side: int = _DISPLAY_SIDE) -> np.ndarray:
        """Row ``i`` as an (H, W, 3) uint8 array for display, shrunk to ``max_side`` at most."""
        from PIL import Image

        img = self.dataset[int(i)][0]
        if not isinstance(img, Image.Image):
            raise TypeError(f"{self.dataset!r}[{i}] is a {type(img).__name__}, not an image "
                            f"(unreadable file?)")
        img = img.convert("RGB")
        if max(img.size) > max_side:
            img = img.copy()
            img.thumbnail((max_side, max_side), Image.BICUBIC)
        return np.asarray(img)


def resolve_vocabulary(classnames_file: str, folder_names: Optional[Sequence[str]] = None
                       ) -> Tuple[List[str], List[Any], str]:
    """``(classnames, templates, source)`` for an image folder (see the module doc).

    Raises ``FileNotFoundError``/``ValueError`` naming ``classnames_file`` when it cannot be used,
    and ``ValueError`` when ``""`` is given without folder names to fall back on.
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    templates = list(OPENAI_IMAGENET_TEMPLATES)
    if classnames_file == "imagenet":
        return list(IMAGENET_CLASSNAMES), templates, "open_clip's IMAGENET_CLASSNAMES"
    if classnames_file:
        from unirepclip.data import read_classnames

        path = Path(classnames_file)
        if not path.is_file():
            raise FileNotFoundError(f"classnames_file={classnames_file!r}: no such file (give a "
                                    f"text file with one class name per line, or 'imagenet')")
        return read_classnames(path), templates, f"class-name file {path}"
    if folder_names is None:
        raise ValueError("classnames_file='' means the folder names, but there is no folder: "
                         "give classnames_file='imagenet' or a file")
    return list(folder_names), templates, "the folder names"


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {DATASETS}")


def classification_set(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
                       data_dir: str = "", classnames_file: str = "") -> EvalSet:
    """The images and zero-shot tasks a notebook's parameters name.

    Args:
        dataset: one of :data:`DATASETS`.
        n_images: how many images (the first ``n_images`` of the synthetic test split; a seeded
            random subset of an image folder or of the digits; ``0`` = all of a finite set).
        image_size: side at which synthetic images are rendered and digits are resized (other
            sets keep their files' sizes: the model's transform resizes them).
        seed: the synthetic world's seed; the subset's and digit split's seed.
        data_dir: the image folder (``dataset="imagefolder"``).
        classnames_file: see :func:`resolve_vocabulary`.
    """
    _check_dataset(dataset)
    if int(n_images) != n_images or n_images < 0:
        raise ValueError(f"n_images={n_images!r}: expected a non-negative integer")
    if dataset == "synthetic":
        from unirepclip.data import SyntheticShapes, zeroshot_task

        if n_images <= 0:
            raise ValueError("n_images must be > 0 for the synthetic world (it is endless)")
        ds = SyntheticShapes("test", n=int(n_images), image_size=image_size, seed=seed,
                             target="shape")
        tasks = {}
        for name, labels in (("shape", ds.samples.shape), ("colour", ds.samples.colour)):
            classnames, templates = zeroshot_task(name)
            tasks[name] = ZeroShotTask(name, classnames, templates, np.asarray(labels))
        return EvalSet("synthetic", ds, tasks, "shape",
                       f"synthetic world (seed {seed}), test split: {len(ds)} images of "
                       f"{image_size} px, prompts in held-out phrasings")
    if dataset == "imagefolder":
        from unirepclip.data import ImageFolderDataset

        if not data_dir:
            raise ValueError("dataset='imagefolder' needs data_dir (a folder of class folders)")
        # verify=False: opening 50k files up front is slow; unreadable ones are skipped (and
        # reported) at extraction, and labels follow the rows that were read
        folder = ImageFolderDataset(data_dir, verify=False)
        classnames, templates, source = resolve_vocabulary(classnames_file, folder.classes)
        if len(classnames) != len(folder.folders):
            raise ValueError(f"classnames_file={classnames_file!r} gives {len(classnames)} class "
                             f"names but {data_dir} has {len(folder.folders)} class folders")
        folder.classes = list(classnames)
        labels = np.asarray(folder.targets, dtype=np.int64)
        idx = _subset_indices(len(folder), int(n_images), seed)
        ds = folder if idx is None else Subset(folder, idx)
        if idx is not None:
            labels = labels[idx]
        task = ZeroShotTask("imagefolder", classnames, templates, labels)
        skipped = f", {len(folder.skipped)} unreadable files skipped" if folder.skipped else ""
        return EvalSet("imagefolder", ds, {"imagefolder": task}, "imagefolder",
                       f"image folder {data_dir}: {len(ds)} of {len(folder)} images, "
                       f"{len(classnames)} classes named by {source}{skipped}")
    if dataset == "digits":
        from unirepclip.data import SklearnDigits, digits_zeroshot_task

        digits = SklearnDigits("test", seed=seed, image_size=image_size)
        classnames, templates = digits_zeroshot_task()
        labels = np.asarray(digits.targets, dtype=np.int64)
        idx = _subset_indices(len(digits), int(n_images), seed)
        ds = digits if idx is None else Subset(digits, idx)
        if idx is not None:
            labels = labels[idx]
        return EvalSet("digits", ds, {"digits": ZeroShotTask("digits", classnames, templates,
                                                              labels)}, "digits",
                       f"scikit-learn digits, test split: {len(ds)} images of {image_size} px")
    from unirepclip.data import SkimagePhotos

    photos = SkimagePhotos()
    task = ZeroShotTask("skimage", list(photos.descriptions), ["a photo of {}."],
                        np.arange(len(photos)))
    return EvalSet("skimage", photos, {"skimage": task}, "skimage",
                   f"scikit-image sample photographs: {len(photos)} images, each its own class")


def sample_set(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
               classnames_file: str = "") -> EvalSet:
    """A handful of images for a first look at a model's predictions.

    Synthetic and digits: the first images of their test splits with their tasks. Real-image
    models (``imagefolder``, ``skimage``): scikit-image's sample photographs scored against the
    image-folder vocabulary (``classnames_file``; ``""`` means open_clip's ImageNet class names),
    with no true labels (the photographs are not ImageNet images).
    """
    _check_dataset(dataset)
    if dataset in ("synthetic", "digits"):
        return classification_set(dataset, n_images=n_images, image_size=image_size, seed=seed)
    from unirepclip.data import SkimagePhotos

    photos = SkimagePhotos()
    idx = _subset_indices(len(photos), int(n_images), seed)
    ds = photos if idx is None else Subset(photos, idx)
    classnames, templates, source = resolve_vocabulary(classnames_file or "imagenet")
    task = ZeroShotTask("vocabulary", classnames, templates, None)
    return EvalSet("skimage", ds, {"vocabulary": task}, "vocabulary",
                   f"{len(ds)} scikit-image sample photographs, classes from {source}")


@dataclasses.dataclass
class CaptionSet:
    """Images and their captions for retrieval: ``dataset[i]`` is image i; ``captions[j]``
    describes image ``text_to_image[j]``."""

    kind: str
    dataset: Any
    captions: List[str]
    text_to_image: np.ndarray
    description: str

    def texts_for(self, kept_images: Sequence[int]) -> Tuple[List[str], np.ndarray]:
        """The captions of the images that were encoded (rows ``kept_images`` of the dataset,
        e.g. a feature set's ``indices``) and their image's position *in* ``kept_images``."""
        pos = {int(i): k for k, i in enumerate(kept_images)}
        keep = [j for j, i in enumerate(self.text_to_image) if int(i) in pos]
        return ([self.captions[j] for j in keep],
                np.asarray([pos[int(self.text_to_image[j])] for j in keep], dtype=np.int64))


def caption_set(captions_file: str, *, evalset: Optional[EvalSet] = None, n_images: int = 1000,
                image_size: int = 64, seed: int = 0) -> Optional[CaptionSet]:
    """The image-caption pairs for retrieval, or None when there are none (see the module doc).

    With ``captions_file=""`` and a synthetic ``evalset`` its very dataset is reused (the test
    captions are in held-out phrasings), so its image features serve both evaluations.
    ``n_images`` caps the images of a caption file (its first ones) and sizes a new synthetic set.
    """
    if captions_file:
        from unirepclip.data import CaptionDataset

        full = CaptionDataset(captions_file)
        n = len(full) if n_images <= 0 else min(int(n_images), len(full))
        ds = full if n == len(full) else Subset(full, np.arange(n))
        keep = set(range(n))
        pairs = [(c, int(i)) for c, i in zip(full.captions, full.text_to_image) if int(i) in keep]
        skipped = f", {len(full.skipped)} unreadable images skipped" if full.skipped else ""
        return CaptionSet("file", ds, [c for c, _ in pairs],
                          np.asarray([i for _, i in pairs], dtype=np.int64),
                          f"caption file {captions_file}: {n} images, {len(pairs)} captions"
                          f"{skipped}")
    if evalset is not None and evalset.kind != "synthetic":
        return None
    if evalset is None:
        evalset = classification_set("synthetic", n_images=n_images, image_size=image_size,
                                     seed=seed)
    ds = evalset.dataset
    return CaptionSet("synthetic", ds, list(ds.captions), np.arange(len(ds), dtype=np.int64),
                      f"synthetic test captions (held-out phrasings): {len(ds)} images, one "
                      f"caption each")


def val_transform(model: Any, image_size: Optional[int] = None) -> Callable:
    """The model's open_clip evaluation preprocessing (resize, centre crop, normalize), at
    ``image_size`` instead of the model's own size when given."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = dict(open_clip.get_model_preprocess_cfg(model))
    if not cfg:
        raise ValueError("the model has no open_clip preprocessing config (build it with "
                         "unirepclip.create_model)")
    if image_size is not None:
        if int(image_size) != image_size or image_size < 32:
            raise ValueError(f"image_size={image_size!r}: expected an integer >= 32")
        cfg["size"] = int(image_size)
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def image_batch(dataset: Any, n: int, transform: Callable) -> "torch.Tensor":  # noqa: F821
    """``n`` images of ``dataset`` through ``transform``, stacked (N, 3, H, W); the dataset is
    cycled when it has fewer than ``n`` images (a timing batch only needs realistic pixels)."""
    import torch

    if n <= 0 or len(dataset) == 0:
        raise ValueError(f"image_batch: n={n} images from a dataset of {len(dataset)}")
    return torch.stack([transform(dataset[i % len(dataset)][0]) for i in range(int(n))])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


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
        probs[name] = _softmax(lg)
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
