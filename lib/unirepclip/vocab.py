"""The workbook's parameter vocabulary: how a layer declares the notebook parameters it gives
meaning to. Torch-free, at the bottom of the package (beside :mod:`unirepclip.utils`).

Each layer owns a ``params.py`` holding a tuple ``PARAMETERS`` of :class:`Param`: the models layer
declares ``model_name``, ``checkpoint`` and ``precision``, the data layer the dataset names and
folders, the analysis layer the ERF stages, and so on; :mod:`unirepclip.workbook.params` composes
them. A parameter is declared once, by its owner: its spelling, its type, what values it may take
(:class:`Range`), and what it means. Adding a parameter or a dataset touches its owner only.

A notebook declares the parameters it takes in its ``parameters`` cell (the default there is the
demo's value, and may differ per notebook); the vocabulary says what any notebook's value of that
name may be. This module also holds the layers' shared, torch-free vocabularies that a parameter
check needs before anything heavy loads: :data:`PRECISIONS` and :data:`DEVICE_CHOICES`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["Param", "Range", "folder_problem", "PRECISIONS", "DEVICE_CHOICES", "DEVICE_PATTERN", "COUNT", "SIZE",
           "SIZES", "UNRANGED", "PARAMETERS"]

#: Compute precisions of a forward pass (autocast; the weights stay fp32). The one vocabulary:
#: :func:`unirepclip.utils.check_precision` and the ``precision`` parameter both read it.
PRECISIONS: Tuple[str, ...] = ("fp32", "bf16")
DEVICE_CHOICES: Tuple[str, ...] = ("cpu", "cuda", "auto")
DEVICE_PATTERN = r"cuda:\d+"


@dataclasses.dataclass(frozen=True)
class Range:
    """What values a parameter may take beyond its type.

    Numbers: ints ``>= low`` and ``<= high``, or (``items``) a non-empty list of such ints.
    Names: one of ``choices`` (or a full match of ``pattern``); ``names`` is a torch-free callable
    giving the choices at check time (the data layer's registered dataset names, the model
    configs), for names a layer can gain without the workbook knowing. Files: ``path`` marks a
    file (``path="file"``) or folder (``path="dir"``) whose relative values resolve against where
    they were given and which must exist; ``path="out"`` a folder the notebook creates. A path
    parameter's ``choices``/``names`` are the values that name no file (``demo``, ``imagenet``,
    ``mscoco_captions``); ``path_suffix`` limits the path reading to values with that ending (a
    ``model_name`` is a path only as ``*.json``); ``empty`` says what an empty value means (None:
    empty is refused). ``per_model`` takes the notebook's ``model_name`` and returns the upper
    bound (``high``) that model allows, or None when it cannot tell (ERF stages: four for
    UniRepLKNet)."""

    low: Optional[int] = None
    high: Optional[int] = None
    items: bool = False
    choices: Optional[Tuple[str, ...]] = None
    names: Optional[Callable[[], Sequence[str]]] = None
    pattern: Optional[str] = None
    path: Optional[str] = None
    path_suffix: Optional[str] = None
    empty: Optional[str] = "none"
    per_model: Optional[Callable[[str], Optional[int]]] = None
    also: Tuple[str, ...] = ()  # strings accepted besides the ints (gradcam_stage's "auto")

    def accepted_names(self) -> Tuple[str, ...]:
        """Every name this range accepts (``choices`` and ``names()``), in order."""
        out = list(self.choices or ())
        if self.names is not None:
            out += [n for n in self.names() if n not in out]
        return tuple(out)

    def with_high(self, high: Optional[int]) -> "Range":
        return self if high is None else dataclasses.replace(self, high=high)

    def describe(self) -> str:
        names = self.accepted_names()
        if self.path:
            what = {"file": "a file", "dir": "a folder", "out": "a folder"}[self.path]
            if self.path_suffix:
                what = f"a {self.path_suffix} file"
            alts = ", ".join(names) if names else ""
            return f"{what}{' or one of ' + alts if alts else ''}"
        if self.choices is not None or self.names is not None:
            each = "a list of names, each " if self.items else ""
            return f"{each}one of " + ", ".join(names) + (" (or cuda:N)" if self.pattern else "")
        what = "a non-empty list of ints" if self.items else "an int"
        if self.also:
            what += " or " + ", ".join(repr(a) for a in self.also)
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low} to {self.high}"
        if self.low is not None:
            return f"{what} >= {self.low}"
        return what

    def is_name(self, value: Any) -> bool:
        """True when ``value`` is one of the range's names (for a path: names no file)."""
        return isinstance(value, str) and (value in self.accepted_names() or bool(
            self.pattern and re.fullmatch(self.pattern, value)))

    def check(self, value: Any) -> Optional[str]:
        """None if ``value`` is in range, else what was expected and what came. Paths are
        checked by the workbook (they resolve against where they were written first)."""
        named = self.choices is not None or self.names is not None
        ranged = named or self.items or bool(self.also) or (self.low, self.high) != (None, None)
        if value is None or self.path or not ranged:
            return None  # a path (checked where it resolves), or declared on purpose unranged
        if named:
            values = value if self.items and isinstance(value, (list, tuple)) else [value]
            bad = [v for v in values if not self.is_name(v)]
            return f"must be {self.describe()}, got {bad[0]!r}" if bad else None
        if self.items and (not isinstance(value, (list, tuple)) or not value):
            return f"must be {self.describe()}, got {value!r}"
        for v in (value if self.items else [value]):
            if isinstance(v, str) and v in self.also:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or (
                    self.low is not None and v < self.low) or (
                    self.high is not None and v > self.high):
                return f"must be {self.describe()}, got {value!r}"
        return None


