"""The notebook parameters the features layer gives meaning to (see :mod:`unirepclip.vocab`)."""
from __future__ import annotations

from typing import Tuple

from unirepclip.vocab import COUNT, SIZE, Param, Range

__all__ = ["PARAMETERS"]

PARAMETERS: Tuple[Param, ...] = (
    Param("batch_size", "int", "images (and prompts) per forward pass", SIZE),
    Param("num_workers", "int", "DataLoader worker processes", COUNT),
    Param("cache_dir", "str", "the feature cache's folder ('' for none)",
          Range(path="out", empty="no cache")),
)
