"""The cue-conflict stimuli (Geirhos et al., ICLR 2019), read from a local folder, never downloaded.

The model-vs-human toolbox releases the 1,280 images (16 categories x 80) as
``cue-conflict/<shape class>/<shape><n>-<texture><n>.png``: the folder names the shape class, the
last ``-`` part of the file name the texture class (``bird/bird2-clock3.png``: shape bird, texture
clock). :func:`read_cue_conflict` lists such a folder (every image, shape == texture ones included:
the metric drops those); :class:`CueConflictDataset` gives the images through a model's transform.
A folder that is not there, or not in that layout, is a one-line error naming it and the layout.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from .files import IMAGE_EXTENSIONS, UnreadableImage, load_image
from .modelvshuman import CATEGORIES, class_from_stem

__all__ = ["LAYOUT", "CueConflictImage", "CueConflictStimuli", "read_cue_conflict",
           "CueConflictDataset"]

LAYOUT = ("<folder>/<shape class>/<shape><n>-<texture><n>.png, one folder per class of "
          + ", ".join(CATEGORIES) + " (the model-vs-human release's cue-conflict/)")


@dataclasses.dataclass(frozen=True)
class CueConflictImage:
    path: Path
    shape: str
    texture: str


@dataclasses.dataclass(frozen=True)
class CueConflictStimuli:
    """The stimuli of a folder, sorted by (shape class, file name); aligned lists."""

    root: Path
    images: Tuple[CueConflictImage, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def paths(self) -> List[Path]:
        return [im.path for im in self.images]

    @property
    def shape(self) -> List[str]:
        return [im.shape for im in self.images]

    @property
    def texture(self) -> List[str]:
        return [im.texture for im in self.images]


def _texture(root: Path, path: Path, classes: Sequence[str]) -> str:
    stem = path.stem
    if "-" not in stem:
        raise ValueError(f"cue-conflict folder {root}: {path.relative_to(root)} is not named "
                         f"<shape><n>-<texture><n> (layout: {LAYOUT})")
    texture = class_from_stem(stem.rsplit("-", 1)[1])
    if texture not in classes:
        raise ValueError(f"cue-conflict folder {root}: {path.relative_to(root)} names the texture "
                         f"{texture!r}, not one of the {len(classes)} classes (layout: {LAYOUT})")
    return texture


def read_cue_conflict(folder: Union[str, os.PathLike],
                      classes: Sequence[str] = CATEGORIES) -> CueConflictStimuli:
    """Every image of a local cue-conflict folder in the toolbox's release layout (:data:`LAYOUT`).

    Raises ``FileNotFoundError`` when ``folder`` is missing, and ``ValueError`` (one line naming the
    folder or file and the layout) for a subfolder that is not a class, a class without images, or
    a file name without a texture class. Files other than images (``IMAGE_EXTENSIONS``) and hidden
    entries are skipped."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"cue-conflict folder {root} not found: expected {LAYOUT}; the "
                                f"package never downloads it")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = [p.name for p in subdirs if p.name not in classes]
    if stray or not subdirs:
        what = f"has subfolders {stray} that are not classes" if stray else "has no class folders"
        raise ValueError(f"cue-conflict folder {root} {what}: expected {LAYOUT}")
    images = []
    for sub in subdirs:
        files = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"cue-conflict folder {root}: class folder {sub.name}/ holds no "
                             f"images (layout: {LAYOUT})")
        images.extend(CueConflictImage(p, sub.name, _texture(root, p, classes)) for p in files)
    return CueConflictStimuli(root, tuple(images))


class CueConflictDataset:
    """``(image, index)`` pairs of :class:`CueConflictStimuli` through ``transform`` (a model's
    evaluation preprocessing, e.g. :func:`unirepclip.data.sets.val_transform`). An unreadable file
    is a ``ValueError`` naming it: a stimulus cannot be skipped without changing the protocol."""

    def __init__(self, stimuli: CueConflictStimuli, transform: Optional[Callable] = None):
        self.stimuli = stimuli
        self.transform = transform

    def __len__(self) -> int:
        return len(self.stimuli)

    def __getitem__(self, i: int) -> Tuple[Any, int]:
        path = self.stimuli.images[i].path
        image = load_image(path)
        if isinstance(image, UnreadableImage):
            raise ValueError(f"cue-conflict image {path} is unreadable: {image.reason}")
        return (self.transform(image) if self.transform is not None else image), i
