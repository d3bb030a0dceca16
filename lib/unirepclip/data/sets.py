"""The evaluation data a notebook's parameters name: images with their zero-shot tasks, and
image-caption pairs for retrieval.

Notebook parameters (shared names, declared by :mod:`unirepclip.data.params`); what each
registered name means is :mod:`unirepclip.data.registry`'s to say:

* ``dataset``: a registered classification set (``synthetic``, ``imagefolder``, ``digits``,
  ``skimage``, a CLIP_benchmark name such as ``cifar10``: ``dataset_names("classification")``);
* ``data_dir``: where its files are (``{dataset}`` stands for the name);
* ``classnames_file``: an image folder's class names (:mod:`unirepclip.data.vocabularies`);
* ``captions_file``: a CSV/TSV/JSONL of image-caption pairs (open_clip's ``filepath`` and
  ``title`` columns) for retrieval, or a registered retrieval set by its name
  (``dataset_names("retrieval")``: ``mscoco_captions``, ``flickr30k``, ``synthetic``) read from
  ``data_dir``; ``""`` means the synthetic test captions when the dataset is synthetic, and no
  retrieval otherwise.

Datasets are built without a transform, so ``dataset[i]`` is the PIL image (what the figures
show) and the model's preprocessing is passed to :func:`unirepclip.features.extract_image_features`
(:func:`val_transform` gives it at any resolution, for resolution sweeps). Every dataset has an
``identity`` for the feature cache.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unirepclip.data.builders import ZeroShotTask
from unirepclip.data.registry import (Subset, base_dataset, dataset_captions, dataset_spec,
                                      load_classified, load_dataset, name_or_path,
                                      resolve_vocabulary)

__all__ = ["ZeroShotTask", "EvalSet", "CaptionSet", "classification_set", "sample_set",
           "caption_set", "val_transform", "image_batch"]

_DISPLAY_SIDE = 160  # thumbnails for figures: vector files stay small


@dataclasses.dataclass
class EvalSet:
    """A dataset with its zero-shot tasks.

    ``dataset[i]`` is ``(PIL image, target)``; ``tasks`` maps a task name to a
    :class:`ZeroShotTask` whose labels follow the dataset's rows; ``main_task`` is the one whose
    figures are the notebook's headline (``zeroshot.acc1``); ``description`` says what it is;
    ``name`` is the registered dataset the rows come from.
    """

    kind: str
    dataset: Any
    tasks: Dict[str, ZeroShotTask]
    main_task: str
    description: str
    name: str = ""

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
        dataset: a registered classification set
            (``unirepclip.data.registry.dataset_names("classification")``); its evaluated split.
        n_images: how many images (the first ``n_images`` of the synthetic test split; a seeded
            random subset of a finite set; ``0`` = all of a finite set): see
            :func:`~unirepclip.data.registry.load_dataset`.
        image_size: side at which synthetic images are rendered and digits are resized (other
            sets keep their files' sizes: the model's transform resizes them).
        seed: the synthetic world's seed; the subset's and digit split's seed.
        data_dir: where its files are (``{dataset}`` stands for the name).
        classnames_file: an image folder's class names (:mod:`unirepclip.data.vocabularies`).
    """
    rows, classes = load_classified(dataset, n=n_images, image_size=image_size, seed=seed,
                                    data_dir=data_dir, classnames_file=classnames_file)
    return EvalSet(classes.kind, rows, classes.tasks, classes.main_task, classes.description,
                   dataset)


def sample_set(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
               classnames_file: str = "") -> EvalSet:
    """A handful of images for a first look at a model's predictions.

    A dataset whose spec's ``first_look`` is ``"own"`` (synthetic, digits): the first images of
    its test split with its tasks. The others (real images): scikit-image's sample photographs
    scored against the image-folder vocabulary (``classnames_file``; ``""`` means open_clip's
    ImageNet class names), with no true labels (the photographs are not ImageNet images).
    """
    if dataset_spec(dataset).first_look == "own":
        return classification_set(dataset, n_images=n_images, image_size=image_size, seed=seed)
    ds = load_dataset("skimage", n=n_images, seed=seed)
    classnames, templates, source = resolve_vocabulary(classnames_file or "imagenet")
    task = ZeroShotTask("vocabulary", classnames, templates, None)
    return EvalSet("skimage", ds, {"vocabulary": task}, "vocabulary",
                   f"{len(ds)} scikit-image sample photographs, classes from {source}", "skimage")


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

    ``captions_file``: a registered retrieval set's name (read from ``data_dir``; ``n_images``
    keeps a seeded random subset of a finite set, every caption of each image kept, and sizes an
    endless one), else a caption file (``n_images`` caps its images, its first ones). ``""``: the
    captions of ``evalset``'s own dataset when it serves retrieval (its very rows are reused, so
    its image features serve both evaluations; the synthetic test captions are in held-out
    phrasings), None when it does not; with no ``evalset``, the synthetic test split.
    """
    name, _ = name_or_path(captions_file, "retrieval")
    if name is not None:
        rows = load_dataset(name, n=n_images, image_size=image_size, seed=seed, data_dir=data_dir)
        return _captions_of(name, rows)
    if captions_file:
        return _file_captions(captions_file, n_images)
    if evalset is None:
        evalset = classification_set("synthetic", n_images=n_images, image_size=image_size,
                                     seed=seed)
    if "retrieval" not in dataset_spec(evalset.name).tasks:
        return None
    return _captions_of(evalset.name, evalset.dataset)


def _captions_of(name: str, rows: Any) -> CaptionSet:
    per_row = dataset_captions(name, rows)
    pairs = [(c, k) for k, caps in enumerate(per_row) for c in caps]
    base = base_dataset(rows)
    where = getattr(base, "root", None)
    return CaptionSet(dataset_spec(name).kind, rows, [c for c, _ in pairs],
                      np.asarray([k for _, k in pairs], dtype=np.int64),
                      f"the captions of {name}{f' ({where})' if where else ''}: {len(rows)} of "
                      f"{len(base)} images, {len(pairs)} captions")


def _file_captions(captions_file: str, n_images: int) -> CaptionSet:
    from unirepclip.data import CaptionDataset

    full = CaptionDataset(captions_file)
    n = len(full) if n_images <= 0 else min(int(n_images), len(full))
    ds = full if n == len(full) else Subset(full, np.arange(n))
    keep = set(range(n))
    pairs = [(c, int(i)) for c, i in zip(full.captions, full.text_to_image) if int(i) in keep]
    skipped = f", {len(full.skipped)} unreadable images skipped" if full.skipped else ""
    return CaptionSet("file", ds, [c for c, _ in pairs],
                      np.asarray([i for _, i in pairs], dtype=np.int64),
                      f"caption file {captions_file}: {n} images, {len(pairs)} captions{skipped}")


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

