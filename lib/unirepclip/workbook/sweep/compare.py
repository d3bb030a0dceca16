"""A sweep's comparison: each setting's figures side by side, published against measured where
the profile gives a reference, a bar chart of both, and paired tests of each setting against the
first one on the same items (from the per-item outcomes a notebook saves in ``items/``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from unirepclip.eval import uncertainty
from unirepclip.workbook import results as _results
from unirepclip.workbook.run.folder import read_manifest

__all__ = ["comparison", "key_id", "matches", "read_setting", "setting_status", "figure",
           "paired_tests"]


def key_id(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def matches(match: Mapping[str, Any], setting: Mapping[str, Any]) -> bool:
    for k, v in match.items():
        have = setting.get("name") if k == "name" else setting.get("values", {}).get(k)
        same = json.dumps(have, sort_keys=True, default=str) == json.dumps(
            v, sort_keys=True, default=str)
        if not same:
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
            cells[key_id(c["key"])] = v
        rows.append({"slug": s["slug"], "cells": cells})
    ref_rows = None
    if reference:
        scale = 100.0 if reference.get("unit") == "%" else 1.0
        ref_rows = []
        for s in settings:
            for r in reference["rows"]:
                if not matches(r["match"], s):
                    continue
                try:
                    m = _results.get_path(s.get("results") or {}, r["key"])
                except KeyError:
                    m = None
                number = isinstance(m, (int, float)) and not isinstance(m, bool)
                measured = m * scale if number else None
                pub = r.get("value")
                ref_rows.append({
                    "slug": s["slug"], "key": r["key"], "metric": r.get("metric"),
                    "published": pub, "measured": measured,
                    "difference": None if measured is None or pub is None else measured - pub,
                    "source": r.get("source")})
    return {"columns": [dict(c) for c in columns], "rows": rows, "reference": ref_rows}


def _outcomes(folder: Path) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for f in sorted((folder / "items").glob("*.npz")):
        merged.update(uncertainty.load_outcomes(f))
    return merged


def paired_tests(folder: Path, settings: Sequence[Mapping[str, Any]],
                 columns: Sequence[Mapping[str, Any]], seed: int = 0) -> List[Dict[str, Any]]:
    """Each setting against the first one that saved per-item outcomes, for every compared
    figure both saved on the same items (:func:`unirepclip.eval.uncertainty.paired_test_of`:
    exact McNemar for an accuracy, the paired bootstrap for recall@k and mean per-class recall).
    One row per pair and figure: ``slug``, ``against``, ``key``, ``label``, ``fmt``, the two
    values, ``difference`` (setting - first) with ``low`` / ``high`` (its 95% interval),
    ``p_value``, ``test``, ``verdict``; a figure saved by both but on different items gets a row
    whose ``verdict`` says so and nothing else."""
    saved = [(s["slug"], _outcomes(folder / s["slug"])) for s in settings]
    saved = [(slug, o) for slug, o in saved if o]
    rows: List[Dict[str, Any]] = []
    if len(saved) < 2:
        return rows
    (first, base), others = saved[0], saved[1:]
    for slug, o in others:
        for c in columns:
            key = c["key"] if isinstance(c["key"], str) else ".".join(map(str, c["key"]))
            row = {"slug": slug, "against": first, "key": key, "label": c.get("label") or key,
                   "fmt": c.get("fmt")}
            t = uncertainty.paired_test_of(key, o, base, seed=seed, names=(slug, first))
            if t is not None:
                d = t.difference
                rows.append({**row, "a": t.a, "b": t.b, "difference": d.estimate, "low": d.low,
                             "high": d.high, "p_value": t.p_value, "test": t.test,
                             "verdict": t.verdict})
            elif any(key == k or k.startswith(key + ":") for k in o) and \
                    any(key == k or k.startswith(key + ":") for k in base):
                rows.append({**row, "verdict": "not paired: the two scored different items"})
    return rows


def read_setting(folder: Path) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]],
                                         Optional[Dict[str, Any]]]:
    """A setting folder's merged results, its notebooks' headline entries, and its manifest."""
    manifest = read_manifest(folder)
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


def setting_status(manifest: Optional[Mapping[str, Any]]) -> str:
    status = (manifest or {}).get("status")
    return {"complete": "ok", "failed": "failed", "interrupted": "interrupted",
            "running": "running"}.get(status, "not run")


def figure(folder: Path, comp: Mapping[str, Any], reference: Optional[Mapping[str, Any]]
            ) -> Optional[Dict[str, str]]:
    """A bar chart of each compared figure per setting (with the published figure beside the
    measured one where there is a reference); PNG and SVG in ``figures/``."""
    numeric = [c for c in comp["columns"]
               if any(isinstance(r["cells"].get(key_id(c["key"])), (int, float))
                      and not isinstance(r["cells"].get(key_id(c["key"])), bool)
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
        vals = [r["cells"].get(key_id(c["key"])) for r in comp["rows"]]
        vals = [np.nan if not isinstance(v, (int, float)) else float(v) for v in vals]
        ax.barh(y, vals, color="C0")
        ax.set_yticks(y, slugs)
        ax.invert_yaxis()
        ax.set_title(str(c.get("label") or key_id(c["key"])))
    if refs:
        ax = axes[0][-1]
        yr = np.arange(len(refs))
        pub = [np.nan if r["published"] is None else r["published"] for r in refs]
        mea = [np.nan if r["measured"] is None else r["measured"] for r in refs]
        ax.barh(yr - 0.2, pub, height=0.4, color="C7", label=str(reference.get("label")))
        ax.barh(yr + 0.2, mea, height=0.4, color="C0", label="measured")
        ax.set_yticks(yr, [f"{r['slug']} ({r.get('metric') or key_id(r['key'])})" for r in refs])
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
