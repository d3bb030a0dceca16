"""The one dataset specification: what a dataset's name means (a notebook's ``dataset`` or
``captions_file`` parameter, the ``--dataset`` of ``python -m unirepclip extract``), which tasks
it serves, where its files are, and the dataset itself.

Every caller asks :data:`DATASETS`, so the notebooks, the probe, the ERF images and the
distributed extraction see the same rows in the same order for the same arguments, and a feature
cache entry written by one is found by the others (the cache key includes the dataset's
``identity``). A dataset added to the table (one :class:`DatasetSpec`) is known everywhere,
the workbook's parameter checks included, with no other change.

=========== ========= ================================ ============================ ========
name        kind      what                             tasks                        splits
=========== ========= ================================ ============================ ========
synthetic   synthetic the captioned synthetic world    classification, retrieval,   test,
                      (endless: renders ``n``)         probe                        train, val
imagefolder folder    ``data_dir/<class>/<image>``     classification, probe        all (=
                                                       (``data_dir/{train,val,test}``) data_dir),
                                                                                    train, ...
digits      packaged  scikit-learn's digits            classification, probe        test, ...
skimage     packaged  scikit-image's photographs       classification               all
cifar10 ..  benchmark CLIP_benchmark's names           classification (probe with   test;
                      (:mod:`~unirepclip.data.         a train split), or retrieval train, val
                      benchmarks`)                     (mscoco_captions, flickr30k)
=========== ========= ================================ ============================ ========

Where files are: a spec with a ``layout`` reads ``data_dir`` (``{dataset}`` in it stands for the
name, CLIP_benchmark's ``--dataset_root`` convention) and never downloads; the others need no
files. A benchmark's ``test`` split is the one CLIP_benchmark evaluates; where it has a train split
but no validation split, ``val`` is a seeded random
:data:`~unirepclip.data.builders.VAL_FRACTION` of train and ``train`` the rest, so the probe's C
is never chosen on test images. Class names of a folder come from ``classnames_file``
(:mod:`unirepclip.data.vocabularies`); every other set names its own classes.

How many rows, one rule for all (:func:`load_dataset`'s ``n``): an endless set renders exactly
``n`` (``n > 0``); a finite set keeps every row for ``n <= 0`` or ``n >= len``, else a seeded
random subset of ``n`` rows in ascending order (random, because image folders are sorted by
class). Datasets are built without a transform unless one is given: ``dataset[i]`` is then the
PIL image, and the model's preprocessing goes to the feature extraction.

Torch-free queries (the workbook's parameter checks call them before anything heavy loads)::

    dataset_names(task=None, *, splits=()) -> Tuple[str, ...]
        registered names, in table order; of one task ("classification", "retrieval", "probe")
        and/or having every split in ``splits``
    vocabulary_names() -> Tuple[str, ...]
        the names a classnames_file may give instead of a file ("imagenet")
    name_or_path(value, among) -> Tuple[Optional[str], Tuple[str, ...]]
        (the registered name ``value`` is, or None when it must be a path; every accepted name)
        for ``among`` one of NAME_KINDS: "dataset", a task, or "vocabulary"
    dataset_spec(name, task=None) -> DatasetSpec
        the spec, or ValueError in one line listing the accepted names
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from unirepclip.data import builders as b
from unirepclip.data.builders import VAL_FRACTION, BuildArgs, Classes, ZeroShotTask
from unirepclip.data.rows import (Subset, base_dataset, dataset_rows, held_out_rows,
                                  subset_indices)
from unirepclip.data.vocabularies import VOCABULARIES, resolve_vocabulary, vocabulary_names

__all__ = ["DatasetSpec", "DATASETS", "KINDS", "TASKS", "PROBE_SPLITS", "NAME_KINDS",
           "dataset_names", "dataset_spec", "name_or_path", "vocabulary_names", "VOCABULARIES",
           "load_dataset", "load_classified", "dataset_captions", "resolve_vocabulary",
           "BuildArgs", "Classes", "ZeroShotTask", "Subset", "subset_indices", "base_dataset",
           "dataset_rows", "held_out_rows", "VAL_FRACTION"]

#: What a name means: rendered on demand, shipped in an installed package, a folder layout read
#: from ``data_dir``, or a CLIP_benchmark dataset read from ``data_dir``.
KINDS = ("synthetic", "packaged", "folder", "benchmark")
#: What a dataset serves: zero-shot classification (its classes), retrieval (captions per
#: image), linear probes (train / val / test splits).
TASKS = ("classification", "retrieval", "probe")
PROBE_SPLITS = ("train", "val", "test")
NAME_KINDS = ("dataset",) + TASKS + ("vocabulary",)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One row of :data:`DATASETS`, everything a caller may ask about a name.

    ``build`` makes the whole ``split`` (``splits[0]`` is the one a single-split caller
    evaluates); ``endless``: it renders exactly the ``n`` asked for. ``layout`` says what
    ``data_dir`` holds (empty: the set needs no files). ``classes(rows, args)`` gives the zero-shot
    tasks of built rows (classification), ``captions(built split)`` each row's captions
    (retrieval). ``targets``: the class tasks that may label its rows (``target=`` picks one;
    empty: it has one). ``vocabulary``: its class names come from ``classnames_file``.
    ``first_look``: notebook 01 shows its ``"own"`` images, or ``"photos"`` scored against a
    vocabulary (a set of real images whose own classes mean nothing to a first look).
    """

    name: str
    kind: str
    build: Callable[[BuildArgs], Any]
    splits: Tuple[str, ...]
    summary: str
    tasks: Tuple[str, ...] = ("classification",)
    layout: str = ""
    endless: bool = False
    classes: Optional[Callable[[Any, BuildArgs], Classes]] = None
    captions: Optional[Callable[[Any], List[List[str]]]] = None
    targets: Tuple[str, ...] = ()
    vocabulary: bool = False
    first_look: str = "photos"

    def __post_init__(self):
        where = f"DatasetSpec {self.name!r}"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind={self.kind!r} is not one of {KINDS}")
        odd = [t for t in self.tasks if t not in TASKS]
        if odd or not self.tasks:
            raise ValueError(f"{where}: tasks={self.tasks!r}; each must be one of {TASKS}")
        if ("classification" in self.tasks) != (self.classes is not None):
            raise ValueError(f"{where}: a classification set needs classes=, and only it")
        if ("retrieval" in self.tasks) != (self.captions is not None):
            raise ValueError(f"{where}: a retrieval set needs captions=, and only it")
        if "probe" in self.tasks and not set(PROBE_SPLITS) <= set(self.splits):
            raise ValueError(f"{where}: a probe set needs the splits {PROBE_SPLITS}, has "
                             f"{self.splits}")
        if self.first_look not in ("own", "photos"):
            raise ValueError(f"{where}: first_look={self.first_look!r} is not 'own' or 'photos'")

    @property
    def default_split(self) -> str:
        return self.splits[0]

    def data_root(self, data_dir: Optional[str]) -> str:
        """``data_dir`` with ``{dataset}`` replaced by the name (``""`` for none)."""
        return str(data_dir or "").replace("{dataset}", self.name)


