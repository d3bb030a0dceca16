"""The cue-conflict experiment's human raw data and 16-class ImageNet mapping, shipped as data.

The files beside this module are bethgelab's model-vs-human toolbox's (commit
79ed7cd1d9ac3a114e71b6638f0a98bdd627316c; provenance, sha256 and licence in ``README.md``): the
ten subjects' trials of the cue-conflict experiment (Geirhos et al., ICLR 2019) and, for each of
the 16 categories, the ImageNet-1k indices the toolbox averages over. This module only reads them;
the shape bias is computed by :mod:`unirepclip.eval.shape_bias`, the same function for people and
models. Torch-free.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Dict, List, Mapping, Tuple

__all__ = ["HERE", "SOURCE", "CATEGORIES", "SHA256", "SUBJECT_FILES", "INDICES_FILE",
           "HumanTrials", "class_from_stem", "texture_of", "human_trials", "imagenet_indices",
           "sha256_of"]

HERE = Path(__file__).resolve().parent
SOURCE = "github.com/bethgelab/model-vs-human (commit 79ed7cd1d9ac3a114e71b6638f0a98bdd627316c)"
#: The 16 categories of the cue-conflict stimuli, in the toolbox's (alphabetical) order.
CATEGORIES: Tuple[str, ...] = (
    "airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock", "dog",
    "elephant", "keyboard", "knife", "oven", "truck")
SUBJECT_FILES: Tuple[str, ...] = tuple(
    f"cue-conflict_subject-{i:02d}_session_1.csv" for i in range(1, 11))
INDICES_FILE = "imagenet_indices_16.json"
#: sha256 of the upstream files (the shipped copies are byte-identical).
SHA256: Mapping[str, str] = MappingProxyType({
    "cue-conflict_subject-01_session_1.csv": "8e100c7aad0e4ab891cb16a1fea9768edc882f9e47369549d45aa765b0897b1a",
    "cue-conflict_subject-02_session_1.csv": "e9988e3eee0d4f9500fdf626d043e8382e96032a3f791b0d4886807a46e632ad",
    "cue-conflict_subject-03_session_1.csv": "d3907fee2e612e6cd13c316a069f2e5fd41b0a55218b79be9537e1276c507d88",
    "cue-conflict_subject-04_session_1.csv": "1d7b093f1174229a68e3bfac2f68877b2747bac001ad4aadbff5d5f89a44630e",
    "cue-conflict_subject-05_session_1.csv": "f7e69864b7a981f6daaf51d9fc9945b185020e482956b38f477bf8eec9a5fa86",
    "cue-conflict_subject-06_session_1.csv": "b63d7b4c52374a583f5e342aab46de5c445ef314501abc4b36736531c4d5f532",
    "cue-conflict_subject-07_session_1.csv": "75959b12b8ccb9a265e20cb2beef05ac0dbf4052746742dd7e88818e69e2774c",
    "cue-conflict_subject-08_session_1.csv": "b50f6956933c0a20eaf19e846c1fb5896068550da4597e8a7fc30aaf557ea02f",
    "cue-conflict_subject-09_session_1.csv": "c94aba7fb9bf6887ec2fd0f554b145a6ed66c295b26a5c19594e1c0174253878",
    "cue-conflict_subject-10_session_1.csv": "aa7b4f124bf605fd614b704d7556bb1a8088364b3113f9f918257b5cd3925f1b",
    "imagenet_indices_16.json": "d0760b269e818328a546f47eb64ba799266b4bf2036e7a6dc1a5d8762279c957",
})
_COLUMNS = ("subj", "object_response", "category", "imagename")
_TRAILING_DIGITS = re.compile(r"\d+$")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def class_from_stem(stem: str) -> str:
    """The class a stimulus part names: ``"clock3"`` -> ``"clock"`` (trailing digits dropped)."""
    return _TRAILING_DIGITS.sub("", stem)


def texture_of(imagename: str) -> str:
    """The texture class of a cue-conflict image name: the class its last ``-`` part names
    (``"0002_s5n_s01_0_bird_00_bird2-clock3.png"`` and ``"bird2-clock3.png"`` -> ``"clock"``)."""
    stem = Path(imagename).stem
    if "-" not in stem:
        raise ValueError(f"{imagename!r} is not a cue-conflict image name (<shape><n>-<texture><n>"
                         f".png): it has no '-'")
    return class_from_stem(stem.rsplit("-", 1)[1])


@dataclasses.dataclass(frozen=True)
class HumanTrials:
    """One subject's trials as the metric reads them (aligned lists, one entry per trial)."""

    subject: str
    shape: List[str]
    texture: List[str]
    response: List[str]
    imagename: List[str]

    def __len__(self) -> int:
        return len(self.shape)


def _read_subject(path: Path) -> HumanTrials:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in _COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: expected the toolbox's columns {_COLUMNS}, missing {missing}")
    subjects = {r["subj"] for r in rows}
    if len(subjects) != 1:
        raise ValueError(f"{path}: one subject per file expected, found {sorted(subjects)}")
    return HumanTrials(subject=subjects.pop(), shape=[r["category"] for r in rows],
                       texture=[texture_of(r["imagename"]) for r in rows],
                       response=[r["object_response"] for r in rows],
                       imagename=[r["imagename"] for r in rows])


@functools.lru_cache(maxsize=None)
def _human_trials() -> Tuple[HumanTrials, ...]:
    return tuple(_read_subject(HERE / name) for name in SUBJECT_FILES)


def human_trials() -> List[HumanTrials]:
    """The ten subjects' trials, subject-01 first (every trial, shape == texture ones included:
    the metric drops those)."""
    return list(_human_trials())


@functools.lru_cache(maxsize=None)
def _indices() -> Mapping[str, Tuple[int, ...]]:
    path = HERE / INDICES_FILE
    data = json.loads(path.read_text(encoding="utf-8"))["indices"]
    if tuple(sorted(data)) != CATEGORIES:
        raise ValueError(f"{path}: categories {sorted(data)} are not the 16 of the cue-conflict "
                         f"stimuli {list(CATEGORIES)}")
    return MappingProxyType({c: tuple(int(i) for i in data[c]) for c in CATEGORIES})


def imagenet_indices() -> Dict[str, Tuple[int, ...]]:
    """``{category: ImageNet-1k indices}`` for the 16 categories, in :data:`CATEGORIES` order."""
    return dict(_indices())
