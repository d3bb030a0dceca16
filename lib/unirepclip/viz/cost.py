"""Text tables of what a model costs (:mod:`unirepclip.analysis.cost`), for notebook 01."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from unirepclip.analysis.cost import ModelStats

__all__ = ["format_stats", "format_forms"]


def format_stats(training: ModelStats, inference: ModelStats, resolutions: Iterable[int]) -> str:
    """A plain-text table of parameters by part and image GMACs per resolution, both forms."""
    def m(n: int) -> str:
        return f"{n / 1e6:,.2f}M"
    lines = [f"{training.model_name}: parameters by part and MACs per image",
             f"{'':<34}{'training form':>16}{'inference form':>16}"]
    names = {"image_tower": "image tower (no head)", "image_projection": "image projection",
             "text_tower": "text tower", "logit_scale": "logit scale", "total": "whole CLIP"}
    for key, label in names.items():
        lines.append(f"{label:<34}{m(training.params[key]):>16}{m(inference.params[key]):>16}")
    lines.append(f"{'image tower + 1000-class head':<34}{m(training.params_with_in1k_head):>16}")
    for r in [int(r) for r in resolutions]:
        lines.append(f"{f'image encoder GMACs at {r} px':<34}{training.image_gmacs[r]:>16.3f}"
                     f"{inference.image_gmacs[r]:>16.3f}")
    lines.append(f"{'text encoder GMACs (one text)':<34}{training.text_gmacs:>16.3f}"
                 f"{inference.text_gmacs:>16.3f}")
    return "\n".join(lines)


def format_forms(check: Mapping[str, Any]) -> str:
    """One line per form of :func:`unirepclip.analysis.cost.form_comparison`'s result (agreement
    with the training form, speed), or the reason the comparison was skipped."""
    if check.get("skipped"):
        return f"No comparison: {check['skipped']}."
    return "\n".join(f"{label:<26} max rel. diff {row['max_rel_diff']:.2e}   "
                     f"min cosine {row['min_cosine']:.7f}   {row['images_per_s']:8.1f} images/s"
                     for label, row in check["rows"].items())
