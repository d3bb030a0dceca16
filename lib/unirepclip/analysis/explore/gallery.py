"""The explorer's galleries: the images its panels look at, and their image embeddings.

A gallery is a dataset's images (:func:`dataset_gallery`), a folder of the user's own
(:func:`folder_gallery`) or one uploaded file (:func:`uploaded_image`,
:func:`single_image_gallery`); synthetic images keep their object masks and captions.
:func:`embed_gallery` encodes it once through :func:`unirepclip.features.extract_image_features`
(so a ``FeatureCache`` keeps the embeddings across sessions); every later query is one matrix
product against them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch.nn as nn

from unirepclip.data import IMAGE_EXTENSIONS, UnreadableImage, load_image
from unirepclip.data import sets
from unirepclip.features import extract_image_features

__all__ = ["Gallery", "dataset_gallery", "folder_gallery", "uploaded_image",
           "single_image_gallery", "embed_gallery"]


@dataclasses.dataclass
class Gallery:
    """Images the panels look at.

    ``dataset[i]`` is ``(PIL image, target)`` (what :func:`embed_gallery` encodes); ``names[i]``
    labels image i in the result grids; ``labels``/``classnames`` give its class where known
    (colours in the embedding map, truth in the zero-shot table); ``masks`` (N, H, W) bool
    are the synthetic objects' pixels and ``captions`` their captions (one per image), else None.
    """

    kind: str
    dataset: Any
    names: List[str]
    description: str
    labels: Optional[np.ndarray] = None
    classnames: Optional[List[str]] = None
    masks: Optional[np.ndarray] = None
    captions: Optional[List[str]] = None
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, i: int) -> Any:
        """Image ``i`` as a PIL RGB image."""
        img = self.dataset[int(i)][0]
        if isinstance(img, UnreadableImage):
            raise ValueError(f"image {i} ({img.path}) cannot be read: {img.reason}")
        return img.convert("RGB")


def dataset_gallery(dataset: str, *, n_images: int, image_size: int = 64, seed: int = 0,
                    data_dir: str = "", classnames_file: str = "") -> Gallery:
    """The images of a notebook's dataset parameters (see :mod:`unirepclip.data.sets`); the main
    task's classes label them; the synthetic world's also carry masks and captions."""
    es = sets.classification_set(dataset, n_images=n_images, image_size=image_size, seed=seed,
                                 data_dir=data_dir or "", classnames_file=classnames_file)
    task = es.tasks[es.main_task]
    ds = es.dataset
    masks = captions = None
    if es.kind == "synthetic":
        masks, captions = np.asarray(ds.masks, dtype=bool), list(ds.captions)
        names = [f"#{i} {c}" for i, c in enumerate(captions)]
    else:
        labels = task.labels if task.labels is not None else [None] * len(ds)
        names = [f"#{i} {task.classnames[int(y)]}" if y is not None else f"#{i}"
                 for i, y in enumerate(labels)]
    skipped = list(getattr(getattr(ds, "dataset", ds), "skipped", []) or [])
    return Gallery(es.kind, ds, names, es.description,
                   labels=None if task.labels is None else np.asarray(task.labels),
                   classnames=list(task.classnames), masks=masks, captions=captions,
                   skipped=skipped)


class _Files:
    """Image files as a dataset: ``(PIL image or UnreadableImage, -1)``, with a cache identity
    that changes when a file does."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_image(self.paths[int(i)]), -1

    @property
    def identity(self) -> Dict[str, Any]:
        h = hashlib.sha256()
        for p in self.paths:
            st = p.stat()
            h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"class": "explore.Files", "files_sha256": h.hexdigest(), "n": len(self.paths)}

    def __repr__(self) -> str:
        return f"_Files(n={len(self.paths)})"


def folder_gallery(folder: Union[str, os.PathLike], *, max_images: int = 0) -> Gallery:
    """Every readable image under ``folder`` (any depth, sorted by path; ``max_images`` > 0 keeps
    the first that many). Unreadable files are listed in ``skipped``.

    Raises ``ValueError`` when the folder does not exist or holds no readable image.
    """
    root = Path(folder).expanduser()
    if not str(folder).strip() or not root.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist or is not a folder")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    good, skipped = [], []
    for p in files:
        img = load_image(p)
        if isinstance(img, UnreadableImage):
            skipped.append((str(p), img.reason))
        else:
            good.append(p)
    if max_images and max_images > 0:
        good = good[:int(max_images)]
    if not good:
        raise ValueError(f"folder {root} holds no readable image (extensions {sorted(exts)}; "
                         f"{len(skipped)} unreadable files)")
    names = [f"#{i} {p.relative_to(root)}" for i, p in enumerate(good)]
    return Gallery("folder", _Files(good), names,
                   f"folder {root}: {len(good)} images"
                   + (f", {len(skipped)} unreadable files skipped" if skipped else ""),
                   skipped=skipped)


def uploaded_image(content: bytes, name: str = "upload") -> Any:
    """The PIL RGB image in an uploaded file's bytes; ``ValueError`` naming the file when it is
    not an image that can be read."""
    from PIL import Image

    if not content:
        raise ValueError(f"uploaded file {name!r} is empty")
    try:
        img = Image.open(io.BytesIO(bytes(content)))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"uploaded file {name!r} is not a readable image ({e})") from e
    return img.convert("RGB")


class _Images:
    def __init__(self, images: Sequence[Any], key: str):
        self.images, self.key = list(images), key

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[int(i)], -1

    @property
    def identity(self) -> Dict[str, Any]:
        return {"class": "explore.Images", "sha256": self.key, "n": len(self.images)}


def single_image_gallery(image: Any, name: str = "upload") -> Gallery:
    """A gallery of one (uploaded) PIL image."""
    key = hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()
    return Gallery("upload", _Images([image.convert("RGB")], key), [f"#0 {name}"],
                   f"uploaded file {name}")


def embed_gallery(model: nn.Module, gallery: Gallery, transform: Optional[Callable] = None,
                  **extract_kw: Any) -> np.ndarray:
    """(N, D) L2-normalized float32 image embeddings of the gallery, in its order
    (:func:`unirepclip.features.extract_image_features`; ``extract_kw`` such as ``cache``,
    ``batch_size``, ``device``, ``precision``, ``progress`` go to it)."""
    feats = extract_image_features(model, gallery.dataset, transform=transform, **extract_kw)
    if len(feats) != len(gallery) or not np.array_equal(feats.indices, np.arange(len(gallery))):
        raise ValueError(f"{len(gallery) - len(feats)} images of the gallery could not be read "
                         f"(first: {feats.skipped[:1]})")
    return np.ascontiguousarray(feats.embeddings, dtype=np.float32)
