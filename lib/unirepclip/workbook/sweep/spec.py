"""A sweep's specification: the settings a profile's ``sweep:`` section and ``--sweep`` flags
describe (a grid: every combination of the axes, crossed with the ``cases``), each with its folder's
name (slug), and the comparison's columns and published reference. See
:mod:`unirepclip.workbook.sweep` for the section's keys."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from unirepclip.workbook.params import ParameterError, check_folder_name, parse_value

__all__ = ["SWEEP_KEYS", "Setting", "SweepSpec", "split_values", "parse_sweep_flag", "slugify",
           "build_spec"]

SWEEP_KEYS = ("only", "grid", "cases", "compare", "reference")
REFERENCE_KEYS = ("label", "unit", "rows")
ROW_KEYS = ("match", "key", "metric", "value", "source", "published")
COLUMN_KEYS = ("key", "label", "fmt")
_RESERVED_SLUGS = ("figures", "logs", "results")
_SLUG_MAX = 80


@dataclasses.dataclass
class Setting:
    """One setting of a sweep: its folder's name (``slug``), its parameter values (``"key"`` or
    ``"NN_name.key"`` -> value), where each was written, and its case's ``name`` if any."""

    slug: str
    values: Dict[str, Any]
    sources: Dict[str, str]
    name: Optional[str] = None


@dataclasses.dataclass
class SweepSpec:
    """A sweep, read and checked: its settings, the notebooks they run, the comparison's columns
    (None: the headlines) and the reference (None: none)."""

    settings: List[Setting]
    only: Optional[List[str]] = None
    compare: Optional[List[Dict[str, Any]]] = None
    reference: Optional[Dict[str, Any]] = None
    axes: Dict[str, List[Any]] = dataclasses.field(default_factory=dict)


def split_values(text: str) -> List[str]:
    """``"a,b,'c,d'"`` -> ``["a", "b", "'c,d'"]``: commas outside quotes and brackets."""
    parts, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_sweep_flag(item: str) -> Tuple[str, List[Any]]:
    """``"key=v1,v2"`` or ``"NN_name.key=v1,v2"`` -> ``(key, [values])``; each value a YAML
    scalar (see :func:`~unirepclip.workbook.params.parse_value`)."""
    if "=" not in item:
        raise ParameterError([f"--sweep {item!r}: expected key=value1,value2,..."])
    key, _, text = item.partition("=")
    key = key.strip()
    scope, _, name = key.rpartition(".")
    if not name.isidentifier() or (("." in key) and not re.fullmatch(r"[A-Za-z0-9_\-]+", scope)):
        raise ParameterError([f"--sweep {item!r}: {key!r} is not a parameter name"])
    if not text.strip() or not any(t for t in split_values(text)):
        raise ParameterError([f"--sweep {key}: the value list is empty (give key=v1,v2,...)"])
    problems, values = [], []
    for t in split_values(text):
        if not t:
            problems.append(f"--sweep {key}: an empty value in {text!r} (a stray comma?)")
            continue
        v = parse_value(t)
        if isinstance(v, (list, tuple, dict)):
            problems.append(f"--sweep {key}: value {t!r} is not a YAML scalar; sweep list-valued "
                            "parameters in a profile's sweep: section")
            continue
        values.append(v)
    if problems:
        raise ParameterError(problems)
    return key, values


def _slug_part(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_slug_part(v) for v in value) or "empty"
    if value is None:
        return "null"
    text = json.dumps(value) if isinstance(value, bool) else str(value)
    if isinstance(value, str) and ("/" in value or os.sep in value):
        text = Path(value).name or text  # a path: its last part says which
    return re.sub(r"[^A-Za-z0-9.+=-]+", "-", text).strip("-") or "x"


def slugify(values: Mapping[str, Any], name: Optional[str] = None) -> str:
    """A folder name for a setting: its case's ``name``, else ``key-value`` parts joined by
    ``_`` (ASCII letters, digits and ``.+=-`` only; long ones shortened with a hash of the
    setting)."""
    if name is not None:
        base = re.sub(r"[^A-Za-z0-9.+=-]+", "-", str(name)).strip("-.")
    else:
        base = "_".join(f"{re.sub(r'[^A-Za-z0-9.-]+', '-', k.rpartition('.')[2])}-{_slug_part(v)}"
                        for k, v in values.items()).strip("-.")
    base = base.lstrip(".") or "setting"
    if len(base) > _SLUG_MAX:
        digest = hashlib.sha256(json.dumps([name, values], sort_keys=True, default=str)
                                .encode()).hexdigest()[:8]
        base = f"{base[:_SLUG_MAX - 9].rstrip('-_.')}-{digest}"
    return base


