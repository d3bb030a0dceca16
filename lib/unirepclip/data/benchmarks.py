"""The datasets of LAION's CLIP_benchmark by its names, read from a local root, never downloaded.

The model card says its zero-shot figures were measured with CLIP_benchmark, so the workbook reads
those datasets the way that benchmark does: through its own builder
(``clip_benchmark.datasets.builder.build_dataset``, which wraps torchvision's dataset classes), with
its class names (``en_classnames.json``, or the dataset's own where the builder keeps them) and its
prompt templates (``en_zeroshot_classification_templates.json``, ImageNet's 80 for the ImageNet
variants and ObjectNet). Its metrics are not used: the workbook's own are.

Nothing is downloaded. ``build_dataset`` is called with ``download=False``, and because several of
its branches fetch files whenever a path is missing whatever ``download`` says (ImageNet-A/R/Sketch,
ImageNetV2, ObjectNet, FER2013, COCO, Flickr30k), :func:`load_benchmark` first checks that every
path the split needs is there (:data:`BENCHMARKS`' ``needs``) and otherwise raises
:class:`BenchmarkNotFound`, one line naming the dataset and the layout expected.

``data_dir`` is the dataset's root, CLIP_benchmark's ``--dataset_root``; as there, ``{dataset}`` in
it stands for the name (``/data/{dataset}`` serves every dataset from one setting).

Splits are the builder's, renamed to the workbook's ``train`` / ``val`` / ``test``. A dataset
without predefined splits (EuroSAT, SUN397, Caltech-101, RESISC45) is evaluated whole, as
CLIP_benchmark does for zero-shot. RESISC45 is the one exception to the builder: CLIP_benchmark has
it only through VTAB (TensorFlow Datasets), so it is read here as its own release's folder of class
folders with torchvision's ``ImageFolder``, class names as the folders (which are TFDS's label
names) and CLIP_benchmark's ``resisc45`` templates.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Benchmark", "BENCHMARKS", "BenchmarkNotFound", "BenchmarkDataset",
           "benchmark_names", "benchmark_root", "load_benchmark", "clip_benchmark_json"]


class BenchmarkNotFound(FileNotFoundError):
    """A benchmark dataset is not on disk in the layout its loader reads."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One CLIP_benchmark dataset: ``splits`` maps the workbook's split to the builder's;
    ``needs[split]`` are the paths (relative to the root) that split cannot do without;
    ``layout`` says in one line what the root holds; ``n_classes`` is checked after building where
    the class list is fixed (ImageNet's 1000 and its 200 / 113 class subsets)."""

    name: str
    task: str  # "classification" | "retrieval"
    splits: Mapping[str, str]
    needs: Mapping[str, Tuple[str, ...]]
    layout: str
    n_classes: Optional[int] = None
    min_files: int = 0  # files the loader insists on (ImageNetV2 re-downloads when short)


def _b(name: str, layout: str, splits: Mapping[str, str], needs: Mapping[str, Sequence[str]],
       task: str = "classification", **kw: Any) -> Benchmark:
    return Benchmark(name, task, dict(splits), {s: tuple(p) for s, p in needs.items()}, layout,
                     **kw)


_TT = {"test": "test", "train": "train"}
_TVT = {"test": "test", "train": "train", "val": "val"}
_ALL = {"test": "test"}  # no predefined split: the builder ignores it, the whole set is "test"

BENCHMARKS: Dict[str, Benchmark] = {b.name: b for b in (
    _b("cifar10", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (CIFAR-10's "
       "python version, md5-checked by torchvision)", _TT,
       {"train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
        + ["cifar-10-batches-py/batches.meta"],
        "test": ["cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"]}),
    _b("cifar100", "cifar-100-python/{train,test,meta} (CIFAR-100's python version)", _TT,
       {"train": ["cifar-100-python/train", "cifar-100-python/meta"],
        "test": ["cifar-100-python/test", "cifar-100-python/meta"]}),
    _b("stl10", "stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin,class_names.txt}", _TT,
       {s: [f"stl10_binary/{s}_X.bin", f"stl10_binary/{s}_y.bin", "stl10_binary/class_names.txt"]
        for s in _TT}),
    _b("food101", "food-101/{images/<class>/<id>.jpg,meta/{train,test}.json}", _TT,
       {s: ["food-101/images", f"food-101/meta/{s}.json"] for s in _TT}),
    _b("pets", "oxford-iiit-pet/{images/<name>.jpg,annotations/{trainval,test}.txt}",
       {"test": "test", "train": "trainval"},
       {"test": ["oxford-iiit-pet/images", "oxford-iiit-pet/annotations/test.txt"],
        "train": ["oxford-iiit-pet/images", "oxford-iiit-pet/annotations/trainval.txt"]}),
    _b("flowers", "flowers-102/{jpg/image_<n>.jpg,imagelabels.mat,setid.mat}", _TVT,
       {s: ["flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"]
        for s in _TVT}),
    _b("cars", "stanford_cars/{devkit/{cars_meta.mat,cars_train_annos.mat},cars_train/,cars_test/,"
       "cars_test_annos_withlabels.mat}", _TT,
       {"train": ["stanford_cars/devkit/cars_meta.mat", "stanford_cars/devkit/cars_train_annos.mat",
                  "stanford_cars/cars_train"],
        "test": ["stanford_cars/devkit/cars_meta.mat", "stanford_cars/cars_test_annos_withlabels.mat",
                 "stanford_cars/cars_test"]}),
    _b("fgvc_aircraft", "fgvc-aircraft-2013b/data/{images/,variants.txt,images_variant_"
       "{train,val,test}.txt}", _TVT,
       {s: ["fgvc-aircraft-2013b/data/images", "fgvc-aircraft-2013b/data/variants.txt",
            f"fgvc-aircraft-2013b/data/images_variant_{s}.txt"] for s in _TVT}),
    _b("dtd", "dtd/dtd/{images/<class>/,labels/{train,val,test}1.txt}", _TVT,
       {s: ["dtd/dtd/images", f"dtd/dtd/labels/{s}1.txt"] for s in _TVT}),
    _b("eurosat", "eurosat/2750/<class>/<image>.jpg (the RGB release; no predefined split)", _ALL,
       {"test": ["eurosat/2750"]}),
    _b("gtsrb", "gtsrb/{GTSRB/Training/<class>/,GTSRB/Final_Test/Images/,GT-final_test.csv}", _TT,
       {"train": ["gtsrb/GTSRB/Training"],
        "test": ["gtsrb/GTSRB/Final_Test/Images", "gtsrb/GT-final_test.csv"]}),
    _b("sun397", "SUN397/{ClassName.txt,<letter>/<class>/<image>.jpg} (no predefined split)", _ALL,
       {"test": ["SUN397/ClassName.txt"]}),
    _b("country211", "country211/{train,valid,test}/<country code>/<image>.jpg",
       {"test": "test", "train": "train", "val": "valid"},
       {"test": ["country211/test"], "train": ["country211/train"], "val": ["country211/valid"]}),
    _b("fer2013", "{train,test}/<emotion>/<image>.jpg (the Kaggle msambare/fer2013 layout)", _TT,
       {s: [s] for s in _TT}),
    _b("pcam", "pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5 (needs h5py)", _TVT,
       {s: [f"pcam/camelyonpatch_level_2_split_{'valid' if s == 'val' else s}_{xy}.h5"
            for xy in "xy"] for s in _TVT}),
    _b("renderedsst2", "rendered-sst2/{train,valid,test}/{negative,positive}/<image>.png", _TVT,
       {s: [f"rendered-sst2/{'valid' if s == 'val' else s}/{c}" for c in ("negative", "positive")]
        for s in _TVT}),
    _b("resisc45", "NWPU-RESISC45/<class>/<class>_<nnn>.jpg (45 class folders; no predefined "
       "split)", _ALL, {"test": ["NWPU-RESISC45"]}, n_classes=45),
    _b("voc2007", "VOCdevkit/VOC2007/{JPEGImages/,Annotations/,ImageSets/Main/<class>_"
       "{train,test}.txt}", _TT,
       {s: ["VOCdevkit/VOC2007/JPEGImages", "VOCdevkit/VOC2007/Annotations",
            f"VOCdevkit/VOC2007/ImageSets/Main/aeroplane_{s}.txt"] for s in _TT}, n_classes=20),
    _b("caltech101", "caltech101/101_ObjectCategories/<class>/<image>.jpg (102 folders, "
       "BACKGROUND_Google included as CLIP_benchmark does; no predefined split)",
       _ALL, {"test": ["caltech101/101_ObjectCategories"]},
       n_classes=102),
    _b("mnist", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", _TT,
       {"train": ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"],
        "test": ["MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]},
       n_classes=10),
    _b("imagenet1k", "val/<wnid>/<image>.JPEG (ImageNet-1k val in its 1000 WordNet-id folders)",
       _ALL, {"test": ["val"]}, n_classes=1000),
    _b("imagenetv2", "ImageNetV2-matched-frequency/<class index 0..999>/<image>.jpeg (all 10000 "
       "images)", _ALL, {"test": ["ImageNetV2-matched-frequency"]}, n_classes=1000,
       min_files=10000),
    _b("imagenet_sketch", "<wnid>/<image>.JPEG (1000 WordNet-id folders, the 'sketch' folder of "
       "ImageNet-Sketch)", _ALL, {"test": []}, n_classes=1000),
    _b("imagenet-a", "<wnid>/<image>.jpg (ImageNet-A's 200 WordNet-id folders)", _ALL,
       {"test": []}, n_classes=200),
    _b("imagenet-r", "<wnid>/<image>.jpg (ImageNet-R's 200 WordNet-id folders)", _ALL,
       {"test": []}, n_classes=200),
    _b("objectnet", "{folder_to_objectnet_label.json,objectnet_to_imagenet_1k.json,pytorch_to_"
       "imagenet_2012_id.json,imagenet_to_label_2012_v2,objectnet-1.0/images/<folder>/}", _ALL,
       {"test": ["folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json",
                 "pytorch_to_imagenet_2012_id.json", "imagenet_to_label_2012_v2",
                 "objectnet-1.0/images"]}, n_classes=113),
    _b("mscoco_captions", "{val2014/<image>.jpg,coco_test_karpathy.json} (COCO 2014 images, the "
       "Karpathy split's caption JSON)", {"test": "test"},
       {"test": ["val2014", "coco_test_karpathy.json"]}, task="retrieval"),
    _b("flickr30k", "{<image>.jpg,flickr30k_test_karpathy.txt} (images and the Karpathy split's "
       "'image,caption' lines)", {"test": "test"},
       {"test": ["flickr30k_test_karpathy.txt"]}, task="retrieval"),
)}

# the ImageFolder-based builders: their labels index the folders found, so the folders must be
# exactly the classes the builder names (a missing folder would shift every later label)
_FOLDER_CLASSES = ("imagenet1k", "imagenet_sketch", "imagenet-a", "imagenet-r", "fer2013",
                   "resisc45")


def benchmark_names(task: Optional[str] = None, *, splits: Sequence[str] = ()) -> Tuple[str, ...]:
    """The names of :data:`BENCHMARKS` (of one ``task``; having every split in ``splits``)."""
    return tuple(n for n, b in BENCHMARKS.items() if (task is None or b.task == task)
                 and all(s in b.splits for s in splits))


def benchmark_root(data_dir: str, name: str) -> Path:
    """``data_dir`` with ``{dataset}`` replaced by ``name`` (CLIP_benchmark's convention)."""
    if not data_dir:
        raise BenchmarkNotFound(f"dataset={name!r} needs data_dir, its local root holding "
                                f"{BENCHMARKS[name].layout}")
    return Path(str(data_dir).replace("{dataset}", name)).expanduser()


def clip_benchmark_json(kind: str) -> Dict[str, Any]:
    """CLIP_benchmark's English ``classnames`` or ``templates`` file, as installed."""
    import clip_benchmark.datasets as cbd

    files = {"classnames": "en_classnames.json",
             "templates": "en_zeroshot_classification_templates.json"}
    with open(Path(cbd.__file__).parent / files[kind], encoding="utf-8") as f:
        return json.load(f)


def _not_found(b: Benchmark, root: Path, what: str) -> BenchmarkNotFound:
    return BenchmarkNotFound(f"dataset={b.name!r}: {what} under data_dir={str(root)!r}; expected "
                             f"{b.layout}")


def _check_layout(b: Benchmark, root: Path, split: str) -> None:
    if not root.is_dir():
        raise _not_found(b, root, "no such folder")
    missing = [p for p in b.needs[split] if not (root / p).exists()]
    if missing:
        raise _not_found(b, root, f"missing {', '.join(missing)}")
    if not b.needs[split] and not any(p.is_dir() for p in root.iterdir()):
        raise _not_found(b, root, "no class folders")
    if b.min_files:
        found = sum(1 for _ in (root / b.needs[split][0]).glob("*/*.jpeg"))
        if found != b.min_files:
            # CLIP_benchmark's ImageNetV2 loader downloads the archive when the count is short
            raise _not_found(b, root, f"{found} of its {b.min_files} images")


def _templates(raw: Sequence[str], name: str) -> List[str]:
    # CLIP_benchmark writes the slot as {c}; the workbook's prompt templates use {}
    out = []
    for t in raw:
        if not isinstance(t, str) or t.count("{c}") != 1:
            raise ValueError(f"CLIP_benchmark's template {t!r} for {name!r} lacks one '{{c}}'")
        out.append(t.replace("{c}", "{}"))
    return out


def _resisc45(root: Path) -> Any:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(root / "NWPU-RESISC45"))
    ds.templates = clip_benchmark_json("templates")["resisc45"]
    return ds


def _imagenet1k(root: Path) -> Any:
    # CLIP_benchmark's own builder reads torchvision's ImageNet (the devkit archives); the val
    # folder in WordNet-id folders is what people hold, and sorted wnids are ImageNet's order
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(root / "val"))
    ds.classes = list(clip_benchmark_json("classnames")["imagenet1k"])
    ds.templates = clip_benchmark_json("templates")["imagenet1k"]
    return ds


def _build(b: Benchmark, root: Path, split: str) -> Any:
    if b.name == "resisc45":
        return _resisc45(root)
    if b.name == "imagenet1k":
        return _imagenet1k(root)
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_default_task

    with warnings.catch_warnings():
        # "split argument ignored": the datasets without predefined splits, evaluated whole
        warnings.simplefilter("ignore", UserWarning)
        return build_dataset(b.name, root=str(root), transform=None, split=b.splits[split],
                             download=False, task=get_dataset_default_task(b.name))


def _targets(ds: Any, name: str) -> np.ndarray:
    """Every row's class index, read from the dataset's index (no image is opened)."""
    import os

    if name == "objectnet":  # filters ImageFolder's samples but not its targets
        return np.asarray([ds.label_map[os.path.basename(os.path.dirname(p))]
                           for p, _ in ds.samples], dtype=np.int64)
    if name == "imagenetv2":
        return np.asarray([int(p.parent.name) for p in ds.fnames], dtype=np.int64)
    if name == "voc2007":
        return np.asarray([box[2] for box in ds.bndboxes], dtype=np.int64)
    for attr in ("targets", "_labels", "labels", "y"):
        t = getattr(ds, attr, None)
        if t is not None:
            t = np.asarray(t, dtype=np.int64)
            break
    else:
        samples = getattr(ds, "_samples", None)
        if samples is None:  # PCAM keeps its labels in an HDF5 file
            return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)
        t = np.asarray([s[1] for s in samples], dtype=np.int64)
    tt = getattr(ds, "target_transform", None)
    return np.asarray([tt(int(v)) for v in t], dtype=np.int64) if tt is not None else t


class BenchmarkDataset:
    """A built CLIP_benchmark dataset: ``dataset[i]`` is ``(RGB PIL image, target)``, the target a
    class index (classification) or the row itself (retrieval: its captions are
    :meth:`captions`); ``classes``, ``templates`` (``{}`` slots) and ``targets`` for zero-shot."""

    def __init__(self, benchmark: Benchmark, split: str, root: Path, inner: Any,
                 transform: Optional[Callable] = None):
        self.benchmark, self.split, self.root, self.inner = benchmark, split, root, inner
        self.transform = transform
        self.name = benchmark.name
        if benchmark.task == "classification":
            self.classes: List[str] = [str(c) for c in inner.classes]
            self.templates: List[str] = _templates(inner.templates, self.name)
            self.targets = _targets(inner, self.name)
        else:
            self.classes, self.templates = [], []
            self.targets = np.arange(len(inner), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        img, _ = self.inner[int(i)]
        img = img.convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[int(i)])

    def captions(self) -> List[List[str]]:
        """Each image's captions, in row order (retrieval sets), read without opening images."""
        if self.name == "mscoco_captions":
            return [[a["caption"] for a in self.inner.coco.imgToAnns[i]] for i in self.inner.ids]
        if self.name == "flickr30k":
            return [list(c) for _, c in self.inner.data]
        raise ValueError(f"dataset={self.name!r} is not a retrieval set")

    @property
    def identity(self) -> Dict[str, Any]:
        digest = hashlib.sha256(np.ascontiguousarray(self.targets).tobytes()
                                + "\n".join(self.classes).encode()).hexdigest()
        return {"class": "BenchmarkDataset", "name": self.name, "split": self.split,
                "root": str(self.root.resolve()), "n": len(self), "targets_classes": digest}

    def __repr__(self) -> str:
        return (f"BenchmarkDataset({self.name!r}, split={self.split!r}, root={str(self.root)!r}, "
                f"n={len(self)})")


def load_benchmark(name: str, split: str = "test", *, data_dir: str,
                   transform: Optional[Callable] = None) -> BenchmarkDataset:
    """The CLIP_benchmark dataset ``name`` (a key of :data:`BENCHMARKS`), ``split`` of it, read
    from ``data_dir`` (``{dataset}`` replaced by the name) without any download.

    Raises :class:`BenchmarkNotFound` (one line: the dataset, what is missing, the layout) when
    the files are not there or the loader cannot read them, ``ValueError`` for an unknown name or
    split, and ``ImportError`` naming the package a dataset needs (h5py for PCAM).
    """
    b = BENCHMARKS.get(name)
    if b is None:
        raise ValueError(f"dataset={name!r} is not one of CLIP_benchmark's {tuple(BENCHMARKS)}")
    if split not in b.splits:
        raise ValueError(f"split={split!r}: dataset={name!r} has the splits {tuple(b.splits)}")
    root = benchmark_root(data_dir, name)
    _check_layout(b, root, split)
    if name == "pcam":
        try:
            import h5py  # noqa: F401
        except ImportError as e:
            raise ImportError("dataset='pcam' is stored as HDF5: pip install h5py") from e
    try:
        inner = _build(b, root, split)
    except (RuntimeError, FileNotFoundError, AssertionError, KeyError, IndexError,
            ValueError, OSError) as e:
        first = str(e).splitlines()[0][:240] if str(e) else type(e).__name__
        raise _not_found(b, root, f"unreadable ({type(e).__name__}: {first})") from e
    folders = (inner.class_to_idx if b.name in _FOLDER_CLASSES else
               inner.categories if b.name == "caltech101" else None)
    if folders is not None and len(folders) != len(inner.classes):
        raise _not_found(b, root, f"{len(folders)} class folders for the {len(inner.classes)} "
                                  f"classes")
    if b.name.startswith("imagenet") and b.name != "imagenetv2":
        from clip_benchmark.datasets.builder import all_imagenet_wordnet_ids

        odd = sorted(set(inner.class_to_idx) - set(all_imagenet_wordnet_ids))
        if odd:
            raise _not_found(b, root, f"folder {odd[0]!r} is not an ImageNet WordNet id")
    if b.n_classes is not None and len(inner.classes) != b.n_classes:
        raise _not_found(b, root, f"{len(inner.classes)} classes instead of {b.n_classes}")
    return BenchmarkDataset(b, split, root, inner, transform)