def folder_problem(path: Union[str, "os.PathLike[str]"]) -> Optional[str]:
    """Why files cannot be written in the folder ``path`` (None: they can): a file there, or
    the folder (or its nearest existing parent, where it would be created) refuses a new file.
    Tried, not guessed from permission bits (root passes those, and ``/proc`` still refuses)."""
    import tempfile
    from pathlib import Path

    p = Path(path)
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(dir=existing, prefix=".unirepclip-write-test-")
    except OSError as e:
        return f"no file can be created in {existing} ({e.strerror or e})"
    os.close(fd)
    os.unlink(name)
    return None


COUNT = Range(low=0)      # how many (0 means none, or all where the notebook says so)
SIZE = Range(low=1)       # a size, a batch, a number of steps: at least one
SIZES = Range(low=1, items=True)
UNRANGED = Range()        # declared on purpose: any value of the type


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of the vocabulary: its spelling, type (as a notebook annotates it), range and
    meaning, the layer that owns it (filled in by the workbook when it composes the owners), and any
    check that needs the notebook's other values (``checkpoint="demo"`` needs a demo model)."""

    name: str
    type: str
    meaning: str
    range: Range = UNRANGED
    owner: str = ""
    #: a check against the notebook's other values: ``relation(value, values)`` -> problem or None
    relation: Optional[Callable[[Any, Mapping[str, Any]], Optional[str]]] = None

    def range_for(self, values: Mapping[str, Any]) -> Range:
        """The range for one notebook's values: a ``per_model`` bound resolved from its
        ``model_name`` (the model's config, no weights)."""
        rng = self.range
        if rng.per_model is not None and isinstance(values.get("model_name"), str):
            rng = rng.with_high(rng.per_model(values["model_name"]))
        return rng


#: The bottom layer's own parameters (utils: seeds, devices, threads).
PARAMETERS: Tuple[Param, ...] = (
    Param("seed", "int", "the seed of every random draw a notebook makes", COUNT),
    Param("device", "str", "where the model runs: cpu, cuda, cuda:N, or auto (cuda when present)",
          Range(choices=DEVICE_CHOICES, pattern=DEVICE_PATTERN)),
    Param("num_threads", "int", "torch CPU threads (0: torch's default)", COUNT),
    Param("n_jobs", "int", "worker processes for independent fits", SIZE),
)