def _benchmark_spec(name: str, bench: Any) -> DatasetSpec:
    retrieval = bench.task == "retrieval"
    splits = b.benchmark_splits(tuple(bench.splits))
    tasks = ("retrieval",) if retrieval else (
        ("classification", "probe") if set(PROBE_SPLITS) <= set(splits) else ("classification",))
    return DatasetSpec(
        name, "benchmark", functools.partial(b.build_benchmark, name), splits,
        f"CLIP_benchmark's {name} ({bench.task}): data_dir holds {bench.layout}", tasks,
        layout=bench.layout, classes=None if retrieval else b.classes_benchmark,
        captions=b.captions_benchmark if retrieval else None)


def _table() -> Dict[str, DatasetSpec]:
    from unirepclip.data.benchmarks import BENCHMARKS

    own = (
        DatasetSpec("synthetic", "synthetic", b.build_synthetic, ("test", "train", "val"),
                    "the synthetic world", ("classification", "retrieval", "probe"),
                    endless=True, classes=b.classes_synthetic, captions=b.captions_synthetic,
                    targets=("shape", "colour"), first_look="own"),
        DatasetSpec("imagefolder", "folder", b.build_imagefolder, ("all", "train", "val", "test"),
                    "an image folder data_dir/<class>/<image> (split: data_dir/<split>)",
                    ("classification", "probe"), layout="<class>/<image> (a split: "
                    "<split>/<class>/<image>)", classes=b.classes_imagefolder, vocabulary=True),
        DatasetSpec("digits", "packaged", b.build_digits, ("test", "train", "val", "all"),
                    "scikit-learn's handwritten digits", ("classification", "probe"),
                    classes=b.classes_digits, first_look="own"),
        DatasetSpec("skimage", "packaged", b.build_skimage, ("all",),
                    "scikit-image's sample photographs, each its own class",
                    classes=b.classes_skimage),
    )
    specs = list(own) + [_benchmark_spec(n, bench) for n, bench in BENCHMARKS.items()]
    return {s.name: s for s in specs}


DATASETS: Dict[str, DatasetSpec] = _table()


