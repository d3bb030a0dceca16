"""Compositionality sets by CLIP_benchmark's names, read from a local root, never downloaded.

Each item is a few images and a few captions, image i belonging with caption i (the task of
CLIP_benchmark's ``image_caption_selection``, scored by :mod:`unirepclip.eval.caption_selection`):

* ``sugar_crepe/<task>`` for the seven SugarCrepe tasks (:data:`SUGAR_CREPE_TASKS`): one COCO
  image, its caption and a hard negative caption. The root is CLIP_benchmark's
  ``--dataset_root`` for it: ``<root>/val2017/<filename>`` (COCO val2017) and ``<root>/<task>.json``
  (SugarCrepe's file: an object of items, each with ``filename``, ``caption`` and
  ``negative_caption``; items in the file's order, as CLIP_benchmark keeps them).
* ``winoground``: two images and two captions, in the layout of its release
  (``<root>/examples.jsonl``, one object a line with ``id``, ``caption_0``, ``caption_1``,
  ``image_0``, ``image_1``, and ``<root>/images/<image_k>.png``; a name with an extension is
  taken as it is). CLIP_benchmark reads it through Hugging Face ``datasets``; the release's files
  hold the same examples and are read here directly.

A root that is missing, empty or holds something else raises :class:`CompositionalNotFound`, one
line naming the set, what is missing and the layout expected (:data:`LAYOUTS`).

``dataset[i]`` is ``(images, captions)``: a list of PIL images (or of ``transform``'s outputs)
and the list of caption strings, the positive first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["SUGAR_CREPE_TASKS", "COMPOSITIONAL_NAMES", "LAYOUTS", "CompositionalNotFound",
           "SelectionItem", "SelectionDataset", "compositional_names", "load_compositional"]

SUGAR_CREPE_TASKS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel",
                     "swap_att", "swap_obj")
COMPOSITIONAL_NAMES = tuple(f"sugar_crepe/{t}" for t in SUGAR_CREPE_TASKS) + ("winoground",)
LAYOUTS: Dict[str, str] = {
    **{f"sugar_crepe/{t}": (f"<root>/val2017/*.jpg (COCO val2017) and <root>/{t}.json "
                            f"(SugarCrepe's: items with filename, caption, negative_caption)")
       for t in SUGAR_CREPE_TASKS},
    "winoground": ("<root>/examples.jsonl (one JSON object a line: id, caption_0, caption_1, "
                   "image_0, image_1) and <root>/images/<image_0|image_1>.png (its release)"),
}

#: (image files relative to the root, captions): image k goes with caption k.
SelectionItem = Tuple[Tuple[str, ...], Tuple[str, ...]]


class CompositionalNotFound(FileNotFoundError):
    """A compositionality set is not on disk in the layout it is read from."""


def compositional_names() -> Tuple[str, ...]:
    """Every supported name, CLIP_benchmark's spelling."""
    return COMPOSITIONAL_NAMES


class SelectionDataset:
    """Items of images and captions (image k with caption k), read lazily from ``root``."""

    def __init__(self, name: str, root: Path, items: Sequence[SelectionItem],
                 transform: Optional[Callable] = None):
        self.name, self.root, self.items, self.transform = name, Path(root), list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"SelectionDataset({self.name!r}, root={str(self.root)!r}, n={len(self)})"

    @property
    def identity(self) -> Dict[str, Any]:
        return {"class": "SelectionDataset", "name": self.name, "root": str(self.root.resolve()),
                "items": len(self.items)}

    def image_files(self) -> List[str]:
        """The distinct image files of every item, in order of first use."""
        return list(dict.fromkeys(f for files, _ in self.items for f in files))

    def __getitem__(self, i: int) -> Tuple[List[Any], List[str]]:
        from unirepclip.data.files import UnreadableImage, load_image

        files, captions = self.items[i]
        images = []
        for f in files:
            img = load_image(self.root / f)
            if isinstance(img, UnreadableImage):
                raise ValueError(f"{self.name}: image {img.path} cannot be read ({img.reason})")
            images.append(self.transform(img) if self.transform is not None else img)
        return images, list(captions)


