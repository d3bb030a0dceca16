"""Class-name vocabularies of image folders: what a ``classnames_file`` value means.

A folder of class folders (``data_dir/<class>/<image>``) names its classes by one of:

* ``""``: the folder names themselves;
* a registered vocabulary's name, a key of :data:`VOCABULARIES` (``"imagenet"``: open_clip's
  ``IMAGENET_CLASSNAMES``, in the sorted WordNet-id order of ImageNet's folders);
* else a text file with one name per line, in sorted folder order.

Image folders are scored with the 80 prompt templates of CLIP's ImageNet evaluation
(``OPENAI_IMAGENET_TEMPLATES``) whatever names they take. Importing this module is light (no
torch, no open_clip): :func:`vocabulary_names` serves parameter checks.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Vocabulary", "VOCABULARIES", "vocabulary_names", "resolve_vocabulary"]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A named list of class names: ``load()`` gives them, ``source`` says where they are from."""

    name: str
    load: Callable[[], Sequence[str]]
    source: str


def _imagenet() -> Sequence[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return IMAGENET_CLASSNAMES


VOCABULARIES: Dict[str, Vocabulary] = {v.name: v for v in (
    Vocabulary("imagenet", _imagenet, "open_clip's IMAGENET_CLASSNAMES"),
)}


def vocabulary_names() -> Tuple[str, ...]:
    """The names a ``classnames_file`` may give instead of a file (torch-free)."""
    return tuple(VOCABULARIES)


def resolve_vocabulary(classnames_file: str, folder_names: Optional[Sequence[str]] = None
                       ) -> Tuple[List[str], List[Any], str]:
    """``(classnames, templates, source)`` of an image folder (see the module doc).

    Raises ``FileNotFoundError`` naming ``classnames_file`` when it is neither a registered name
    nor a file, and ``ValueError`` when ``""`` is given without folder names to fall back on.
    """
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = list(OPENAI_IMAGENET_TEMPLATES)
    named = VOCABULARIES.get(classnames_file)
    if named is not None:
        return list(named.load()), templates, named.source
    if classnames_file:
        from unirepclip.data.files import read_classnames

        path = Path(classnames_file)
        if not path.is_file():
            alts = " or ".join(repr(n) for n in VOCABULARIES)
            raise FileNotFoundError(f"classnames_file={classnames_file!r}: no such file (give a "
                                    f"text file with one class name per line, or {alts})")
        return read_classnames(path), templates, f"class-name file {path}"
    if folder_names is None:
        raise ValueError(f"classnames_file='' means the folder names, but there is no folder: "
                         f"give classnames_file={next(iter(VOCABULARIES))!r} or a file")
    return list(folder_names), templates, "the folder names"
