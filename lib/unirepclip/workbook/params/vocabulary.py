"""The workbook's one parameter vocabulary, composed from the layers that give each parameter its
meaning (:mod:`unirepclip.vocab`). The workbook itself owns only what a run sets: the two reserved
parameters. Adding a parameter or a dataset touches its owner's ``params.py`` alone."""
from __future__ import annotations

import importlib
from typing import Dict, Optional, Tuple

from unirepclip.vocab import Param, Range

__all__ = ["OWNERS", "RESERVED", "PARAMETERS", "vocabulary", "lookup"]

#: The modules that declare parameters, from the bottom layer up.
OWNERS: Tuple[str, ...] = (
    "unirepclip.vocab", "unirepclip.models.params", "unirepclip.data.params",
    "unirepclip.features.params", "unirepclip.eval.params", "unirepclip.analysis.params",
    "unirepclip.workbook.params.vocabulary",
)
#: Parameters the runner sets itself; profiles and ``-p`` may not.
RESERVED: Tuple[str, ...] = ("output_dir", "results_path")

PARAMETERS: Tuple[Param, ...] = (
    Param("output_dir", "str", "the report folder (set by the runner)", Range(path="out")),
    Param("results_path", "str", "this notebook's results file (set by the runner)",
          Range(path="out")),
)


def vocabulary() -> Dict[str, Param]:
    """Every declared parameter by name, each with its owner; a name two owners declare is a
    ``ValueError`` (it would have two meanings)."""
    out: Dict[str, Param] = {}
    for owner in OWNERS:
        for p in importlib.import_module(owner).PARAMETERS:
            if p.name in out:
                raise ValueError(f"parameter {p.name!r} is declared by both {out[p.name].owner} "
                                 f"and {owner}")
            out[p.name] = Param(p.name, p.type, p.meaning, p.range, owner, p.relation)
    return out


def lookup(name: str) -> Optional[Param]:
    """The declaration of ``name`` (None when no layer declares it)."""
    return vocabulary().get(name)
