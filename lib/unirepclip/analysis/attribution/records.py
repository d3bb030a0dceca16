"""What notebook 04 records: flat ``results.json`` entries from the attribution results.

An undefined figure (NaN) is recorded as None (JSON null).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

__all__ = ["attribution_records", "completeness_records", "gradcam_stage_records"]

PREFIX = "attribution"


def _value(x) -> Optional[float]:
    # undefined (NaN) becomes null: e.g. mass in mask when no image had positive attribution
    # (a random tower can do that), a rank correlation of a constant map
    x = float(x)
    return x if np.isfinite(x) else None


def attribution_records(metrics: Mapping[str, Mapping[str, float]],
                        cascades: Optional[Mapping[str, Mapping[str, Any]]] = None,
                        prefix: str = PREFIX) -> Dict[str, Any]:
    """Flat results for ``Recorder.record_many`` (:mod:`unirepclip.workbook.results`): per method
    ``mass_in_mask``, ``pointing_game``, ``chance`` and, from :func:`cascading_randomization`,
    ``randomization_rank_corr`` (the end of the cascade), ``randomization_curve`` and
    ``insensitive``. An undefined figure (NaN) is recorded as None (JSON null)."""
    out: Dict[str, Any] = {}
    for method, m in metrics.items():
        for k in ("mass_in_mask", "pointing_game", "chance"):
            out[f"{prefix}.{method}.{k}"] = _value(m[k])
        if "n_no_positive_mass" in m:
            out[f"{prefix}.{method}.n_no_positive_mass"] = int(m["n_no_positive_mass"])
    for method, c in (cascades or {}).items():
        out[f"{prefix}.{method}.randomization_rank_corr"] = _value(c["final"])
        out[f"{prefix}.{method}.randomization_curve"] = dict(zip(c["steps"],
                                                                 map(_value, c["rank_corr"])))
        out[f"{prefix}.{method}.insensitive"] = bool(c["insensitive"])
    return out


def completeness_records(checks: Mapping[str, Mapping[str, Any]],
                         prefix: str = PREFIX) -> Dict[str, Optional[float]]:
    """``integrated_gradients.completeness_error.<baseline>``: the median relative error per
    baseline of :func:`compare_baselines`."""
    return {f"{prefix}.integrated_gradients.completeness_error.{k}": _value(v["median_error"])
            for k, v in checks.items()}


def gradcam_stage_records(scores: Mapping[int, Mapping[str, Any]], used: int,
                          prefix: str = PREFIX, *, unit: str = "stage",
                          not_applicable: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """``gradcam.stage_scores.<unit><s>`` (:func:`gradcam_stage_scores`; ``unit`` is the tower's
    depth, "block" for a ViT), ``gradcam.stage``, the depth used, and
    ``gradcam.not_applicable.<unit><s>``: the line saying why a depth was not scored
    (:func:`gradcam_not_applicable`)."""
    out: Dict[str, Any] = {f"{prefix}.gradcam.stage_scores.{unit}{s}": _value(r["score"])
                           for s, r in scores.items()}
    out[f"{prefix}.gradcam.stage"] = int(used)
    for s, line in (not_applicable or {}).items():
        out[f"{prefix}.gradcam.not_applicable.{unit}{s}"] = str(line)
    return out
