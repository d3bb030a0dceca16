"""The receptive-field panel's answer: the effective receptive field of one stage at one
resolution and its area ratios (notebook 03's measurement, :mod:`unirepclip.analysis.erf`, for
one setting)."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch.nn as nn

from unirepclip.analysis import erf
from unirepclip.analysis.explore.options import ErfQuery

__all__ = ["receptive_field", "covers_image"]


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
    "area_ratio"}, ...}, "stage", "resolution", "n_images", "n_nan"}``.
    """
    feature = erf.stage_feature_fn(model, query.stage)  # the tower seam checks the stage
    images = erf.erf_images(query.dataset, query.n_images, query.resolution,
                            data_dir=query.data_dir or None, seed=seed)
    emap, n_used, n_nan = erf.compute_erf(feature, images, batch_size=batch_size,
                                          precision=precision, progress=progress,
                                          return_counts=True)
    return {"erf": emap, "normalized": erf.normalize_erf(emap),
            "area_ratios": erf.area_ratios(emap), "stage": query.stage,
            "resolution": query.resolution, "n_images": int(n_used), "n_nan": int(n_nan)}
