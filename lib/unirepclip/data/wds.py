"""CLIP_benchmark's webdataset layout, read with Python's ``tarfile`` (no ``webdataset`` needed).

A dataset folder (CLIP_benchmark's ``build_wds_dataset``, the layout its
``clip_benchmark_export_wds`` writes and DataComp downloads)::

    <folder>/
        <split>/nshards.txt          the number of shards n (required)
        <split>/0.tar .. <n-1>.tar   the samples
        classnames.txt               one class name a line (classification)
        zeroshot_classification_templates.txt   one prompt a line, the class as {c}
        dataset_type.txt             "retrieval" or "multilabel" (absent: classification)

In a shard, the files of one sample share a key: the member's name up to the first dot of its
base name (``000001.webp``, ``000001.cls``); the rest is the field. Fields read here:
``webp|png|jpg|jpeg`` (the image: PIL, RGB), ``cls`` (an integer label), ``txt`` (captions,
one a line), ``npy`` (a NumPy array: the WILDS and fairness tasks' metadata), ``json``. Samples
come in shard order, then member order, as webdataset yields them.
"""
from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

__all__ = ["IMAGE_FIELDS", "WdsLayoutError", "WdsSet", "read_wds", "decode_field", "fill_template"]

IMAGE_FIELDS = ("webp", "png", "jpg", "jpeg")
_TYPES = ("classification", "retrieval", "multilabel")


class WdsLayoutError(FileNotFoundError):
    """A folder is not in CLIP_benchmark's webdataset layout (one line naming what is missing)."""


def fill_template(template: str, classname: str) -> str:
    """A CLIP_benchmark prompt with its class slot ``{c}`` filled (``str.format(c=...)``, as
    its ``zero_shot_classifier`` fills it)."""
    return template.format(c=classname)


def decode_field(field: str, data: bytes) -> Any:
    """One member's bytes by its field (see the module doc); unknown fields stay bytes."""
    if field in IMAGE_FIELDS:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    if field == "cls":
        return int(data.decode().strip())
    if field == "txt":
        return data.decode().splitlines()
    if field == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if field == "json":
        return json.loads(data.decode())
    return data


def _lines(path: Path) -> Optional[List[str]]:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@dataclasses.dataclass
class WdsSet:
    """A dataset folder's split: its shards, ``dataset_type``, ``classes`` and ``templates``
    (None where the folder has no such file)."""

    folder: Path
    split: str
    shards: List[Path]
    dataset_type: str
    classes: Optional[List[str]]
    templates: Optional[List[str]]

    def samples(self, fields: Optional[Sequence[str]] = None) -> Iterator[Dict[str, Any]]:
        """Each sample as ``{"__key__": key, field: value}``, decoding only ``fields`` (all
        by default; ``"image"`` stands for whichever image field the sample has)."""
        want = None if fields is None else set(fields)
        if want is not None and "image" in want:
            want |= set(IMAGE_FIELDS)
        for shard in self.shards:
            yield from self._shard(shard, want)

    def _shard(self, shard: Path, want: Optional[set]) -> Iterator[Dict[str, Any]]:
        current: Dict[str, Any] = {}
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    head, _, base = member.name.rpartition("/")
                    stem, dot, field = base.partition(".")
                    if not dot:
                        continue
                    key = f"{head}/{stem}" if head else stem
                    if current and current["__key__"] != key:
                        yield _with_image(current)
                        current = {}
                    current["__key__"] = key
                    if want is None or field in want:
                        current[field] = decode_field(field, tar.extractfile(member).read())
        except (tarfile.TarError, OSError, ValueError) as e:
            raise ValueError(f"{shard}: not a readable webdataset shard ({e})") from None
        if current:
            yield _with_image(current)


def _with_image(sample: Dict[str, Any]) -> Dict[str, Any]:
    for f in IMAGE_FIELDS:
        if f in sample:
            sample.setdefault("image", sample[f])
            break
    return sample


def read_wds(folder: Any, split: str = "test") -> WdsSet:
    """The split of a dataset folder in CLIP_benchmark's layout; a missing part raises
    :class:`WdsLayoutError` naming it and the layout."""
    base = Path(folder)
    layout = (f"expected {base}/{split}/nshards.txt and {split}/0.tar..<n-1>.tar, with "
              f"classnames.txt and zeroshot_classification_templates.txt (CLIP_benchmark's wds "
              f"layout)")
    counter = base / split / "nshards.txt"
    if not counter.is_file():
        raise WdsLayoutError(f"{counter}: missing; {layout}")
    try:
        n = int(counter.read_text().strip())
    except ValueError:
        raise WdsLayoutError(f"{counter}: not a number of shards; {layout}") from None
    shards = [base / split / f"{i}.tar" for i in range(n)]
    missing = [s.name for s in shards if not s.is_file()]
    if n < 1 or missing:
        raise WdsLayoutError(f"{base / split}: shards {missing or ['0.tar']} missing "
                             f"(nshards.txt says {n}); {layout}")
    kind = (_lines(base / "dataset_type.txt") or ["classification"])[0].lower()
    if kind not in _TYPES:
        raise WdsLayoutError(f"{base / 'dataset_type.txt'}: {kind!r} is not one of {_TYPES}")
    return WdsSet(base, split, shards, kind, _lines(base / "classnames.txt"),
                  _lines(base / "zeroshot_classification_templates.txt"))
