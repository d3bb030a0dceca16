"""The receptive-field panel's answer: the effective receptive field of one stage at one
resolution and its area ratios (notebook 03's measurement, :mod:`unirepclip.analysis.erf`, for
one setting)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch.nn as nn

from unirepclip.analysis import erf
from unirepclip.analysis.explore.options import ErfQuery
from unirepclip.models.towers import tower_of

__all__ = ["receptive_field", "covers_image", "size_note", "runnable_resolution"]


def size_note(model: nn.Module, resolution: int) -> Optional[str]:
    """None when the image tower runs at ``resolution`` px; else one line naming it and the size
    it runs at (the tower seam's :meth:`~unirepclip.models.towers.Tower.size_note`)."""
    tower = tower_of(model)
    note = tower.size_note(int(resolution))
    return None if note is None else f"{type(model).__name__}'s {tower.family} tower: {note}"


def runnable_resolution(model: nn.Module, resolution: int) -> int:
    """``resolution``, or the one size a tower that runs at one size only (a ViT) runs at."""
    fixed = tower_of(model).fixed_image_size
    return int(resolution) if fixed is None or size_note(model, resolution) is None \
        else int(fixed[0])


def covers_image(entry: Mapping[str, Any]) -> bool:
    """Whether a square of :func:`unirepclip.analysis.erf.area_ratios` (``{"side",
    "area_ratio"}``) holds the whole image: its clipped area is the image's. Its nominal side is
    then the next odd number past the image (65 on a 64-pixel one), which is no size to show."""
    return float(entry["area_ratio"]) >= 1.0


def receptive_field(model: nn.Module, query: ErfQuery = ErfQuery(), *, seed: int = 0,
                    batch_size: int = 8, precision: str = "fp32", progress: bool = False
                    ) -> Dict[str, Any]:
    """The ERF of ``query.stage`` at ``query.resolution`` over ``query.n_images`` images
    (:func:`unirepclip.analysis.erf.compute_erf` over
    :func:`~unirepclip.analysis.erf.erf_images`, drawn with ``seed``) and its area ratios.

    Returns ``{"erf" (R, R) map, "normalized" (R, R), "area_ratios" {"t20": {"side",
    "area_ratio"}, ...}, "stage", "unit" (the tower's depth: "stage", or "block" for a ViT),
    "resolution", "n_images", "n_nan"}``. A tower that runs at one size only (a ViT) at another
    resolution is a one-line ValueError naming the tower (:func:`size_note`).
    """
    note = size_note(model, query.resolution)
    if note is not None:
        raise ValueError(f"ERF: {note}")
    feature = erf.stage_feature_fn(model, query.stage)  # the tower seam checks the stage
    images = erf.erf_images(query.dataset, query.n_images, query.resolution,
                            data_dir=query.data_dir or None, seed=seed)
    emap, n_used, n_nan = erf.compute_erf(feature, images, batch_size=batch_size,
                                          precision=precision, progress=progress,
                                          return_counts=True)
    return {"erf": emap, "normalized": erf.normalize_erf(emap),
            "area_ratios": erf.area_ratios(emap), "stage": query.stage,
            "unit": tower_of(model).unit,
            "resolution": query.resolution, "n_images": int(n_used), "n_nan": int(n_nan)}
