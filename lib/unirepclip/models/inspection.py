"""What a checkpoint file holds, without building a real model: layout, form, projection, tensors
and parameters by part, dtypes, sha256, which registered configs it matches (names and shapes),
and whether it is a shipped demo checkpoint as recorded, or one modified since.

``python -m unirepclip inspect CKPT`` prints :func:`inspect_checkpoint`'s report.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

from unirepclip.models.factory import build_model, get_model_config, list_models
from unirepclip.models.loading import (CheckpointError, Layout, _canonicalize, compare_to_model,
                                       detect_layout, nonfinite_tensors, read_checkpoint,
                                       resolve_path, unwrap_state_dict)
from unirepclip.models.pretrained import MODEL_NAME, demo_checkpoint_path, shipped_demo
from unirepclip.models.towers import NotApplicable, tower_of
from unirepclip.utils import file_sha256

__all__ = ["CheckpointReport", "inspect_checkpoint", "is_inference_form"]


def _part_of(key: str) -> str:
    if key.startswith("visual.trunk.head.") or key.startswith("visual.head."):
        return "image projection"
    if key.startswith("visual."):
        return "image tower"
    if key in ("logit_scale", "logit_bias"):
        return "logit scale"
    return "text tower"


@dataclasses.dataclass
class CheckpointReport:
    path: str
    file_size: int
    sha256: str
    file_format: str
    layout: str
    form: str
    projection: str
    n_tensors: int
    n_params: int
    params_by_part: Dict[str, int]
    dtypes: Dict[str, int]
    matching_configs: List[str]
    config_checks: Dict[str, str]
    notes: List[str]
    nonfinite: List[str] = dataclasses.field(default_factory=list)
    #: whether the file is a shipped demo checkpoint as recorded (None: not a demo file)
    demo: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), indent=kw.pop("indent", 2), **kw)

    def __str__(self) -> str:
        lines = [
            f"checkpoint   {self.path}",
            f"size         {self.file_size / 1e6:.1f} MB ({self.file_format})",
            f"sha256       {self.sha256}",
            *([f"demo         {self.demo}"] if self.demo else []),
            f"layout       {self.layout}, {self.form} form, projection {self.projection}",
            f"tensors      {self.n_tensors} ({self.n_params / 1e6:.2f}M parameters)",
        ]
        for part, n in self.params_by_part.items():
            lines.append(f"  {part:<16} {n / 1e6:10.2f}M")
        lines.append("dtypes       " + ", ".join(f"{k}: {v}" for k, v in self.dtypes.items()))
        for name, verdict in self.config_checks.items():
            lines.append(f"config       {name}: {verdict}")
        if self.nonfinite:
            lines.append(f"NON-FINITE   {len(self.nonfinite)} tensor(s) hold NaN or infinite "
                         f"values: {self.nonfinite[:10]}")
        for n in self.notes:
            lines.append(f"note         {n}")
        return "\n".join(lines)


def _config_check(cfg_name: str, layout: Layout, sd: Dict[str, torch.Tensor]) -> str:
    cfg = get_model_config(cfg_name)
    try:
        csd, _, lay = _canonicalize(layout, sd, cfg)
    except CheckpointError as e:
        return f"no ({e})"
    with torch.device("meta"):
        model = build_model(cfg, meta=True, deploy=layout.form == "inference")
    missing, unexpected, mismatched = compare_to_model(layout, csd, model.state_dict())
    if not (missing or unexpected or mismatched):
        return "matches" + (" (image tower)" if layout.kind == "tower" else "")
    return (f"no ({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} "
            f"mis-shaped; e.g. {(missing + unexpected + [m[0] for m in mismatched])[:3]})")


def demo_verdict(path: Union[str, os.PathLike], sha256: Optional[str] = None) -> Optional[str]:
    """Whether ``path`` is a shipped demo checkpoint as recorded (its sha256 is the one stored
    beside it), one that was modified (the shipped file, or its file name, with another sha256),
    or neither (None). ``sha256``: the file's digest, when known."""
    demo = shipped_demo(path, sha256)
    if not demo:
        return None
    if not demo["modified"]:
        return f"the shipped demo checkpoint of {demo['model']} (sha256 as recorded)"
    return (f"does NOT match the shipped demo checkpoint of {demo['model']}: its sha256 is not "
            f"the recorded {demo['recorded_sha256']} (modified or replaced; checkpoint='demo' "
            f"refuses it)")


def inspect_checkpoint(path: Union[str, os.PathLike], model: Optional[str] = None
                       ) -> CheckpointReport:
    """Describe a checkpoint: layout, tensors and parameters by part, dtypes, sha256, size,
    which registered configs (or ``model``) it matches, and whether it is a shipped demo
    checkpoint as recorded. ``path="demo"`` is the shipped checkpoint of ``model`` (default: the
    demo CLIP), as ``checkpoint="demo"`` would load it."""
    if str(path) == "demo" and not os.path.exists(path):
        path = demo_checkpoint_path(model or MODEL_NAME)
    p = resolve_path(path)
    obj, fmt = read_checkpoint(p)
    sd, notes = unwrap_state_dict(obj, f"checkpoint {path}")
    layout, csd = detect_layout(sd, f"checkpoint {path}")
    by_part: Dict[str, int] = {}
    dtypes: Dict[str, int] = {}
    for k, v in csd.items():
        by_part[_part_of(k)] = by_part.get(_part_of(k), 0) + v.numel()
        dtypes[str(v.dtype).replace("torch.", "")] = dtypes.get(
            str(v.dtype).replace("torch.", ""), 0) + 1
    names = [model] if model else list_models()
    checks = {n: _config_check(n, layout, csd) for n in names}
    nonfinite = nonfinite_tensors(sd)
    matching = [n for n, v in checks.items() if v.startswith("matches")]
    sha = file_sha256(p)
    if layout.kind == "tower":
        notes.append("no text tower in the file: text-dependent evaluation is unavailable")
    return CheckpointReport(
        path=str(path), file_size=p.stat().st_size, sha256=sha, file_format=fmt,
        layout=layout.kind, form=layout.form, projection=layout.projection,
        n_tensors=len(csd), n_params=sum(v.numel() for v in csd.values()),
        params_by_part=by_part, dtypes=dtypes, matching_configs=matching, config_checks=checks,
        notes=notes, nonfinite=nonfinite, demo=demo_verdict(p, sha))


def is_inference_form(model: nn.Module) -> bool:
    """Whether the image tower of a CLIP is in the re-parameterized inference form (the tower
    seam's answer; a tower it does not know, or one without that form, is not). Any other error
    inside the seam is raised."""
    try:
        tower = tower_of(model)
    except NotApplicable:  # a tower the seam does not know
        return False
    return tower.is_inference_form
