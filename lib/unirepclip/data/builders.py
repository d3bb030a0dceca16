"""What the rows of :data:`unirepclip.data.registry.DATASETS` point at, one family per section:
how a split is built (``build_*``), which zero-shot tasks its rows are scored on (``classes_*``,
the classification task) and each row's captions (``captions_*``, the retrieval task).

Nothing here is chosen by a dataset's name: the registry's table says which function serves which
name. Every function imports its dataset class on first use, so the table itself stays light.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unirepclip.data.rows import Subset, base_dataset, dataset_rows, held_out_rows
from unirepclip.data.vocabularies import resolve_vocabulary

__all__ = ["BuildArgs", "ZeroShotTask", "Classes", "VAL_FRACTION"]

VAL_FRACTION = 0.2  # of a benchmark's train split, held out as val when it has none


@dataclasses.dataclass(frozen=True)
class BuildArgs:
    """What a builder is asked for: ``split`` (``n`` rows for an endless set; a finite set is
    built whole and the registry keeps its rows), ``data_dir`` with ``{dataset}`` already
    replaced by the name."""

    split: str
    n: int
    image_size: int
    seed: int
    data_dir: str
    classnames_file: str
    target: str
    transform: Optional[Callable]


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


@dataclasses.dataclass(frozen=True)
class Classes:
    """The zero-shot tasks of a classification set's rows: ``tasks`` by name, ``main_task`` the
    headline one; ``kind`` names the family, ``source`` says what the data is (no counts) and
    ``description`` what these rows are."""

    kind: str
    tasks: Dict[str, ZeroShotTask]
    main_task: str
    source: str
    description: str


def _labels(ds: Any) -> np.ndarray:
    return np.asarray(base_dataset(ds).targets, dtype=np.int64)[dataset_rows(ds)]


def _one(kind: str, task: ZeroShotTask, source: str, description: str) -> Classes:
    return Classes(kind, {task.name: task}, task.name, source, description)


def _task(name: str, ds: Any, classnames: Sequence[str], templates: Sequence[Any]
          ) -> ZeroShotTask:
    return ZeroShotTask(name, list(classnames), list(templates), _labels(ds))


# ---- the captioned synthetic world ---------------------------------------------------------------
def build_synthetic(a: BuildArgs) -> Any:
    from unirepclip.data.synthetic import SyntheticShapes

    return SyntheticShapes(a.split, n=a.n, image_size=a.image_size, seed=a.seed, target=a.target,
                           transform=a.transform)


def classes_synthetic(ds: Any, a: BuildArgs) -> Classes:
    from unirepclip.data.synthetic import zeroshot_task

    tasks = {}
    for name, truth in (("shape", ds.samples.shape), ("colour", ds.samples.colour)):
        classnames, templates = zeroshot_task(name)
        tasks[name] = ZeroShotTask(name, classnames, templates, np.asarray(truth))
    return Classes("synthetic", tasks, "shape", f"synthetic world (seed {a.seed}), "
                   f"{a.image_size} px", f"synthetic world (seed {a.seed}), {a.split} split: "
                   f"{len(ds)} images of {a.image_size} px, prompts in held-out phrasings")


def captions_synthetic(base: Any) -> List[List[str]]:
    return [[c] for c in base.captions]


# ---- sets that ship inside installed packages ----------------------------------------------------
def build_digits(a: BuildArgs) -> Any:
    from unirepclip.data.packaged import SklearnDigits

    return SklearnDigits(a.split, seed=a.seed, image_size=a.image_size, transform=a.transform)


def classes_digits(ds: Any, a: BuildArgs) -> Classes:
    from unirepclip.data.packaged import digits_zeroshot_task

    classnames, templates = digits_zeroshot_task()
    return _one("digits", _task("digits", ds, classnames, templates),
                f"scikit-learn digits (split seed {a.seed}), 8 x 8 px upscaled to "
                f"{a.image_size} px", f"scikit-learn digits, {a.split} split: {len(ds)} images "
                                      f"of {a.image_size} px")


def build_skimage(a: BuildArgs) -> Any:
    from unirepclip.data.packaged import SkimagePhotos

    return SkimagePhotos(transform=a.transform)


def classes_skimage(ds: Any, a: BuildArgs) -> Classes:
    # each photograph is its own class, all of them stay in the vocabulary
    base = base_dataset(ds)
    of = "" if ds is base else f" of {len(base)}"
    return _one("skimage", _task("skimage", ds, base.descriptions, ["a photo of {}."]),
                "scikit-image sample photographs", f"scikit-image sample photographs: "
                f"{len(ds)}{of} images, each its own class")


# ---- a folder of class folders -------------------------------------------------------------------
def build_imagefolder(a: BuildArgs) -> Any:
    from unirepclip.data.files import ImageFolderDataset

    if not a.data_dir:
        raise ValueError("dataset='imagefolder' needs data_dir (a folder of class folders, "
                         "root/<class>/<image>)")
    root = Path(a.data_dir) if a.split == "all" else Path(a.data_dir) / a.split
    if a.split != "all" and not root.is_dir():
        raise FileNotFoundError(f"data_dir={a.data_dir!r} lacks the split folder {a.split} "
                                f"(expected {a.data_dir}/{a.split}/<class>/<image>)")
    # verify=False: opening 50k files up front is slow; unreadable ones are skipped (and
    # reported) at extraction, and labels follow the rows that were read
    folder = ImageFolderDataset(root, transform=a.transform, verify=False)
    classnames, _, _ = resolve_vocabulary(a.classnames_file, folder.folders)
    if len(classnames) != len(folder.folders):
        raise ValueError(f"classnames_file={a.classnames_file!r} gives {len(classnames)} class "
                         f"names but {root} has {len(folder.folders)} class folders")
    folder.classes = list(classnames)
    return folder


def classes_imagefolder(ds: Any, a: BuildArgs) -> Classes:
    base = base_dataset(ds)
    _, templates, named_by = resolve_vocabulary(a.classnames_file, base.folders)
    skipped = f", {len(base.skipped)} unreadable files skipped" if base.skipped else ""
    return _one("imagefolder", _task("imagefolder", ds, base.classes, templates),
                f"image folder {a.data_dir}, {len(base.classes)} classes named by {named_by}",
                f"image folder {a.data_dir}: {len(ds)} of {len(base)} images, "
                f"{len(base.classes)} classes named by {named_by}{skipped}")


# ---- CLIP_benchmark's datasets by name -----------------------------------------------------------
def benchmark_splits(own: Sequence[str]) -> Tuple[str, ...]:
    """The splits a benchmark offers: ``test``, and ``train``/``val`` where it has a train split
    (``val`` carved from train when it has none)."""
    return ("test",) + tuple(s for s in ("train", "val") if "train" in own)


def build_benchmark(name: str, a: BuildArgs) -> Any:
    from unirepclip.data.benchmarks import BENCHMARKS, load_benchmark

    if a.classnames_file:
        raise ValueError(f"classnames_file={a.classnames_file!r}: dataset={name!r} is named by "
                         f"CLIP_benchmark's class names; give classnames_file=''")
    own = BENCHMARKS[name].splits
    if a.split in own and not (a.split == "train" and "val" not in own):
        return load_benchmark(name, a.split, data_dir=a.data_dir, transform=a.transform)
    train = load_benchmark(name, "train", data_dir=a.data_dir, transform=a.transform)
    val = held_out_rows(len(train), VAL_FRACTION, a.seed)
    return Subset(train, val if a.split == "val" else np.setdiff1d(np.arange(len(train)), val))


def classes_benchmark(ds: Any, a: BuildArgs) -> Classes:
    base = base_dataset(ds)
    return _one("benchmark", _task(base.name, ds, base.classes, base.templates),
                f"CLIP_benchmark's {base.name} ({base.root})",
                f"CLIP_benchmark's {base.name} ({base.split} split, {base.root}): {len(ds)} of "
                f"{len(base)} images, {len(base.classes)} classes, {len(base.templates)} "
                f"templates")


def captions_benchmark(base: Any) -> List[List[str]]:
    return base.captions()