# ------------------------------------------------------------------------------------------------
# Torch-free queries
# ------------------------------------------------------------------------------------------------
def dataset_names(task: Optional[str] = None, *, splits: Sequence[str] = ()) -> Tuple[str, ...]:
    """The names of :data:`DATASETS` in table order: all, or those serving ``task`` (one of
    :data:`TASKS`) and having every split in ``splits``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {TASKS}")
    return tuple(name for name, spec in DATASETS.items()
                 if (task is None or task in spec.tasks) and all(s in spec.splits for s in splits))


def name_or_path(value: str, among: str) -> Tuple[Optional[str], Tuple[str, ...]]:
    """What a parameter's ``value`` is: ``(name, accepted)`` where ``name`` is the registered name
    ``value`` is (None: it is no registered name, so it must be a path) and ``accepted`` every
    name of ``among``: ``"dataset"`` (any), a task of :data:`TASKS` (``"retrieval"`` for a
    ``captions_file``) or ``"vocabulary"`` (a ``classnames_file``)."""
    if among not in NAME_KINDS:
        raise ValueError(f"among={among!r} is not one of {NAME_KINDS}")
    accepted = (vocabulary_names() if among == "vocabulary" else
                dataset_names(None if among == "dataset" else among))
    return (value if value in accepted else None), accepted


def dataset_spec(name: str, task: Optional[str] = None) -> DatasetSpec:
    """The spec of ``name`` (serving ``task`` when given); ``ValueError`` in one line naming the
    value and the accepted names otherwise."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"dataset={name!r} is not one of {dataset_names(task)}")
    if task is None or task in spec.tasks:
        return spec
    if task == "classification" and "retrieval" in spec.tasks:
        raise ValueError(f"dataset={name!r} is a retrieval set (images and captions, no "
                         f"classes): give it as captions_file={name!r} beside a classification "
                         f"dataset")
    raise ValueError(f"dataset={name!r} serves {', '.join(spec.tasks)}, not {task} (splits "
                     f"{spec.splits}); {task}: one of {dataset_names(task)}")


# ------------------------------------------------------------------------------------------------
# The datasets themselves
# ------------------------------------------------------------------------------------------------
def _prepare(spec: DatasetSpec, split: Optional[str], n: Any, options: Dict[str, Any]
             ) -> BuildArgs:
    split = spec.default_split if split is None else split
    if split not in spec.splits:
        raise ValueError(f"split={split!r}: dataset={spec.name!r} has the splits {spec.splits}")
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n_images={n!r}: expected a non-negative integer")
    if spec.endless and n <= 0:
        raise ValueError(f"n_images must be > 0 for dataset={spec.name!r} (it is endless)")
    return BuildArgs(split, int(n), int(options.get("image_size", 64)),
                     int(options.get("seed", 0)), spec.data_root(options.get("data_dir")),
                     options.get("classnames_file") or "", options.get("target", "shape"),
                     options.get("transform"))


def _rows(spec: DatasetSpec, a: BuildArgs) -> Any:
    ds = spec.build(a)
    if spec.endless:
        return ds
    idx = subset_indices(len(ds), a.n, a.seed)
    if idx is None:
        return ds
    if isinstance(ds, Subset):  # a benchmark's carved train/val: one level of rows, not two
        return Subset(ds.dataset, ds.indices[idx])
    return Subset(ds, idx)


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
        data_dir: where the files are (``{dataset}`` stands for the name).
        classnames_file: an image folder's class names (:mod:`unirepclip.data.vocabularies`).
        target: what a synthetic item's target is (``"shape"``, ``"colour"``, ...).
        transform: applied to each image (default none: ``dataset[i]`` is a PIL image).

    Raises ``ValueError`` naming the parameter at fault.
    """
    spec = dataset_spec(name)
    return _rows(spec, _prepare(spec, split, n, dict(
        image_size=image_size, seed=seed, data_dir=data_dir, classnames_file=classnames_file,
        target=target, transform=transform)))


def load_classified(name: str, split: Optional[str] = None, *, n: int, image_size: int = 64,
                    seed: int = 0, data_dir: str = "", classnames_file: str = "",
                    target: str = "shape") -> Tuple[Any, Classes]:
    """A classification set's rows (as :func:`load_dataset`) and their zero-shot tasks."""
    spec = dataset_spec(name, "classification")
    args = _prepare(spec, split, n, dict(image_size=image_size, seed=seed, data_dir=data_dir,
                                         classnames_file=classnames_file, target=target))
    rows = _rows(spec, args)
    return rows, spec.classes(rows, args)


def dataset_captions(name: str, rows: Any) -> List[List[str]]:
    """Each row's captions of a retrieval set's ``rows`` (built by :func:`load_dataset`)."""
    per_row = dataset_spec(name, "retrieval").captions(base_dataset(rows))
    return [list(per_row[int(i)]) for i in dataset_rows(rows)]
