"""Sweeps: the notebooks run once per setting, and one page that compares the settings.

``python -m unirepclip run --sweep n_images=200,1000 --sweep seed=0,1`` runs the profile four times
(a grid: every combination of the ``--sweep`` flags; each value a YAML scalar, a notebook-scoped
key such as ``02_zeroshot.n_images`` too), each setting into its own report folder
``<output-dir>/<profile>/<slug>/`` with :func:`unirepclip.workbook.runner.run` (so each has its own
lock, provenance and ``--resume``), then writes ``<output-dir>/<profile>/index.html`` and
``sweep.json``: the slug-to-setting table, each setting's headline figures side by side (a table and
a figure), and, where the profile gives a reference, published against measured with the
difference.

A profile can hold the sweep itself (``--sweep`` flags then replace its grid axes of the same key
and add others)::

    sweep:
      only: [02_zeroshot]           # the notebooks each setting runs (default: all; --only wins)
      grid:                         # each key a list of values; the settings are their product
        model_name: [CLIP-UniRepLKNet-L, CLIP-UniRepLKNet-L-320]
        sweep_sizes: [[224], [320]] # a list-valued parameter: each value a list
      cases:                        # and/or settings given one by one (crossed with the grid)
        - {name: cifar10, dataset: cifar10}     # `name` (optional) is the slug's base
        - {name: demo-3x3, model_name: UniRepLKNet-Demo-SmallKernel, model_key: demo_small_kernel}
      compare:                      # the comparison's columns (default: the notebooks' headlines)
        - {key: zeroshot.acc1, label: top-1, fmt: .1%}
      reference:                    # published figures, matched against the settings' values
        label: paper (arXiv 2410.08049, Table 13)
        unit: "%"                   # "%": a published 96.6 is a measured fraction 0.966
        rows:
          - {match: {dataset: cifar10}, key: zeroshot.acc1, metric: top-1, value: 96.6,
             source: "Table 13"}

String values may name a setting's scalar keys as ``{key}`` fields (``data_dir: /data/{dataset}``,
as CLIP_benchmark's ``--dataset_root``). A key both swept and given with ``-p`` is refused.

Every setting is validated before the first one starts (one :class:`ParameterError`, exit status 2):
unknown keys, empty value lists, values of the wrong type or out of range, duplicate settings.
Settings run one after another in this process; ``jobs=N`` runs N at once, each in its own
``python -m unirepclip run`` process (log in ``logs/<slug>.log``), pinned to its own GPU with
``CUDA_VISIBLE_DEVICES`` when its device is CUDA, else given ``num_threads`` = the CPU count / N
(``OMP_NUM_THREADS`` too) unless the sweep or ``-p`` sets ``num_threads``. ``num_threads`` is a
parameter like any other: ``--resume`` with another ``--jobs`` on the CPU reruns the settings.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from unirepclip.workbook import report as _report
from unirepclip.workbook import results as _results
from unirepclip.workbook import runner as _runner
from unirepclip.workbook.runner import ParameterError

__all__ = [
    "SWEEP_KEYS", "Setting", "SweepSpec", "SweepResult", "split_values", "parse_sweep_flag",
    "slugify", "build_spec", "comparison", "run_sweep", "SETTING_STATUSES",
]

SWEEP_KEYS = ("only", "grid", "cases", "compare", "reference")
REFERENCE_KEYS = ("label", "unit", "rows")
ROW_KEYS = ("match", "key", "metric", "value", "source")
COLUMN_KEYS = ("key", "label", "fmt")
#: A setting's status on the sweep's page (``ok``: every notebook it ran or kept is ok).
SETTING_STATUSES = ("pending", "running", "ok", "failed", "interrupted", "not run")
FORMAT = "unirepclip.sweep/1"
LOCK_FILE = ".sweep.lock"
_RESERVED_SLUGS = ("figures", "logs", "results")
_SLUG_MAX = 80


@dataclass
class Setting:
    """One setting of a sweep: its folder's name (``slug``), its parameter values (``"key"`` or
    ``"NN_name.key"`` -> value), where each was written, and its case's ``name`` if any."""

    slug: str
    values: Dict[str, Any]
    sources: Dict[str, str]
    name: Optional[str] = None


