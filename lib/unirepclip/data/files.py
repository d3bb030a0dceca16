"""Local image data: ImageNet-style class folders and image-caption files (CSV / TSV / JSONL).

Unreadable images never stop a run. They are caught twice:

* at scan time (``verify=True``, the default), PIL's ``Image.verify()`` rejects files that are not an
  image or whose header is broken; they are left out of the dataset and listed in ``ds.skipped`` as
  ``(path, reason)``;
* at load time, a file that still fails to decode (``verify`` cannot see a truncated JPEG body)
  comes back as an :class:`UnreadableImage` in place of the image. :mod:`unirepclip.features`
  drops those items from the batch and reports them, so the count reaches the results.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS", "UnreadableImage", "load_image", "verify_image", "read_classnames",
    "ImageFolderDataset", "CaptionDataset",
]

IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif",
                                     ".tiff", ".ppm", ".pgm", ".jfif")
PathLike = Union[str, os.PathLike]

# What PIL raises on a bad file: not an image (UnidentifiedImageError is an OSError), truncated or
# corrupt data (OSError, SyntaxError from some plugins, ValueError), oversized (DecompressionBombError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class UnreadableImage(NamedTuple):
    """Stands in for an image that could not be decoded at load time."""

    path: str
    reason: str


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def verify_image(path: PathLike) -> Optional[str]:
    """``None`` if PIL can identify and verify ``path``, else the reason it cannot."""
    try:
        with Image.open(path) as im:
            im.verify()
    except _DECODE_ERRORS as err:
        return _reason(err)
    return None


def load_image(path: PathLike) -> Union[Image.Image, UnreadableImage]:
    """Decode ``path`` fully as an RGB PIL image, or return an :class:`UnreadableImage`."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces the whole file to decode now
    except _DECODE_ERRORS as err:
        return UnreadableImage(str(path), _reason(err))


def read_text(path: PathLike, what: str) -> str:
    """A text file's contents as UTF-8 (a byte-order mark is allowed); a file in another encoding
    is a ``ValueError`` naming ``what`` (``"class-name file"``), the file, the line and the byte."""
    p = Path(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{what} {p}, line {line}: byte 0x{data[err.start]:02x} at column "
                         f"{column} is not UTF-8; save the file as UTF-8") from None


def read_classnames(path: PathLike) -> List[str]:
    """Class names from a text file, one per line; blank lines are ignored."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class-name file {p} does not exist")
    names = [line.strip() for line in read_text(p, "class-name file").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"class-name file {p} holds no names")
    return names


def _digest(items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class ImageFolderDataset:
    """Images in ImageNet's layout, ``root/<class folder>/<image>``, labelled by folder.

    Class indices follow the sorted folder names. Names come from ``classnames`` (a list) or
    ``classnames_file`` (one per line, in sorted folder order), else the folder names themselves.
    ``ds[i]`` is ``(image, class index)`` with ``image`` a PIL RGB image, ``transform(image)``, or
    an :class:`UnreadableImage`.

    Attributes: ``classes``, ``folders``, ``samples`` (list of ``(path, class index)``),
    ``targets``, ``skipped`` (``(path, reason)`` for every file left out at scan time).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folder or no image under ``root``; the class names do not match the
            folders in number.
    """

    def __init__(self, root: PathLike, classnames_file: Optional[PathLike] = None,
                 transform: Optional[Callable] = None, *, classnames: Optional[Sequence[str]] = None,
                 verify: bool = True, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.root = Path(root)
        self.transform = transform
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist or is not a folder")
        self.folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _visible(p))
        if not self.folders:
            raise ValueError(f"image folder {self.root} has no class sub-folders "
                             f"(expected root/<class>/<image>)")
        if classnames is not None and classnames_file is not None:
            raise ValueError("give classnames or classnames_file, not both")
        if classnames_file is not None:
            names = read_classnames(classnames_file)
            source = f"class-name file {classnames_file}"
        elif classnames is not None:
            names, source = [str(c) for c in classnames], "classnames"
        else:
            names, source = list(self.folders), None
        if len(names) != len(self.folders):
            raise ValueError(f"{source} has {len(names)} names but {self.root} has "
                             f"{len(self.folders)} class folders")
        self.classes: List[str] = names
        exts = {e.lower() for e in extensions}
        self.samples: List[Tuple[str, int]] = []
        self.skipped: List[Tuple[str, str]] = []
        for idx, folder in enumerate(self.folders):
            for p in sorted(q for q in (self.root / folder).rglob("*") if q.is_file()):
                if any(part.startswith(".") for part in p.relative_to(self.root).parts):
                    continue  # .DS_Store, .ipynb_checkpoints and the like
                if p.suffix.lower() not in exts:
                    self.skipped.append((str(p), f"extension {p.suffix or '(none)'!r} is not an "
                                                 f"image type"))
                    continue
                why = verify_image(p) if verify else None
                if why is not None:
                    self.skipped.append((str(p), why))
                else:
                    self.samples.append((str(p), idx))
        if not self.samples:
            raise ValueError(f"image folder {self.root} holds no readable images with extensions "
                             f"{sorted(exts)} ({len(self.skipped)} files skipped)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        img = load_image(path)
        if self.transform is not None and not isinstance(img, UnreadableImage):
            img = self.transform(img)
        return img, target

    @property
    def targets(self) -> List[int]:
        return [t for _, t in self.samples]

    @property
    def identity(self) -> Dict[str, Any]:
        """What determines the items: the folder, the class names and every file's name and size."""
        files = [f"{os.path.relpath(p, self.root)}:{os.path.getsize(p)}" for p, _ in self.samples]
        return {"class": type(self).__name__, "root": str(self.root.resolve()),
                "classes": _digest(self.classes), "files": _digest(files), "n": len(self)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, classes={len(self.classes)}, "
                f"images={len(self)}, skipped={len(self.skipped)})")