def _missing(name: str, root: Path, what: str) -> CompositionalNotFound:
    return CompositionalNotFound(f"dataset={name!r}: {what} under data_dir={str(root)!r}; "
                                 f"expected {LAYOUTS[name]}")


def _read_sugar_crepe(name: str, root: Path) -> List[SelectionItem]:
    task = name.split("/", 1)[1]
    ann, images = root / f"{task}.json", root / "val2017"
    if not images.is_dir():
        raise _missing(name, root, "no folder val2017")
    if not ann.is_file():
        raise _missing(name, root, f"no file {task}.json")
    try:
        data = json.loads(ann.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"dataset={name!r}: {ann} is not JSON ({err})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"dataset={name!r}: {ann} must be a non-empty JSON object of items")
    items = []
    for key, entry in data.items():
        lacking = [k for k in ("filename", "caption", "negative_caption")
                   if not isinstance(entry, dict) or not isinstance(entry.get(k), str)]
        if lacking:
            raise ValueError(f"dataset={name!r}: {ann}, item {key!r} lacks "
                             f"{', '.join(lacking)} (strings)")
        items.append((("val2017/" + entry["filename"],),
                      (entry["caption"], entry["negative_caption"])))
    return items


def _winoground_image(stem: str) -> str:
    return f"images/{stem}" if Path(stem).suffix else f"images/{stem}.png"


def _read_winoground(name: str, root: Path) -> List[SelectionItem]:
    ann = root / "examples.jsonl"
    if not ann.is_file():
        raise _missing(name, root, "no file examples.jsonl")
    if not (root / "images").is_dir():
        raise _missing(name, root, "no folder images")
    items = []
    for line_no, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except ValueError as err:
            raise ValueError(f"dataset={name!r}: {ann}, line {line_no} is not JSON ({err})"
                             ) from None
        keys = ("id", "caption_0", "caption_1", "image_0", "image_1")
        lacking = [k for k in keys if not isinstance(ex, dict) or k not in ex]
        if lacking:
            raise ValueError(f"dataset={name!r}: {ann}, line {line_no} lacks "
                             f"{', '.join(lacking)}")
        items.append(((_winoground_image(str(ex["image_0"])),
                       _winoground_image(str(ex["image_1"]))),
                      (str(ex["caption_0"]), str(ex["caption_1"]))))
    if not items:
        raise ValueError(f"dataset={name!r}: {ann} holds no example")
    return items


def load_compositional(name: str, data_dir: str, *, transform: Optional[Callable] = None,
                       check_files: bool = True) -> SelectionDataset:
    """The set ``name`` (one of :data:`COMPOSITIONAL_NAMES`) from ``data_dir``; as in
    CLIP_benchmark's ``--dataset_root``, ``{dataset}`` in it stands for the name and
    ``{dataset_cleaned}`` for the name with ``/`` as ``-`` (``sugar_crepe-add_att``); the seven
    SugarCrepe tasks may also share one root. ``check_files``: every image an item names must
    exist (else one line naming the first missing file)."""
    if name not in LAYOUTS:
        raise ValueError(f"dataset={name!r} is not one of {COMPOSITIONAL_NAMES}")
    if not str(data_dir or "").strip():
        raise _missing(name, Path("."), "data_dir is empty")
    root = Path(str(data_dir).replace("{dataset}", name)
                .replace("{dataset_cleaned}", name.replace("/", "-"))).expanduser()
    if not root.is_dir():
        raise _missing(name, root, "no such folder")
    items = (_read_winoground(name, root) if name == "winoground"
             else _read_sugar_crepe(name, root))
    ds = SelectionDataset(name, root, items, transform)
    if check_files:
        absent = [f for f in ds.image_files() if not (root / f).is_file()]
        if absent:
            raise _missing(name, root, f"{len(absent)} image file(s) missing, first {absent[0]}")
    return ds