@dataclass
class SweepSpec:
    """A sweep, read and checked: its settings, the notebooks they run, the comparison's columns
    (None: the headlines) and the reference (None: none)."""

    settings: List[Setting]
    only: Optional[List[str]] = None
    compare: Optional[List[Dict[str, Any]]] = None
    reference: Optional[Dict[str, Any]] = None
    axes: Dict[str, List[Any]] = field(default_factory=dict)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the sweep's folder, its ``sweep.json`` document, and the signal
    that stopped it (None when it finished)."""

    folder: Path
    doc: Dict[str, Any]
    interrupted: Optional[str] = None

    @property
    def index(self) -> Path:
        return self.folder / "index.html"

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(s["status"] == "ok" for s in self.doc["settings"])

    @property
    def failed(self) -> List[str]:
        return [s["slug"] for s in self.doc["settings"] if s["status"] == "failed"]


# -- the spec -------------------------------------------------------------------------------------

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
    scalar (see :func:`unirepclip.workbook.runner.parse_value`)."""
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
        v = _runner.parse_value(t)
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
        v = row.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            problems.append(f"{w}.value: must be a number or null (not published), got {v!r}")
        if not row.get("source"):
            problems.append(f"{w}.source: say where the figure comes from")
        out.append({"match": dict(row.get("match") or {}), "key": row.get("key"),
                    "metric": row.get("metric"), "value": v, "source": row.get("source")})
    return {"label": str(ref.get("label") or "published"), "unit": unit, "rows": out}


def build_spec(profile: Mapping[str, Any], sweep: Sequence[str] = ()) -> Optional[SweepSpec]:
    """The sweep of a profile (:func:`~unirepclip.workbook.runner.load_profile`) with the
    ``--sweep`` flags applied; None when neither gives one. Raises :class:`ParameterError` for
    a malformed section or flag, an empty value list, or two settings that are the same."""
    problems: List[str] = []
    section = profile.get("sweep")
    src = str(profile.get("sweep_path") or profile.get("path") or "profile")
    where = f"{src}: sweep"
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
    if section is None and not cli:
        if problems:
            raise ParameterError(problems)
        return None
    section = section or {}
    _check_mapping(section, SWEEP_KEYS, where, problems)
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
    cases = section.get("cases")
    if cases is not None and (not isinstance(cases, list) or not cases
                              or not all(isinstance(c, dict) for c in cases)):
        problems.append(f"{where}.cases must be a non-empty list of mappings")
        cases = None
    for i, c in enumerate(cases or []):
        for k in c:
            if k in cli:
                problems.append(f"--sweep {k}: {where}.cases[{i}] sets {k} too")
    only = section.get("only")
    if only is not None and (not isinstance(only, list) or not all(isinstance(o, str) for o in only)):
        problems.append(f"{where}.only must be a list of notebook names")
        only = None
    compare = section.get("compare")
    if compare is not None:
        if not isinstance(compare, list) or not compare:
            problems.append(f"{where}.compare must be a non-empty list of {{key, label, fmt}}")
            compare = None
        else:
            for i, c in enumerate(compare):
                if _check_mapping(c, COLUMN_KEYS, f"{where}.compare[{i}]", problems) and not c.get("key"):
                    problems.append(f"{where}.compare[{i}].key is missing")
    reference = _read_reference(section.get("reference"), f"{where}.reference", problems)
    for k, vals in axes.items():
        seen = [json.dumps(v, sort_keys=True, default=str) for v in vals]
        if len(set(seen)) != len(seen):
            problems.append(f"{'--sweep' if srcs[k] == '--sweep' else where + '.grid'} {k}: "
                            "a value is listed twice")
    if problems:
        raise ParameterError(problems, "the sweep")

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
    seen_values: Dict[str, str] = {}
    for s in settings:
        ident = json.dumps([s.name, s.values], sort_keys=True, default=str)
        if ident in seen_values:
            problems.append(f"{where}: settings {seen_values[ident]!r} and {s.slug!r} are the same")
        seen_values[ident] = s.slug
    used: Dict[str, int] = {}
    for s in settings:  # slugs unique, whatever the values' spelling
        base = s.slug
        if base.lower() in used or base in _RESERVED_SLUGS:
            n = used.get(base.lower(), 1) + 1
            used[base.lower()] = n
            s.slug = f"{base}-{n}"
        used.setdefault(s.slug.lower(), 1)
        bad = _runner.check_folder_name(s.slug)
        if bad:
            problems.append(f"setting {s.values}: its folder name {s.slug!r} {bad}")
    if problems:
        raise ParameterError(problems, "the sweep")
    return SweepSpec(settings, only, compare, reference, axes)


