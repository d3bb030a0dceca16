"""Profiles: YAML files of parameter values, ``lib/unirepclip/workbook/profiles/<name>.yaml`` or any
path::

    description: one line shown by `python -m unirepclip run --list-profiles`
    extends: demo            # optional: start from another profile, then apply this one
    common:                  # given to every notebook that declares the name
      seed: 0
    notebooks:               # per notebook (file stem), over `common`
      02_zeroshot:
        n_images: 200
    sweep: ...               # optional: see unirepclip.workbook.sweep
    slurm: ...               # optional: see unirepclip.workbook.params.slurm

A key given twice in one mapping is refused (YAML would keep the last one silently)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import yaml

from unirepclip.workbook.params.slurm import slurm_problems
from unirepclip.workbook.params.values import ParameterError, load_yaml

__all__ = ["PROFILES_DIR", "PROFILE_KEYS", "list_profiles", "load_profile", "check_folder_name"]

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILE_KEYS = ("description", "extends", "common", "notebooks", "sweep", "slurm")


def check_folder_name(name: str) -> Union[str, None]:
    """None if ``name`` can be one folder's name, else why not (empty, ``.``/``..``, a path
    separator or a NUL in it)."""
    if not name or not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} names no folder of its own"
    for sep in {"/", "\\", os.sep, os.altsep or "/", "\0"}:
        if sep in name:
            return f"it holds {sep!r}"
    return None


def list_profiles() -> Dict[str, str]:
    """The shipped profiles: name -> description."""
    out = {}
    for p in sorted(PROFILES_DIR.glob("*.yaml")):
        try:
            doc = load_yaml(p.read_text()) or {}
        except yaml.YAMLError:
            doc = {}
        out[p.stem] = str(doc.get("description", "")) if isinstance(doc, dict) else ""
    return out


def _profile_file(name_or_path: Union[str, os.PathLike]) -> Path:
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or "/" in s:
        path = Path(s)
    else:
        path = PROFILES_DIR / f"{s}.yaml"
    if not path.is_file():
        known = ", ".join(list_profiles()) or "none"
        raise ParameterError([f"profile {s!r} not found ({path}); shipped profiles: {known}"])
    return path


def _read(path: Path) -> Dict[str, Any]:
    """The profile file's document, its shape checked (every problem at once)."""
    try:
        doc = load_yaml(path.read_text())
    except yaml.MarkedYAMLError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise ParameterError([f"profile {path}: not valid YAML{where}: {e.problem}"]) from None
    except yaml.YAMLError as e:
        raise ParameterError([f"profile {path}: not valid YAML: {e}"]) from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ParameterError([f"profile {path}: the top level must be a mapping"])
    problems: List[str] = [f"profile {path}: unknown top-level key {k!r} (allowed: "
                           f"{', '.join(PROFILE_KEYS)})" for k in doc if k not in PROFILE_KEYS]
    notebooks = doc.get("notebooks") or {}
    if not isinstance(doc.get("common") or {}, dict):
        problems.append(f"profile {path}: 'common' must be a mapping of parameter: value")
    if not isinstance(notebooks, dict) or not all(
            isinstance(v, dict) or v is None for v in notebooks.values()):
        problems.append(f"profile {path}: 'notebooks' must map notebook names to mappings")
    if doc.get("sweep") is not None and not isinstance(doc.get("sweep"), dict):
        problems.append(f"profile {path}: 'sweep' must be a mapping (grid, cases, reference, ...)")
    problems += slurm_problems(doc.get("slurm"), f"profile {path}")
    bad = check_folder_name(path.stem)
    if bad:
        problems.append(f"profile {path}: its name {path.stem!r} (the file name less .yaml) "
                        f"becomes the report folder's name, and {bad}; rename the file")
    if problems:
        raise ParameterError(problems)
    return doc


def load_profile(name_or_path: Union[str, os.PathLike], _seen: Tuple[str, ...] = ()
                 ) -> Dict[str, Any]:
    """A profile with ``extends`` applied: ``{"name", "path", "description", "common", "notebooks",
    "sources", "sweep", "sweep_path"}`` where ``sources`` maps ``"common.key"`` / ``"NN_name.key"``
    to the file that set it (for error messages); ``sweep`` is the nearest profile's ``sweep:``
    section as written (None when none has one) and ``sweep_path`` the file it came from; ``slurm``
    the ``slurm:`` sections, a profile's keys over its base's."""
    path = _profile_file(name_or_path)
    if str(path.resolve()) in _seen:
        raise ParameterError([f"profile {path}: 'extends' loops ({' -> '.join(_seen)})"])
    doc = _read(path)
    if doc.get("extends"):
        base = load_profile(doc["extends"], _seen + (str(path.resolve()),))
    else:
        base = {"common": {}, "notebooks": {}, "sources": {}, "sweep": None, "sweep_path": None,
                "slurm": {}}
    common = dict(base["common"])
    sources = dict(base["sources"])
    for k, v in (doc.get("common") or {}).items():
        common[k] = v
        sources[f"common.{k}"] = str(path)
    notebooks = {nb: dict(v) for nb, v in base["notebooks"].items()}
    for nb, values in (doc.get("notebooks") or {}).items():
        notebooks.setdefault(str(nb), {}).update(values or {})
        for k in values or {}:
            sources[f"{nb}.{k}"] = str(path)
    # A sweep is one table: a profile's own section replaces its base's whole.
    sweep, sweep_path = base["sweep"], base["sweep_path"]
    if doc.get("sweep") is not None:
        sweep, sweep_path = doc["sweep"], path
    return {"name": path.stem, "path": path, "description": str(doc.get("description", "")),
            "common": common, "notebooks": notebooks, "sources": sources,
            "sweep": sweep, "sweep_path": sweep_path,
            "slurm": {**base["slurm"], **(doc.get("slurm") or {})}}
