"""The one dataset resolver: a dataset's name (a notebook's ``dataset`` parameter, the
``--dataset`` of ``python -m unirepclip extract``) to the dataset itself.

Every caller builds its data here, so the zero-shot notebooks, the probe, the ERF images and the
distributed extraction see the same rows in the same order for the same arguments, and a feature
cache entry written by one is found by the others (the cache key includes the dataset's
``identity``). :data:`DATASETS` is the table of names:

========== ======================================= ========================= ==========
name       what                                    splits                    endless
========== ======================================= ========================= ==========
synthetic  the captioned synthetic world           train, val, test          yes
digits     scikit-learn's handwritten digits       train, val, test, all     no
imagefolder ``data_dir/<class>/<image>``           all (= ``data_dir``),     no
                                                   train/val/test (subfolders)
skimage    scikit-image's sample photographs       all                       no
cifar10 .. CLIP_benchmark's datasets by its names  test; train, val where     no
           (:mod:`unirepclip.data.benchmarks`)     it has a train split
========== ======================================= ========================= ==========

The benchmark names (:data:`~unirepclip.data.benchmarks.BENCHMARKS`) are read from ``data_dir``
(``{dataset}`` in it stands for the name) and never downloaded. Their ``test`` split is the one
CLIP_benchmark evaluates; where a benchmark has a train split but no validation split, ``val`` is a
seeded random :data:`VAL_FRACTION` of its train split and ``train`` the rest (CLIP_benchmark's
linear probe holds out a validation share of train the same way), so the probe's C is never chosen
on test images.

How many rows, one rule for all (:func:`load_dataset`'s ``n``): an endless set renders exactly
``n`` (``n > 0``); a finite set keeps every row for ``n <= 0`` or ``n >= len``, else a seeded
random subset of ``n`` rows in ascending order (random, because image folders are sorted by
class). Datasets are built without a transform unless one is given: ``dataset[i]`` is then the
PIL image, and the model's preprocessing goes to the feature extraction.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DatasetSpec", "DATASETS", "dataset_names", "load_dataset", "Subset",
           "subset_indices", "base_dataset", "resolve_vocabulary", "VAL_FRACTION",
           "held_out_rows"]

VAL_FRACTION = 0.2  # of a benchmark's train split, held out as val when it has none


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


def base_dataset(ds: Any) -> Any:
    """The dataset under a :class:`Subset` (``ds`` itself otherwise)."""
    return ds.dataset if isinstance(ds, Subset) else ds


def subset_indices(n_total: int, n: int, seed: int) -> Optional[np.ndarray]:
    """A seeded random subset of ``n`` of ``n_total`` rows in ascending order, or None for all
    (``n <= 0`` or ``n >= n_total``)."""
    if n <= 0 or n >= n_total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def resolve_vocabulary(classnames_file: str, folder_names: Optional[Sequence[str]] = None
                       ) -> Tuple[List[str], List[Any], str]:
    """``(classnames, templates, source)`` of an image folder.

    ``classnames_file``: ``""`` for the folder names, ``"imagenet"`` for open_clip's
    ``IMAGENET_CLASSNAMES`` (in the sorted WordNet-id order of ImageNet's folders), else a text
    file with one name per line in sorted folder order. The templates are the 80 of CLIP's
    ImageNet evaluation (``OPENAI_IMAGENET_TEMPLATES``).

    Raises ``FileNotFoundError``/``ValueError`` naming ``classnames_file`` when it cannot be used,
    and ``ValueError`` when ``""`` is given without folder names to fall back on.
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    templates = list(OPENAI_IMAGENET_TEMPLATES)
    if classnames_file == "imagenet":
        return list(IMAGENET_CLASSNAMES), templates, "open_clip's IMAGENET_CLASSNAMES"
    if classnames_file:
        from unirepclip.data.files import read_classnames

        path = Path(classnames_file)
        if not path.is_file():
            raise FileNotFoundError(f"classnames_file={classnames_file!r}: no such file (give a "
                                    f"text file with one class name per line, or 'imagenet')")
        return read_classnames(path), templates, f"class-name file {path}"
    if folder_names is None:
        raise ValueError("classnames_file='' means the folder names, but there is no folder: "
                         "give classnames_file='imagenet' or a file")
    return list(folder_names), templates, "the folder names"


# ------------------------------------------------------------------------------------------------
# The builders: (split, n, options) -> the whole split; load_dataset applies the row rule
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuildArgs:
    split: str
    n: int
    image_size: int
    seed: int
    data_dir: str
    classnames_file: str
    target: str
    transform: Optional[Callable]


def _synthetic(a: BuildArgs) -> Any:
    from unirepclip.data.synthetic import SyntheticShapes

    return SyntheticShapes(a.split, n=a.n, image_size=a.image_size, seed=a.seed, target=a.target,
                           transform=a.transform)


def _digits(a: BuildArgs) -> Any:
    from unirepclip.data.packaged import SklearnDigits

    return SklearnDigits(a.split, seed=a.seed, image_size=a.image_size, transform=a.transform)


def _imagefolder(a: BuildArgs) -> Any:
    from unirepclip.data.files import ImageFolderDataset

    if not a.data_dir:
        raise ValueError("dataset='imagefolder' needs data_dir (a folder of class folders, "
                         "root/<class>/<image>)")
    root = Path(a.data_dir) if a.split == "all" else Path(a.data_dir) / a.split
    # verify=False: opening 50k files up front is slow; unreadable ones are skipped (and
    # reported) at extraction, and labels follow the rows that were read
    folder = ImageFolderDataset(root, transform=a.transform, verify=False)
    classnames, _, _ = resolve_vocabulary(a.classnames_file, folder.folders)
    if len(classnames) != len(folder.folders):
        raise ValueError(f"classnames_file={a.classnames_file!r} gives {len(classnames)} class "
                         f"names but {root} has {len(folder.folders)} class folders")
    folder.classes = list(classnames)
    return folder


def _skimage(a: BuildArgs) -> Any:
    from unirepclip.data.packaged import SkimagePhotos

    return SkimagePhotos(transform=a.transform)


def held_out_rows(n_total: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of ``range(n_total)`` (at least one row when
    ``n_total >= 2``, never all), ascending."""
    if n_total < 2:
        raise ValueError(f"cannot hold out a validation share of {n_total} row(s)")
    k = min(max(1, int(round(fraction * n_total))), n_total - 1)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=k, replace=False))


def _benchmark(name: str, a: BuildArgs) -> Any:
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


def _benchmark_splits(own: Sequence[str]) -> Tuple[str, ...]:
    return ("test",) + tuple(s for s in ("train", "val") if "train" in own)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One row of :data:`DATASETS`: ``build`` makes the whole ``split`` (``splits[0]`` is the one
    a single-split caller evaluates); an ``endless`` set renders exactly the ``n`` asked for."""

    name: str
    build: Callable[[BuildArgs], Any]
    splits: Tuple[str, ...]
    endless: bool
    summary: str

    @property
    def default_split(self) -> str:
        return self.splits[0]


DATASETS: Dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("synthetic", _synthetic, ("test", "train", "val"), True,
                "the captioned synthetic world"),
    DatasetSpec("imagefolder", _imagefolder, ("all", "train", "val", "test"), False,
                "an image folder data_dir/<class>/<image> (split: data_dir/<split>)"),
    DatasetSpec("digits", _digits, ("test", "train", "val", "all"), False,
                "scikit-learn's handwritten digits"),
    DatasetSpec("skimage", _skimage, ("all",), False,
                "scikit-image's sample photographs, each its own class"),
)}