def _check_mapping(doc: Any, allowed: Sequence[str], where: str, problems: List[str]) -> bool:
    if not isinstance(doc, dict):
        problems.append(f"{where} must be a mapping")
        return False
    for k in doc:
        if k not in allowed:
            problems.append(f"{where}: unknown key {k!r} (allowed: {', '.join(allowed)})")
    return True


def _read_reference(ref: Any, where: str, problems: List[str]) -> Optional[Dict[str, Any]]:
    if ref is None:
        return None
    if not _check_mapping(ref, REFERENCE_KEYS, where, problems):
        return None
    unit = ref.get("unit", "")
    if unit not in ("", "%"):
        problems.append(f"{where}.unit: must be \"%\" (published percentages of measured "
                        f"fractions) or \"\" (as measured), got {unit!r}")
    rows = ref.get("rows") or []
    if not isinstance(rows, list) or not rows:
        problems.append(f"{where}.rows: must be a non-empty list")
        rows = []
    out = []
    for i, row in enumerate(rows):
        w = f"{where}.rows[{i}]"
        if not _check_mapping(row, ROW_KEYS, w, problems):
            continue
        if not isinstance(row.get("match"), dict) or not row["match"]:
            problems.append(f"{w}.match: must map parameter names (or `name`) to values")
        if not isinstance(row.get("key"), (str, list)) or not row.get("key"):
            problems.append(f"{w}.key: the result key the figure is compared with is missing")
        if row.get("published") is not None:   # a shipped open_clip row, not a typed value
            v, source = _shipped(row, unit, w, problems)
            row = dict(row, value=v, source=source)
        v = row.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            problems.append(f"{w}.value: must be a number or null (not published), got {v!r}")
        if not row.get("source"):
            problems.append(f"{w}.source: say where the figure comes from")
        out.append({"match": dict(row.get("match") or {}), "key": row.get("key"),
                    "metric": row.get("metric"), "value": v, "source": row.get("source")})
    return {"label": str(ref.get("label") or "published"), "unit": unit, "rows": out}


def _shipped(row: Mapping[str, Any], unit: str, where: str,
             problems: List[str]) -> Tuple[Optional[float], Optional[str]]:
    """A reference row's ``published: {model, pretrained, task}``: the value of open_clip's
    published row shipped in :mod:`unirepclip.data.published` (a task column, or ``average``,
    the 38-task average as published), in the reference's unit; the source says which row."""
    from unirepclip.data import published

    spec = row["published"]
    if "value" in row or not isinstance(spec, dict) \
            or set(spec) - {"model", "pretrained", "task"} or not spec.get("model") \
            or not spec.get("pretrained"):
        problems.append(f"{where}.published: must be {{model, pretrained, task}} (open_clip's "
                        f"name, pretrained tag and a task column or 'average') instead of a value")
        return None, "(not shipped)"
    task = spec.get("task", published.IMAGENET)
    try:
        r = published.published_result(str(spec["model"]), str(spec["pretrained"]))
        frac = r.average if task == "average" else r.task(str(task))
    except published.PublishedLookupError as e:
        problems.append(f"{where}.published: {e}")
        return None, "(not shipped)"
    column = published.AVERAGE_COLUMN if task == "average" else task
    value = None if frac == 0 and task != "average" else frac * (100.0 if unit == "%" else 1.0)
    return value, (f"{r.label}, column {column!r} of {published.RESULTS_FILE.name} ("
                   f"{published.SOURCE})" + (" (failed upstream: 0)" if value is None else ""))


def _flags(sweep: Sequence[str], problems: List[str]) -> Dict[str, List[Any]]:
    cli: Dict[str, List[Any]] = {}
    for item in sweep:
        try:
            k, vals = parse_sweep_flag(item)
        except ParameterError as e:
            problems.extend(e.problems)
            continue
        if k in cli:
            problems.append(f"--sweep {k}: given twice; list its values in one flag")
        cli[k] = vals
    return cli


def _axes(section: Mapping[str, Any], cli: Mapping[str, List[Any]], where: str, src: str,
          problems: List[str]) -> Tuple[Dict[str, List[Any]], Dict[str, str]]:
    """The grid's axes (the section's, then the flags') and where each was written."""
    axes: Dict[str, List[Any]] = {}
    srcs: Dict[str, str] = {}
    grid = section.get("grid") or {}
    if not isinstance(grid, dict):
        problems.append(f"{where}.grid must map parameter names to lists of values")
        grid = {}
    for k, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            problems.append(f"{where}.grid.{k}: the value list is empty or not a list")
            continue
        axes[str(k)], srcs[str(k)] = list(vals), src
    for k, vals in cli.items():
        axes[k], srcs[k] = vals, "--sweep"
    for k, vals in axes.items():
        seen = [json.dumps(v, sort_keys=True, default=str) for v in vals]
        if len(set(seen)) != len(seen):
            problems.append(f"{'--sweep' if srcs[k] == '--sweep' else where + '.grid'} {k}: "
                            "a value is listed twice")
    return axes, srcs


