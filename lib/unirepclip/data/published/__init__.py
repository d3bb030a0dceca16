"""OpenCLIP's published results and model profiles, shipped as data.

Two tables of open_clip v3.3.0 (``docs/openclip_results.csv``: zero-shot results on 38 tasks per
(model, pretrained tag); ``docs/model_profile.csv``: parameters and GFLOPs per model, image and text
tower apart) ship whole beside this module, with their provenance, sha256 and licence in
``README.md``. This module reads them and selects the peers a reviewer of CLIP-UniRepLKNet-L would
name (:data:`PEERS`).

Units are converted here, once: the tables count a multiply-add as two FLOPs, this package counts
MACs (:func:`gflops_to_gmacs`). A task value of 0 is an evaluation that failed upstream: it is
shown as :data:`FAILED`, the published average (which counts it as 0) is kept as published, and
:attr:`PublishedResult.average_without_failed` is labelled apart.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import hashlib
from pathlib import Path
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "HERE", "RESULTS_FILE", "PROFILE_FILE", "SHA256", "SOURCE", "FLOPS_PER_MAC", "FAILED",
    "AVERAGE_COLUMN", "AVERAGE_WITHOUT_FAILED_LABEL", "IMAGENET", "PEERS", "CONVNET_PREFIXES",
    "gflops_to_gmacs", "is_convnet", "format_task", "sha256_of", "PublishedResult",
    "ModelProfile", "Peer", "PublishedLookupError", "read_results", "read_profiles",
    "published_result", "model_profile",
    "peers",
]

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "openclip_results.csv"
PROFILE_FILE = HERE / "model_profile.csv"
SOURCE = ("github.com/mlfoundations/open_clip v3.3.0 "
          "(commit 30573618fc375b12f094ef64cb3a1391cf611c45), docs/")
#: sha256 of the upstream files as published (the shipped copies are byte-identical).
SHA256: Dict[str, str] = {
    "openclip_results.csv": "6b3f9313e2e24691b31ab69b534b2553165be1a975dd149ee9b4a7facb384d21",
    "model_profile.csv": "6f0975464d02d31a4c7cfca79a100c47c0d01cf47222f4fa5b9bec5609677285",
}

#: open_clip's tables count a multiply-add as two floating-point operations.
FLOPS_PER_MAC = 2
#: How a task value of 0 (an upstream evaluation that failed) is shown.
FAILED = "failed"
AVERAGE_COLUMN = "Average perf. on 38 datasets"
AVERAGE_WITHOUT_FAILED_LABEL = "average without failed tasks"
IMAGENET = "ImageNet 1k"
_LEADING = ("name", "pretrained", "params (M)", "FLOPs (B)", AVERAGE_COLUMN)
_PROFILE_COLUMNS = ("model", "image_size", "mparams", "image_mparams", "text_mparams", "gflops",
                    "image_gflops", "text_gflops")

#: The peers a reviewer would name: the other big ConvNet CLIPs and the ViTs of the card's
#: "ViT-g to ViT-G" (open_clip's names and pretrained tags).
PEERS: Tuple[Tuple[str, str], ...] = (
    ("convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup"),
    ("convnext_large_d_320", "laion2b_s29b_b131k_ft_soup"),
    ("ViT-H-14", "laion2b_s32b_b79k"),
    ("ViT-g-14", "laion2b_s12b_b42k"),
    ("ViT-g-14", "laion2b_s34b_b88k"),
    ("ViT-bigG-14", "laion2b_s39b_b160k"),
)
#: open_clip model names whose image tower is convolutional (ConvNeXt through timm, ModifiedResNet).
CONVNET_PREFIXES = ("convnext", "RN")


def gflops_to_gmacs(gflops: float) -> float:
    """GMACs from the tables' GFLOPs (one multiply-add = :data:`FLOPS_PER_MAC` FLOPs)."""
    return gflops / FLOPS_PER_MAC


def is_convnet(name: str) -> bool:
    """Whether an open_clip model name has a convolutional image tower."""
    return name.startswith(CONVNET_PREFIXES)


def format_task(value: float, digits: int = 2) -> str:
    """A task value (a fraction) in %, or :data:`FAILED` for an upstream evaluation that failed."""
    return FAILED if value == 0 else f"{100 * value:.{digits}f}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class PublishedLookupError(LookupError):
    """A model, pretrained tag or task column the shipped tables do not have. Its message names
    the file and the key, and reads as it is (a KeyError's would be shown quoted)."""


class _GMacs:
    """A row's GMACs, read off one of its GFLOPs fields (the tables' unit): ``gmacs =
    _GMacs("gflops")`` is ``gflops_to_gmacs(row.gflops)``."""

    def __init__(self, gflops_field: str):
        self.field = gflops_field
        self.__doc__ = f"GMACs, converted from the table's ``{gflops_field}``."

    def __get__(self, row, owner=None) -> float:
        return self if row is None else gflops_to_gmacs(getattr(row, self.field))


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


