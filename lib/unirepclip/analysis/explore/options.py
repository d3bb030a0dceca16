"""The explorer's default queries as one options object: what notebook 06 answers and records, and
what the live panels start from.

:class:`QueryOptions` holds the image the queries are about, the number of hits, the attribution
method and its arguments, the embedding map's method, the seed, and the receptive-field setting
(:class:`ErfQuery`). Both are frozen; a value out of range is refused where it is given, with the
field named.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Mapping, Optional, Union

from unirepclip.analysis import attribution
from unirepclip.analysis.explore.projection import MAP_METHODS
from unirepclip.analysis.params import ERF_MIN_RESOLUTION

__all__ = ["ErfQuery", "QueryOptions", "MIN_RESOLUTION"]

#: The smallest ERF resolution in pixels (declared with the notebook parameter ``erf_resolution``,
#: so the dry run refuses what the explorer would).
MIN_RESOLUTION = ERF_MIN_RESOLUTION


def _integer(owner: object, name: str, minimum: int) -> None:
    """Refuse a field that is not an integer >= ``minimum``; store it as a plain ``int``."""
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{type(owner).__name__}.{name}={value!r}: expected an integer "
                         f">= {minimum}")
    object.__setattr__(owner, name, int(value))


@dataclasses.dataclass(frozen=True)
class ErfQuery:
    """One effective-receptive-field measurement: the ``stage`` (its upper bound is the model's,
    checked when measured), the input ``resolution`` in pixels (at least :data:`MIN_RESOLUTION`;
    a smaller one is refused, never raised), ``n_images`` averaged, and the
    images' ``dataset`` and ``data_dir`` (as :func:`unirepclip.analysis.erf.erf_images` reads
    them; None means no folder)."""

    stage: int = 3
    resolution: int = 64
    n_images: int = 8
    dataset: str = "synthetic"
    data_dir: Union[str, os.PathLike, None] = ""

    def __post_init__(self) -> None:
        _integer(self, "stage", 0)
        _integer(self, "resolution", MIN_RESOLUTION)
        _integer(self, "n_images", 1)
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"ErfQuery.dataset={self.dataset!r}: expected a dataset name")
        object.__setattr__(self, "data_dir", os.fspath(self.data_dir or ""))


@dataclasses.dataclass(frozen=True)
class QueryOptions:
    """The explorer's default query of every panel.

    ``query_index``: the gallery image the queries are about; ``top_k``: hits per search and
    neighbours on the map; ``explain_method`` / ``explain_args``: the attribution method of
    :data:`unirepclip.analysis.attribution.METHODS` and its own arguments (``n_steps`` ...);
    ``map_method``: ``"pca"`` or ``"tsne"``; ``erf``: the receptive-field setting; ``seed``: the
    embedding map's and the ERF images' seed.
    """

    query_index: int = 0
    top_k: int = 8
    explain_method: str = "integrated_gradients"
    explain_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    map_method: str = "pca"
    erf: ErfQuery = dataclasses.field(default_factory=ErfQuery)
    seed: int = 0

    def __post_init__(self) -> None:
        _integer(self, "query_index", 0)
        _integer(self, "top_k", 1)
        _integer(self, "seed", 0)
        if self.explain_method not in attribution.METHODS:
            raise ValueError(f"QueryOptions.explain_method={self.explain_method!r}: expected one "
                             f"of {list(attribution.METHODS)}")
        if self.map_method not in MAP_METHODS:
            raise ValueError(f"QueryOptions.map_method={self.map_method!r}: expected one of "
                             f"{list(MAP_METHODS)}")
        if not isinstance(self.erf, ErfQuery):
            raise ValueError(f"QueryOptions.erf={self.erf!r}: expected an ErfQuery")
        args: Optional[Mapping[str, Any]] = self.explain_args
        if args is not None and not isinstance(args, Mapping):
            raise ValueError(f"QueryOptions.explain_args={args!r}: expected a mapping of the "
                             f"method's arguments")
        # a copy: later changes to the caller's dict do not reach the options
        object.__setattr__(self, "explain_args", dict(args or {}))
