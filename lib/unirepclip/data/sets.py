"""The evaluation data a notebook's parameters name: images with their zero-shot tasks, and
image-caption pairs for retrieval.

Notebook parameters (shared names, see :mod:`unirepclip.workbook`):

* ``dataset``: ``"synthetic"`` (the captioned synthetic world's test split, held-out phrasings;
  tasks ``shape`` and ``colour``), ``"imagefolder"`` (``data_dir/<class>/<image>``, ImageNet's
  layout), ``"digits"`` (scikit-learn's handwritten digits, test split) or ``"skimage"``
  (scikit-image's sample photographs, each its own class, named by its description), or a
  CLIP_benchmark classification set by its name (``cifar10``, ``imagenet-r``, ...: see
  :mod:`unirepclip.data.benchmarks`), read from ``data_dir`` with that benchmark's class names
  and templates;
* ``classnames_file``: the class vocabulary of an image folder: ``""`` for the folder names,
  ``"imagenet"`` for open_clip's ``IMAGENET_CLASSNAMES`` (in the sorted WordNet-id order of
  ImageNet's folders), else a text file with one name per line in sorted folder order. Image
  folders are scored with the 80 prompt templates of CLIP's ImageNet evaluation
  (``OPENAI_IMAGENET_TEMPLATES``);
* ``captions_file``: a CSV/TSV/JSONL of image-caption pairs (open_clip's ``filepath`` and
  ``title`` columns) for retrieval, or CLIP_benchmark's retrieval set by its name
  (``mscoco_captions``, ``flickr30k``) read from ``data_dir`` (write ``{dataset}`` in
  ``data_dir`` for one root per dataset); ``""`` means the synthetic test captions when the
  dataset is synthetic, and no retrieval otherwise.

Datasets are built without a transform, so ``dataset[i]`` is the PIL image (what the figures
show) and the model's preprocessing is passed to :func:`unirepclip.features.extract_image_features`
(:func:`val_transform` gives it at any resolution, for resolution sweeps). Every dataset has an
``identity`` for the feature cache.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unirepclip.data.registry import (DATASETS, Subset, base_dataset, load_dataset,
                                      resolve_vocabulary)

__all__ = ["ZeroShotTask", "EvalSet", "CaptionSet", "classification_set", "sample_set",
           "caption_set", "val_transform", "image_batch"]

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


def classification_set(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
                       data_dir: str = "", classnames_file: str = "") -> EvalSet:
    """The images and zero-shot tasks a notebook's parameters name.

    Args:
        dataset: a name of :data:`~unirepclip.data.registry.DATASETS`; its evaluated split.
        n_images: how many images (the first ``n_images`` of the synthetic test split; a seeded
            random subset of a finite set; ``0`` = all of a finite set): see
            :func:`~unirepclip.data.registry.load_dataset`.
        image_size: side at which synthetic images are rendered and digits are resized (other
            sets keep their files' sizes: the model's transform resizes them).
        seed: the synthetic world's seed; the subset's and digit split's seed.
        data_dir: the image folder (``dataset="imagefolder"``).
        classnames_file: see :func:`~unirepclip.data.registry.resolve_vocabulary`.
    """
    from unirepclip.data.benchmarks import BENCHMARKS, benchmark_names

    if dataset in benchmark_names("retrieval"):
        raise ValueError(f"dataset={dataset!r} is a retrieval set (images and captions, no "
                         f"classes): give it as captions_file={dataset!r} beside a "
                         f"classification dataset")
    ds = load_dataset(dataset, n=n_images, image_size=image_size, seed=seed, data_dir=data_dir,
                      classnames_file=classnames_file)
    base = base_dataset(ds)
    if dataset == "synthetic":
        from unirepclip.data import zeroshot_task

        tasks = {}
        for name, truth in (("shape", ds.samples.shape), ("colour", ds.samples.colour)):
            classnames, templates = zeroshot_task(name)
            tasks[name] = ZeroShotTask(name, classnames, templates, np.asarray(truth))
        return EvalSet("synthetic", ds, tasks, "shape",
                       f"synthetic world (seed {seed}), test split: {len(ds)} images of "
                       f"{image_size} px, prompts in held-out phrasings")
    rows = ds.indices if isinstance(ds, Subset) else np.arange(len(ds))
    labels = np.asarray(base.targets, dtype=np.int64)
    if dataset in BENCHMARKS:
        task = ZeroShotTask(dataset, list(base.classes), list(base.templates), labels[rows])
        return EvalSet("benchmark", ds, {dataset: task}, dataset,
                       f"CLIP_benchmark's {dataset} ({base.split} split, {base.root}): {len(ds)} "
                       f"of {len(base)} images, {len(base.classes)} classes, "
                       f"{len(base.templates)} templates")
    if dataset == "imagefolder":
        _, templates, source = resolve_vocabulary(classnames_file, base.folders)
        task = ZeroShotTask("imagefolder", list(base.classes), templates, labels[rows])
        skipped = f", {len(base.skipped)} unreadable files skipped" if base.skipped else ""
        return EvalSet("imagefolder", ds, {"imagefolder": task}, "imagefolder",
                       f"image folder {data_dir}: {len(ds)} of {len(base)} images, "
                       f"{len(base.classes)} classes named by {source}{skipped}")
    if dataset == "digits":
        from unirepclip.data import digits_zeroshot_task

        classnames, templates = digits_zeroshot_task()
        return EvalSet("digits", ds, {"digits": ZeroShotTask("digits", classnames, templates,
                                                              labels[rows])}, "digits",
                       f"scikit-learn digits, test split: {len(ds)} images of {image_size} px")
    # skimage: each photograph is its own class, all of them stay in the vocabulary
    task = ZeroShotTask("skimage", list(base.descriptions), ["a photo of {}."], labels[rows])
    of = "" if ds is base else f" of {len(base)}"
    return EvalSet("skimage", ds, {"skimage": task}, "skimage",
                   f"scikit-image sample photographs: {len(ds)}{of} images, each its own class")


def sample_set(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
               classnames_file: str = "") -> EvalSet:
    """A handful of images for a first look at a model's predictions.

    Synthetic and digits: the first images of their test splits with their tasks. Real-image
    models (``imagefolder``, ``skimage``): scikit-image's sample photographs scored against the
    image-folder vocabulary (``classnames_file``; ``""`` means open_clip's ImageNet class names),
    with no true labels (the photographs are not ImageNet images).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {tuple(DATASETS)}")
    if dataset in ("synthetic", "digits"):
        return classification_set(dataset, n_images=n_images, image_size=image_size, seed=seed)
    ds = load_dataset("skimage", n=n_images, seed=seed)
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
                image_size: int = 64, seed: int = 0, data_dir: str = "") -> Optional[CaptionSet]:
    """The image-caption pairs for retrieval, or None when there are none (see the module doc).

    With ``captions_file=""`` and a synthetic ``evalset`` its very dataset is reused (the test
    captions are in held-out phrasings), so its image features serve both evaluations.
    ``n_images`` caps the images of a caption file (its first ones) and sizes a new synthetic set;
    of a CLIP_benchmark retrieval set (``captions_file="mscoco_captions"`` or ``"flickr30k"``,
    read from ``data_dir``) it keeps a seeded random subset, every caption of each image kept.
    """
    from unirepclip.data.benchmarks import benchmark_names

    if captions_file in benchmark_names("retrieval"):
        ds = load_dataset(captions_file, n=n_images, seed=seed, data_dir=data_dir)
        base = base_dataset(ds)
        rows = ds.indices if isinstance(ds, Subset) else np.arange(len(ds))
        per_image = base.captions()
        pairs = [(c, k) for k, i in enumerate(rows) for c in per_image[int(i)]]
        return CaptionSet("benchmark", ds, [c for c, _ in pairs],
                          np.asarray([k for _, k in pairs], dtype=np.int64),
                          f"CLIP_benchmark's {captions_file} ({base.root}): {len(ds)} of "
                          f"{len(base)} images, {len(pairs)} captions")
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