class CaptionDataset:
    """Image-caption pairs from a CSV, TSV or JSONL file, grouped by image for retrieval.

    Columns default to open_clip's (``filepath``, ``title``). Relative image paths are resolved
    against ``root`` (default: the caption file's folder). A ``.csv`` file may be comma- or
    tab-separated (open_clip writes tabs); the header line decides unless ``sep`` is given.

    ``ds[i]`` is ``(image, i)`` for the i-th distinct image. Attributes: ``images`` (paths),
    ``captions`` (all of them, file order), ``text_to_image`` (image index of each caption),
    ``image_to_captions`` (caption indices of each image), ``skipped`` (images left out at scan
    time, with their captions).
    """

    def __init__(self, path: PathLike, image_key: str = "filepath", caption_key: str = "title",
                 root: Optional[PathLike] = None, transform: Optional[Callable] = None, *,
                 sep: Optional[str] = None, verify: bool = True):
        self.path = Path(path)
        self.image_key, self.caption_key, self.transform = image_key, caption_key, transform
        if not self.path.is_file():
            raise FileNotFoundError(f"caption file {self.path} does not exist")
        self.root = Path(root) if root is not None else self.path.parent
        rows = self._read(sep)
        if not rows:
            raise ValueError(f"caption file {self.path} holds no rows")
        order: Dict[str, int] = {}
        pairs: List[Tuple[str, str]] = []
        for line, row in rows:
            for key, what in ((image_key, "image_key"), (caption_key, "caption_key")):
                if row.get(key) is None:
                    raise ValueError(f"{self.path}, row {line}: no value in column {key!r} ({what})")
            rel = str(row[image_key]).strip()
            full = rel if os.path.isabs(rel) else str(self.root / rel)
            pairs.append((full, str(row[caption_key])))
        verdict: Dict[str, Optional[str]] = {}
        for full, _ in pairs:
            if full not in verdict:
                if not os.path.isfile(full):
                    verdict[full] = "file not found"
                else:
                    verdict[full] = verify_image(full) if verify else None
        self.skipped: List[Tuple[str, str]] = [(p, why) for p, why in verdict.items() if why]
        self.captions: List[str] = []
        text_to_image: List[int] = []
        for full, cap in pairs:
            if verdict[full]:
                continue
            idx = order.setdefault(full, len(order))
            self.captions.append(cap)
            text_to_image.append(idx)
        if not order:
            raise ValueError(f"caption file {self.path}: none of its {len(verdict)} images is "
                             f"readable (first: {self.skipped[0]})")
        self.images: List[str] = list(order)
        self.text_to_image = np.asarray(text_to_image, np.int64)
        self.image_to_captions: List[List[int]] = [[] for _ in self.images]
        for t, i in enumerate(text_to_image):
            self.image_to_captions[i].append(t)

    def _read(self, sep: Optional[str]) -> List[Tuple[int, Dict[str, Any]]]:
        suffix = self.path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(read_text(self.path, "caption file").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}, line {n}: not valid JSON ({err})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{self.path}, line {n}: expected a JSON object")
                rows.append((n, obj))
            if rows:
                self._check_columns(set().union(*(r.keys() for _, r in rows)), "its rows")
            return rows
        if suffix not in (".csv", ".tsv", ".txt"):
            raise ValueError(f"caption file {self.path}: unknown format {suffix!r} "
                             f"(expected .csv, .tsv or .jsonl)")
        with io.StringIO(read_text(self.path, "caption file"), newline="") as f:
            header = f.readline()
            if sep is None:
                sep = "\t" if (suffix == ".tsv" or "\t" in header) else ","
            f.seek(0)
            reader = csv.DictReader(f, delimiter=sep)
            self._check_columns(set(reader.fieldnames or ()), "the header")
            # header is line 1, so data rows start at line 2
            return [(n, row) for n, row in enumerate(reader, 2)]

    def _check_columns(self, columns: set, where: str) -> None:
        for key, what in ((self.image_key, "image_key"), (self.caption_key, "caption_key")):
            if key not in columns:
                raise ValueError(f"caption file {self.path}: column {key!r} ({what}) is missing; "
                                 f"{where} has columns {sorted(columns)}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = load_image(self.images[i])
        if self.transform is not None and not isinstance(img, UnreadableImage):
            img = self.transform(img)
        return img, i

    def texts_for(self, kept_images: Sequence[int]) -> Tuple[List[str], np.ndarray]:
        """Captions of the ``kept_images`` (e.g. those that decoded) and their image index
        *within* ``kept_images``, ready for :func:`unirepclip.retrieval.evaluate`."""
        pos = {int(i): k for k, i in enumerate(kept_images)}
        caps, t2i = [], []
        for t, i in enumerate(self.text_to_image):
            if int(i) in pos:
                caps.append(self.captions[t])
                t2i.append(pos[int(i)])
        return caps, np.asarray(t2i, np.int64)

    @property
    def identity(self) -> Dict[str, Any]:
        from unirepclip.utils import file_sha256
        return {"class": type(self).__name__, "path": str(self.path.resolve()),
                "sha256": file_sha256(self.path), "root": str(self.root.resolve()),
                "image_key": self.image_key, "caption_key": self.caption_key, "n": len(self)}

    def __repr__(self) -> str:
        return (f"CaptionDataset(path={str(self.path)!r}, images={len(self.images)}, "
                f"captions={len(self.captions)}, skipped={len(self.skipped)})")