# -- the comparison -------------------------------------------------------------------------------

def _key_id(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _matches(match: Mapping[str, Any], setting: Mapping[str, Any]) -> bool:
    for k, v in match.items():
        have = setting.get("name") if k == "name" else setting.get("values", {}).get(k)
        if json.dumps(have, sort_keys=True, default=str) != json.dumps(v, sort_keys=True, default=str):
            return False
    return True


def comparison(settings: Sequence[Mapping[str, Any]], columns: Sequence[Mapping[str, Any]],
               reference: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The comparison as plain data. ``settings`` are ``sweep.json`` entries (``slug``, ``name``,
    ``values``, ``results``: the setting's merged results or None); ``columns`` the figures
    compared (``key``, ``label``, ``fmt``). Returns ``{"columns", "rows": [{"slug", "cells":
    {key: value or None}}], "reference": [{"slug", "key", "metric", "published", "measured",
    "difference", "source"}] or None}``; ``measured`` and ``difference`` are in the reference's
    unit (``%``: the measured fraction times 100), None where a side is missing."""
    rows = []
    for s in settings:
        cells = {}
        for c in columns:
            try:
                v = _results.get_path(s.get("results") or {}, c["key"])
            except KeyError:
                v = None
            cells[_key_id(c["key"])] = v
        rows.append({"slug": s["slug"], "cells": cells})
    ref_rows = None
    if reference:
        scale = 100.0 if reference.get("unit") == "%" else 1.0
        ref_rows = []
        for s in settings:
            for r in reference["rows"]:
                if not _matches(r["match"], s):
                    continue
                try:
                    m = _results.get_path(s.get("results") or {}, r["key"])
                except KeyError:
                    m = None
                measured = m * scale if isinstance(m, (int, float)) and not isinstance(m, bool) else None
                pub = r.get("value")
                ref_rows.append({
                    "slug": s["slug"], "key": r["key"], "metric": r.get("metric"),
                    "published": pub, "measured": measured,
                    "difference": None if measured is None or pub is None else measured - pub,
                    "source": r.get("source")})
    return {"columns": [dict(c) for c in columns], "rows": rows, "reference": ref_rows}


def _read_setting(folder: Path) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]],
                                         Optional[Dict[str, Any]]]:
    """A setting folder's merged results, its notebooks' headline entries, and its manifest."""
    manifest = _runner.read_manifest(folder)
    merged = None
    try:
        merged = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        pass
    heads: List[Dict[str, Any]] = []
    for r in (manifest or {}).get("notebooks", []):
        try:
            doc = _results.load(folder / "results" / f"{r.get('name')}.json")
        except (OSError, ValueError):
            continue
        heads.extend(doc.get("headline") or [])
    return merged, heads, manifest


def _setting_status(manifest: Optional[Mapping[str, Any]]) -> str:
    status = (manifest or {}).get("status")
    return {"complete": "ok", "failed": "failed", "interrupted": "interrupted",
            "running": "running"}.get(status, "not run")


def _figure(folder: Path, comp: Mapping[str, Any], reference: Optional[Mapping[str, Any]]
            ) -> Optional[Dict[str, str]]:
    """A bar chart of each compared figure per setting (with the published figure beside the
    measured one where there is a reference); PNG and SVG in ``figures/``."""
    numeric = [c for c in comp["columns"]
               if any(isinstance(r["cells"].get(_key_id(c["key"])), (int, float))
                      and not isinstance(r["cells"].get(_key_id(c["key"])), bool)
                      for r in comp["rows"])]
    refs = comp.get("reference") or []
    if not numeric and not refs:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from unirepclip.viz import style

    style.use_style()
    panels = len(numeric) + (1 if refs else 0)
    n = len(comp["rows"])
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 1.2 + 0.28 * max(n, len(refs))),
                             squeeze=False, layout="constrained")
    slugs = [r["slug"] for r in comp["rows"]]
    y = np.arange(n)
    for ax, c in zip(axes[0], numeric):
        vals = [r["cells"].get(_key_id(c["key"])) for r in comp["rows"]]
        vals = [np.nan if not isinstance(v, (int, float)) else float(v) for v in vals]
        ax.barh(y, vals, color="C0")
        ax.set_yticks(y, slugs)
        ax.invert_yaxis()
        ax.set_title(str(c.get("label") or _key_id(c["key"])))
    if refs:
        ax = axes[0][-1]
        yr = np.arange(len(refs))
        pub = [np.nan if r["published"] is None else r["published"] for r in refs]
        mea = [np.nan if r["measured"] is None else r["measured"] for r in refs]
        ax.barh(yr - 0.2, pub, height=0.4, color="C7", label=str(reference.get("label")))
        ax.barh(yr + 0.2, mea, height=0.4, color="C0", label="measured")
        ax.set_yticks(yr, [f"{r['slug']} ({r.get('metric') or _key_id(r['key'])})" for r in refs])
        ax.invert_yaxis()
        ax.set_title("published vs measured" + (" (%)" if reference.get("unit") == "%" else ""))
        ax.legend(loc="lower right", fontsize="small")
    (folder / "figures").mkdir(exist_ok=True)
    files = {}
    for ext in ("png", "svg"):
        fig.savefig(folder / "figures" / f"sweep_comparison.{ext}")
        files[ext] = f"figures/sweep_comparison.{ext}"
    plt.close(fig)
    return files


# -- running --------------------------------------------------------------------------------------

class _State:
    """The sweep's ``sweep.json`` and index page, rewritten as settings start and end."""

    def __init__(self, folder: Path, doc: Dict[str, Any], spec: SweepSpec):
        self.folder, self.doc, self.spec = folder, doc, spec
        self.lock = threading.Lock()

    def setting(self, slug: str) -> Dict[str, Any]:
        return next(s for s in self.doc["settings"] if s["slug"] == slug)

    def refresh(self, slug: str) -> None:
        """Read a finished (or stopped) setting's folder into its entry."""
        entry = self.setting(slug)
        merged, heads, manifest = _read_setting(self.folder / slug)
        entry["status"] = _setting_status(manifest) if manifest else entry["status"]
        entry["results"] = merged
        entry["headline"] = heads
        nbs = (manifest or {}).get("notebooks", [])
        entry["notebooks"] = {r.get("name"): r.get("status") for r in nbs}
        entry["kept"] = [r.get("name") for r in nbs
                         if str(r.get("kept") or "").startswith("kept by --resume")]
        entry["errors"] = [f"{r.get('name')}: {r.get('error')}" for r in nbs if r.get("error")]
        entry["duration_s"] = (manifest or {}).get("duration_s")
        entry["finished"] = (manifest or {}).get("finished")
        entry["index"] = f"{slug}/index.html" if (self.folder / slug / "index.html").is_file() else None

    def write(self, figure: bool = False) -> None:
        """Rewrite ``sweep.json`` and the index; ``figure`` redraws the comparison figure (at the
        end, and after each setting when they run in this process)."""
        with self.lock:
            s = self.doc
            columns = self.spec.compare
            if columns is None:  # the notebooks' headlines, in order of first appearance
                columns, seen = [], set()
                for e in s["settings"]:
                    for h in e.get("headline") or []:
                        if _key_id(h["key"]) not in seen:
                            seen.add(_key_id(h["key"]))
                            columns.append({"key": h["key"], "label": h.get("label"),
                                            "fmt": h.get("fmt")})
            s["comparison"] = comparison(s["settings"], columns, self.spec.reference)
            if self.spec.reference:
                s["reference"] = {k: self.spec.reference[k] for k in ("label", "unit")}
            if figure:
                try:
                    s["figure"] = _figure(self.folder, s["comparison"], self.spec.reference)
                    s.pop("figure_error", None)
                except Exception as e:  # a failed figure is a note on the page, not a lost sweep
                    s["figure"] = None
                    s["figure_error"] = f"{type(e).__name__}: {e}"
            _results.dump_json(s, self.folder / _runner.SWEEP_FILE)
            (self.folder / "index.html").write_text(_report.render_sweep_index(s), encoding="utf-8")


def _child_command(profile_path: Path, root: Path, setting: Setting, *, overrides: Sequence[str],
                   only: Optional[Sequence[str]], notebooks_dir: Path, hide_code: bool,
                   kernel: str, cell_timeout: Optional[int], resume: bool,
                   threads: Optional[int]) -> List[str]:
    values = dict(setting.values)
    sources = dict(setting.sources)
    if threads is not None:
        values["num_threads"], sources["num_threads"] = threads, "--sweep"
    cmd = [sys.executable, "-m", "unirepclip", "run", "--profile", str(profile_path),
           "--output-dir", str(root), "--notebooks-dir", str(notebooks_dir), "--kernel", kernel,
           "--no-progress", "--sweep-setting",
           json.dumps({"slug": setting.slug, "values": values, "sources": sources})]
    for item in overrides:
        cmd += ["-p", item]
    for o in only or []:
        cmd += ["--only", o]
    if hide_code:
        cmd.append("--hide-code")
    if cell_timeout:
        cmd += ["--cell-timeout", str(cell_timeout)]
    if resume:
        cmd.append("--resume")
    return cmd


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_sweep(profile: Union[str, os.PathLike] = "demo", sweep: Sequence[str] = (),
              overrides: Sequence[str] = (), only: Optional[Sequence[str]] = None,
              output_dir: Optional[Union[str, os.PathLike]] = None,
              notebooks_dir: Optional[Union[str, os.PathLike]] = None, hide_code: bool = False,
              kernel: Optional[str] = None, progress: bool = True,
              cell_timeout: Optional[int] = None, dry_run: bool = False, quiet: bool = False,
              command: Optional[Sequence[str]] = None, wait: bool = False, resume: bool = False,
              jobs: int = 1) -> SweepResult:
    """Run every setting of the sweep (see the module docstring) into
    ``<output_dir>/<profile>/<slug>/`` and write the sweep's ``sweep.json`` and ``index.html``.

    The arguments are :func:`unirepclip.workbook.runner.run`'s, plus ``sweep`` (``--sweep``
    flags) and ``jobs``. Raises :class:`ParameterError` before anything runs when the sweep or a
    setting's parameters are bad (or the profile has no sweep and no flag gives one), and
    :class:`~unirepclip.workbook.runner.RunLocked` when another sweep holds the folder.
    ``dry_run`` validates and returns the settings' parameters in ``doc["settings"]``.
    """
    if int(jobs) < 1:
        raise ParameterError([f"--jobs {jobs}: must be at least 1"])
    prof = _runner.load_profile(profile)
    spec = build_spec(prof, sweep)
    if spec is None:
        raise ParameterError([f"profile {prof['name']!r} has no sweep: section and no --sweep "
                              "flag was given"])
    only = list(only) if only else spec.only
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else _runner.default_notebooks_dir()
    root = Path(output_dir) if output_dir is not None else nb_dir.parent / "reports"
    folder = _runner.report_folder(root, prof["name"])

    # Every setting resolved before the first runs: one report of every problem.
    problems: List[str] = []
    dry: Dict[str, Any] = {}
    for s in spec.settings:
        try:
            res = _runner.run(profile=prof["path"], overrides=overrides, only=only,
                              output_dir=folder, notebooks_dir=nb_dir, dry_run=True,
                              setting=s.values, setting_sources=s.sources, folder_name=s.slug)
        except ParameterError as e:
            problems.extend(p for p in e.problems if p not in problems)
            continue
        dry[s.slug] = res.manifest
    if spec.reference:
        for s in spec.settings:
            entry = {"name": s.name, "values": s.values}
            keys = [_key_id(r["key"]) for r in spec.reference["rows"] if _matches(r["match"], entry)]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                problems.append(f"setting {s.slug}: more than one reference row for {dup}")
    if problems:
        raise ParameterError(problems, f"the sweep of profile {prof['name']!r}")

    devices = {s.slug: {str(p.get("device")) for p in dry[s.slug]["parameters"].values()
                        if p.get("device") is not None} for s in spec.settings}
    gpu_ids: List[str] = []
    if jobs > 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu_ids = ([g for g in visible.split(",") if g.strip()] if visible is not None
                   else [str(i) for i in range(len(_report._gpus()))])
        wants_gpu = any("cuda" in d for d in devices.values())
        if wants_gpu and len(gpu_ids) < jobs:
            raise ParameterError([f"--jobs {jobs}: each CUDA setting runs on its own GPU, and "
                                  f"{len(gpu_ids)} are visible; pass --jobs {max(1, len(gpu_ids))}"
                                  " or fewer"])
    settings_doc = [{"slug": s.slug, "name": s.name, "values": s.values, "status": "pending",
                     "results": None, "headline": [], "notebooks": {}, "kept": [], "errors": [],
                     "duration_s": None, "finished": None, "index": None,
                     "parameters": dry[s.slug]["parameters"]} for s in spec.settings]
    command = list(command) if command is not None else [sys.executable, *sys.argv]
    doc: Dict[str, Any] = {
        "format": FORMAT, "status": "running", "profile": {"name": prof["name"],
                                                          "file": str(prof["path"])},
        "command": command, "started": _report.now(), "finished": None, "jobs": int(jobs),
        "axes": spec.axes, "only": only, "overrides": list(overrides), "figure": None,
        "settings": settings_doc}
    if dry_run:
        doc["status"] = "dry run"
        return SweepResult(folder, doc)

    from filelock import FileLock, Timeout
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "manifest.json").exists() and not (folder / _runner.SWEEP_FILE).exists():
        raise ParameterError([f"report folder {folder} holds a plain run's report "
                              f"({folder / 'manifest.json'}); a sweep writes its settings' "
                              "folders and its own index there: choose another --output-dir"])
    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise _runner.RunLocked(f"sweep folder {folder} is in use by another sweep; pass "
                                    "--wait to wait for it, or choose another --output-dir") from None
        _log(f"waiting for the sweep that holds {folder} ...", quiet)
        lock.acquire()
    state = _State(folder, doc, spec)
    saved: Dict[int, Any] = {}
    interrupted: Optional[str] = None
    kernel = kernel or _runner.ensure_kernel()  # once, before any child would race to register it
    try:
        state.write()
        saved = _runner._install_handlers()
        if jobs == 1:
            for i, s in enumerate(spec.settings, 1):
                state.setting(s.slug)["status"] = "running"
                state.write()
                _log(f"setting [{i}/{len(spec.settings)}] {s.slug} ...", quiet)
                res = _runner.run(profile=prof["path"], overrides=overrides, only=only,
                                  output_dir=folder, notebooks_dir=nb_dir, hide_code=hide_code,
                                  kernel=kernel, progress=progress, cell_timeout=cell_timeout,
                                  quiet=quiet, command=command, wait=wait, resume=resume,
                                  setting=s.values, setting_sources=s.sources, folder_name=s.slug)
                # run() restores the handlers it found: the sweep's, so a signal between settings
                # still stops the sweep.
                state.refresh(s.slug)
                state.write(figure=True)
                if res.interrupted:
                    interrupted = res.interrupted
                    break
        else:
            interrupted = _run_parallel(state, spec, prof["path"], folder, nb_dir, devices,
                                        gpu_ids, jobs, overrides=overrides, only=only,
                                        hide_code=hide_code, kernel=kernel,
                                        cell_timeout=cell_timeout, resume=resume, quiet=quiet)
    except _runner.RunInterrupted as e:
        interrupted = e.signal
    finally:
        _runner._restore_handlers(saved)
        for e in doc["settings"]:
            if e["status"] == "pending":
                e["status"] = "not run"
            elif e["status"] == "running":
                state.refresh(e["slug"])
                if e["status"] == "running":
                    e["status"] = "interrupted"
        doc["finished"] = _report.now()
        doc["status"] = ("interrupted" if interrupted else
                         "failed" if any(e["status"] != "ok" for e in doc["settings"]) else
                         "complete")
        if interrupted:
            doc["interrupted"] = {"signal": interrupted, "at": doc["finished"]}
        state.write(figure=True)
        lock.release()
    return SweepResult(folder, doc, interrupted)


def _run_parallel(state: _State, spec: SweepSpec, profile_path: Path, folder: Path, nb_dir: Path,
                  devices: Mapping[str, set], gpu_ids: List[str], jobs: int, *,
                  overrides: Sequence[str], only: Optional[Sequence[str]], hide_code: bool,
                  kernel: str, cell_timeout: Optional[int], resume: bool,
                  quiet: bool) -> Optional[str]:
    """Run the settings ``jobs`` at a time, each its own process; returns the signal that stopped
    them (None when all ended)."""
    import queue
    import signal
    from concurrent.futures import ThreadPoolExecutor

    free: "queue.Queue[str]" = queue.Queue()
    for g in gpu_ids[:jobs]:
        free.put(g)
    stop = threading.Event()
    procs: Dict[str, subprocess.Popen] = {}
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    threads_each = max(1, (os.cpu_count() or 1) // jobs)
    user_threads = any("num_threads" in s.values for s in spec.settings) or any(
        o.partition("=")[0].rpartition(".")[2].strip() == "num_threads" for o in overrides)

    def one(s: Setting) -> None:
        if stop.is_set():
            return
        env = dict(os.environ)
        devs = devices.get(s.slug, set())
        on_gpu = bool(devs & {"cuda", "auto"}) and bool(gpu_ids) and not any(
            d.startswith("cuda:") for d in devs)
        gpu = free.get() if on_gpu else None
        threads = None
        try:
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            else:
                env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads_each)
                if not user_threads and "num_threads" in _declared(state, s.slug):
                    threads = threads_each
            cmd = _child_command(profile_path, folder, s, overrides=overrides, only=only,
                                 notebooks_dir=nb_dir, hide_code=hide_code, kernel=kernel,
                                 cell_timeout=cell_timeout, resume=resume, threads=threads)
            with state.lock:
                state.setting(s.slug)["status"] = "running"
                state.setting(s.slug)["pinned"] = ({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None
                                                   else {"num_threads": threads_each})
            state.write()
            _log(f"setting {s.slug}: started"
                 + (f" on GPU {gpu}" if gpu is not None else f" with {threads_each} CPU threads"),
                 quiet)
            with open(logs / f"{s.slug}.log", "w") as log:
                if stop.is_set():
                    return
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # signals reach it through us
                procs[s.slug] = p
                rc = p.wait()
            with state.lock:
                state.refresh(s.slug)
                entry = state.setting(s.slug)
                if rc not in (0, 1) and entry["status"] in ("running", "ok", "not run"):
                    entry["status"] = "interrupted" if rc >= 128 else "failed"
                    entry["errors"].append(f"exit status {rc}; see logs/{s.slug}.log")
            state.write()
            _log(f"setting {s.slug}: {state.setting(s.slug)['status']}", quiet)
        finally:
            if gpu is not None:
                free.put(gpu)

    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(one, s) for s in spec.settings]
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.2)
        for f in futures:
            f.result()
        return None
    except _runner.RunInterrupted as e:
        stop.set()
        for p in list(procs.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in list(procs.values()):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        pool.shutdown(wait=True)
        return e.signal
    finally:
        pool.shutdown(wait=False)


def _declared(state: _State, slug: str) -> set:
    params = state.setting(slug).get("parameters") or {}
    return set().union(*(set(p) for p in params.values())) if params else set()