def _parts(section: Mapping[str, Any], cli: Mapping[str, Any], where: str,
           problems: List[str]) -> Tuple[Optional[list], Optional[list], Optional[list]]:
    """The section's cases, only and compare, each checked."""
    cases = section.get("cases")
    if cases is not None and (not isinstance(cases, list) or not cases
                              or not all(isinstance(c, dict) for c in cases)):
        problems.append(f"{where}.cases must be a non-empty list of mappings")
        cases = None
    problems.extend(f"--sweep {k}: {where}.cases[{i}] sets {k} too"
                    for i, c in enumerate(cases or []) for k in c if k in cli)
    only = section.get("only")
    if only is not None and (not isinstance(only, list) or
                             not all(isinstance(o, str) for o in only)):
        problems.append(f"{where}.only must be a list of notebook names")
        only = None
    compare = section.get("compare")
    if compare is not None and (not isinstance(compare, list) or not compare):
        problems.append(f"{where}.compare must be a non-empty list of {{key, label, fmt}}")
        compare = None
    for i, c in enumerate(compare or []):
        if _check_mapping(c, COLUMN_KEYS, f"{where}.compare[{i}]", problems) and not c.get("key"):
            problems.append(f"{where}.compare[{i}].key is missing")
    return cases, only, compare


def _settings(axes: Mapping[str, List[Any]], srcs: Mapping[str, str], cases: Optional[list],
              src: str) -> List[Setting]:
    settings: List[Setting] = []
    keys = list(axes)
    for case in (cases or [{}]):
        case = dict(case)
        name = case.pop("name", None)
        for combo in itertools.product(*(axes[k] for k in keys)):
            values = {**dict(zip(keys, combo)), **case}
            sources = {**{k: srcs[k] for k in keys}, **{k: src for k in case}}
            part = None if name is None else (
                str(name) if not keys else f"{name}_{slugify(dict(zip(keys, combo)))}")
            settings.append(Setting(slugify(values, part), values, sources,
                                    None if name is None else str(name)))
    return settings


def _unique(settings: List[Setting], where: str, problems: List[str]) -> None:
    """No two settings the same; slugs unique (case-insensitively), whatever the spelling."""
    seen: Dict[str, str] = {}
    for s in settings:
        ident = json.dumps([s.name, s.values], sort_keys=True, default=str)
        if ident in seen:
            problems.append(f"{where}: settings {seen[ident]!r} and {s.slug!r} are the same")
        seen[ident] = s.slug
    used: Dict[str, int] = {}
    for s in settings:
        base = s.slug
        if base.lower() in used or base in _RESERVED_SLUGS:
            n = used.get(base.lower(), 1) + 1
            used[base.lower()] = n
            s.slug = f"{base}-{n}"
        used.setdefault(s.slug.lower(), 1)
        bad = check_folder_name(s.slug)
        if bad:
            problems.append(f"setting {s.values}: its folder name {s.slug!r} {bad}")


def build_spec(profile: Mapping[str, Any], sweep: Sequence[str] = ()) -> Optional[SweepSpec]:
    """The sweep of a profile (:func:`~unirepclip.workbook.params.load_profile`) with the
    ``--sweep`` flags applied; None when neither gives one. Raises :class:`ParameterError` for
    a malformed section or flag, an empty value list, or two settings that are the same."""
    problems: List[str] = []
    section = profile.get("sweep")
    src = str(profile.get("sweep_path") or profile.get("path") or "profile")
    where = f"{src}: sweep"
    cli = _flags(sweep, problems)
    if section is None and not cli:
        if problems:
            raise ParameterError(problems)
        return None
    section = section or {}
    _check_mapping(section, SWEEP_KEYS, where, problems)
    axes, srcs = _axes(section, cli, where, src, problems)
    cases, only, compare = _parts(section, cli, where, problems)
    reference = _read_reference(section.get("reference"), f"{where}.reference", problems)
    if problems:
        raise ParameterError(problems, "the sweep")
    settings = _settings(axes, srcs, cases, src)
    _unique(settings, where, problems)
    if problems:
        raise ParameterError(problems, "the sweep")
    return SweepSpec(settings, only, compare, reference, axes)