def _add_benchmarks() -> None:
    from unirepclip.data.benchmarks import BENCHMARKS

    for name, b in BENCHMARKS.items():
        DATASETS[name] = DatasetSpec(name, functools.partial(_benchmark, name),
                                     _benchmark_splits(tuple(b.splits)), False,
                                     f"CLIP_benchmark's {name} ({b.task}): data_dir holds "
                                     f"{b.layout}")


_add_benchmarks()


def dataset_names(*, splits: Sequence[str] = ()) -> Tuple[str, ...]:
    """The names of :data:`DATASETS`, or of those that have every split in ``splits``."""
    return tuple(name for name, spec in DATASETS.items()
                 if all(s in spec.splits for s in splits))


def load_dataset(name: str, split: Optional[str] = None, *, n: int = 0, image_size: int = 64,
                 seed: int = 0, data_dir: str = "", classnames_file: str = "",
                 target: str = "shape", transform: Optional[Callable] = None) -> Any:
    """The dataset called ``name`` (a key of :data:`DATASETS`; see the module doc).

    Args:
        split: one of the dataset's splits (default: its first, the one evaluated).
        n: rows (the module doc's rule; ``seed`` seeds the subset).
        image_size: side of the synthetic images and of the upscaled digits (the others keep
            their files' sizes: the model's transform resizes them).
        seed: the synthetic world's seed, the digits' split seed and the subset's seed.
        data_dir, classnames_file: the image folder and its class names
            (:func:`resolve_vocabulary`).
        target: what a synthetic item's target is (``"shape"``, ``"colour"``, ...).
        transform: applied to each image (default none: ``dataset[i]`` is a PIL image).

    Raises ``ValueError`` naming the parameter at fault.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"dataset={name!r} is not one of {tuple(DATASETS)}")
    split = spec.default_split if split is None else split
    if split not in spec.splits:
        raise ValueError(f"split={split!r}: dataset={name!r} has the splits {spec.splits}")
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n_images={n!r}: expected a non-negative integer")
    if spec.endless and n <= 0:
        raise ValueError(f"n_images must be > 0 for dataset={name!r} (it is endless)")
    ds = spec.build(BuildArgs(split, int(n), int(image_size), int(seed), str(data_dir or ""),
                              classnames_file or "", target, transform))
    if spec.endless:
        return ds
    idx = subset_indices(len(ds), int(n), seed)
    if idx is None:
        return ds
    if isinstance(ds, Subset):  # a benchmark's carved train/val: one level of rows, not two
        return Subset(ds.dataset, ds.indices[idx])
    return Subset(ds, idx)