@dataclasses.dataclass(frozen=True)
class PublishedResult:
    """One row of ``openclip_results.csv``. Task values are fractions, in the file's order;
    ``decimals`` is the number of decimal places the file gives its averages and task values."""

    name: str
    pretrained: str
    params_m: float
    gflops: float
    average: float
    tasks: Tuple[Tuple[str, float], ...]
    decimals: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.pretrained}"

    def task(self, name: str) -> float:
        for k, v in self.tasks:
            if k == name:
                return v
        raise PublishedLookupError(f"{RESULTS_FILE.name}: no task column {name!r}; "
                                   f"known: {[k for k, _ in self.tasks]}")

    @property
    def imagenet_top1(self) -> float:
        """ImageNet-1k zero-shot top-1, a fraction (0 if it failed upstream)."""
        return self.task(IMAGENET)

    @property
    def failed_tasks(self) -> Tuple[str, ...]:
        return tuple(k for k, v in self.tasks if v == 0)

    @property
    def mean_of_tasks(self) -> float:
        """The tasks' mean recomputed, failed tasks counted as 0 (as the published average)."""
        return sum(v for _, v in self.tasks) / len(self.tasks)

    @property
    def average_without_failed(self) -> float:
        """The mean over the tasks that did not fail (:data:`AVERAGE_WITHOUT_FAILED_LABEL`)."""
        ok = [v for _, v in self.tasks if v != 0]
        return sum(ok) / len(ok) if ok else float("nan")

    #: Whole-model GMACs (one image + one text), converted from the table's GFLOPs.
    gmacs = _GMacs("gflops")


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """One row of ``model_profile.csv``: parameters in millions, cost in GFLOPs as published
    (``*_gmacs`` converted) at ``image_size`` px."""

    model: str
    image_size: int
    params_m: float
    image_params_m: float
    text_params_m: float
    gflops: float
    image_gflops: float
    text_gflops: float

    image_gmacs = _GMacs("image_gflops")
    text_gmacs = _GMacs("text_gflops")
    gmacs = _GMacs("gflops")


@dataclasses.dataclass(frozen=True)
class Peer:
    """A peer's published result and its model's profile."""

    result: PublishedResult
    profile: ModelProfile

    @property
    def label(self) -> str:
        return self.result.label


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} holds {text!r}, not a number") from None


def _rows(path: Path, required: Sequence[str]) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}")
        rows = [(i, r) for i, r in enumerate(reader, start=2) if r]
    for line, r in rows:
        if len(r) != len(header):
            raise ValueError(f"{path}:{line}: {len(r)} cells for {len(header)} columns")
    return header, rows


@functools.lru_cache(maxsize=4)
def read_results(path: Path = RESULTS_FILE) -> Mapping[Tuple[str, str], PublishedResult]:
    """Every row of ``openclip_results.csv``, keyed by ``(name, pretrained)``."""
    path = Path(path)
    header, rows = _rows(path, _LEADING)
    if header[:len(_LEADING)] != list(_LEADING):
        raise ValueError(f"{path}: the first columns are {header[:5]}, expected {list(_LEADING)}")
    task_names = header[len(_LEADING):]
    out: Dict[Tuple[str, str], PublishedResult] = {}
    for line, r in rows:
        values = [_number(t, path, line, c) for t, c in zip(r[2:], header[2:])]
        key = (r[0], r[1])
        if key in out:
            raise ValueError(f"{path}:{line}: {key} appears twice")
        out[key] = PublishedResult(
            name=r[0], pretrained=r[1], params_m=values[0], gflops=values[1], average=values[2],
            tasks=tuple(zip(task_names, values[3:])), decimals=max(_decimals(t) for t in r[4:]))
    return MappingProxyType(out)


@functools.lru_cache(maxsize=4)
def read_profiles(path: Path = PROFILE_FILE) -> Mapping[str, ModelProfile]:
    """Every row of ``model_profile.csv``, keyed by model name."""
    path = Path(path)
    header, rows = _rows(path, _PROFILE_COLUMNS)
    col = {c: header.index(c) for c in _PROFILE_COLUMNS}
    out: Dict[str, ModelProfile] = {}
    for line, r in rows:
        v = {c: _number(r[i], path, line, c) for c, i in col.items() if c != "model"}
        out[r[col["model"]]] = ModelProfile(
            model=r[col["model"]], image_size=int(v["image_size"]), params_m=v["mparams"],
            image_params_m=v["image_mparams"], text_params_m=v["text_mparams"],
            gflops=v["gflops"], image_gflops=v["image_gflops"], text_gflops=v["text_gflops"])
    return MappingProxyType(out)


def _unknown(what: str, key: str, path: Path, known: Sequence[str]) -> PublishedLookupError:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {close}?" if close else ""
    return PublishedLookupError(f"{path.name}: no {what} {key!r}{hint}")


def published_result(name: str, pretrained: str) -> PublishedResult:
    """The published row of ``name`` with ``pretrained``; a :class:`PublishedLookupError`
    names the file and the key."""
    table = read_results()
    if (name, pretrained) not in table:
        tags = [p for n, p in table if n == name]
        if tags:
            raise _unknown(f"pretrained tag of {name}:", pretrained, RESULTS_FILE, tags)
        raise _unknown("model", name, RESULTS_FILE, sorted({n for n, _ in table}))
    return table[(name, pretrained)]


def model_profile(name: str) -> ModelProfile:
    """The profile row of model ``name``; a :class:`PublishedLookupError` names the file and the
    model."""
    table = read_profiles()
    if name not in table:
        raise _unknown("model", name, PROFILE_FILE, list(table))
    return table[name]


def peers(keys: Optional[Sequence[Tuple[str, str]]] = None) -> List[Peer]:
    """The peers' rows (:data:`PEERS` by default), each with its model's profile."""
    return [Peer(published_result(n, p), model_profile(n)) for n, p in (keys or PEERS)]
