"""The report folder's front page (``index.html``) and a sweep's (its folder's ``index.html``),
rendered from jinja2 templates (``templates/``) with autoescaping: every piece of text that comes
from data (notebook names, parameters, paths, errors, result labels and values) is escaped, and
links are percent-encoded. Each page is one self-contained file: inline CSS, no scripts, nothing
fetched from the network, so it opens the same from a laptop, a cluster's file browser or an
archive. This module turns a manifest (or a sweep's document) into the plain values the
templates show; the templates hold the layout."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from unirepclip.workbook import results as _results

__all__ = ["format_value", "interval_of", "render_index", "write_index", "render_sweep_index",
           "write_sweep_index"]

_CSS_CLASS = {"ok": "ok", "failed": "failed", "interrupted": "interrupted"}


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, keep_trailing_newline=True)
    env.filters["href"] = lambda rel: quote(str(rel), safe="/#")
    return env


def _render(template: str, **values: Any) -> str:
    css = (Path(__file__).parent / "templates" / "style.css").read_text()
    return _environment().get_template(template).render(css=css, **values)


def format_value(value: Any, fmt: Optional[str] = None) -> str:
    """A result value as text: with ``fmt`` (a format spec) when given, ``.4g`` for floats."""
    if fmt:
        try:
            return format(value, fmt)
        except (ValueError, TypeError):
            pass
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _duration(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:04.1f} s"


def _number(v: Any, digits: int = 1, signed: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, f"{'+' if signed else ''}.{digits}f")
    return str(v)


def _pair(v: Any) -> Optional[List[float]]:
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return [float(v[0]), float(v[1])]
    return None


def interval_of(results: Mapping[str, Any], key: Any) -> Optional[List[float]]:
    """The recorded 95% interval ``[low, high]`` of the value at ``key``, or None, in the three
    forms the notebooks record: the value's sibling with ``_ci`` after its name
    (``zeroshot.acc1`` -> ``zeroshot.acc1_ci``), else with ``_ci`` after its parent's
    (``retrieval.text_to_image.r5`` -> ``retrieval.text_to_image_ci.r5``); siblings with
    ``_low`` and ``_high`` after its name (``text_acc`` -> ``text_acc_low``,
    ``text_acc_high``); siblings ``low`` and ``high`` that hold the value (an
    :class:`~unirepclip.eval.uncertainty.Interval` recorded whole beside its ``estimate``, the
    binding test's ``text_acc``)."""
    parts = key.split(".") if isinstance(key, str) else list(key)

    def get(path):
        try:
            return _results.get_path(results, path)
        except (KeyError, TypeError):
            return None

    candidates = [parts[:-1] + [f"{parts[-1]}_ci"]]
    if len(parts) >= 2:
        candidates.append(parts[:-2] + [f"{parts[-2]}_ci", parts[-1]])
    for c in candidates:
        found = _pair(get(c))
        if found:
            return found
    named = _pair([get(parts[:-1] + [f"{parts[-1]}_{end}"]) for end in ("low", "high")])
    if named:
        return named
    beside, value = _pair([get(parts[:-1] + [end]) for end in ("low", "high")]), get(parts)
    # plain low/high bound the one value of their record that they hold (not its count n)
    holds = beside and isinstance(value, (int, float)) and beside[0] <= value <= beside[1]
    return beside if holds else None


def _headline(doc: Optional[Mapping[str, Any]]) -> List[Dict[str, str]]:
    out = []
    for h in (doc or {}).get("headline") or []:
        try:
            value = format_value(_results.get_path(doc["results"], h["key"]), h.get("fmt"))
        except KeyError:
            value = "missing"
        ci = interval_of(doc.get("results") or {}, h["key"]) if value != "missing" else None
        out.append({"label": h.get("label") or h["key"], "value": value,
                    "ci": "" if ci is None else
                    f"[{format_value(ci[0], h.get('fmt'))}, {format_value(ci[1], h.get('fmt'))}]"})
    return out


def _notes(r: Mapping[str, Any], run_ck: Mapping[str, Any], run_seed: Any) -> List[Dict[str, Any]]:
    notes: List[Dict[str, Any]] = []
    if r.get("earlier"):
        notes.append({"text": f"from an earlier run ({r.get('finished')})"})
    if r.get("kept"):
        notes.append({"text": r["kept"]})
    ck = r.get("checkpoint") or {}
    if ck and (ck.get("path"), ck.get("sha256")) != (run_ck.get("path"), run_ck.get("sha256")):
        notes.append({"text": "", "checkpoint": (str(ck.get("path")),
                                                 ck.get("sha256") or "not recorded")})
    if ck.get("modified"):
        notes.append({"text": f"checkpoint {ck.get('path')} MODIFIED: {ck['modified']}"})
    if r.get("seed") is not None and r.get("seed") != run_seed:
        notes.append({"text": f"seed {json.dumps(r.get('seed'))}"})
    return notes


def _run_rows(m: Mapping[str, Any], docs: Mapping[str, Any]) -> List[Dict[str, Any]]:
    runs = m.get("notebooks", [])
    own = [r for r in runs if not r.get("earlier")] or list(runs)
    run_seed = next((r.get("seed") for r in own if r.get("seed") is not None), None)
    rows = []
    for r in runs:
        status = r.get("status") or "not run"
        rows.append({
            "name": r.get("name", ""), "html": r.get("html"), "error": r.get("error"),
            "error_href": f"{r['html']}#papermill-error-cell" if r.get("html") else None,
            "notes": _notes(r, m.get("checkpoint") or {}, run_seed), "status": status,
            "css": _CSS_CLASS.get(status, "not-run"), "duration": _duration(r.get("duration_s")),
            "headline": _headline(docs.get(r.get("name", ""))),
            "files": [{"href": r[k], "label": k} for k in ("html", "ipynb") if r.get(k)]})
    return rows


def _figures(m: Mapping[str, Any], docs: Mapping[str, Any]) -> List[Dict[str, Any]]:
    out = []
    for r in m.get("notebooks", []):
        for f in (docs.get(r.get("name", "")) or {}).get("figures", []):
            files = f.get("files", {})
            src = files.get("png") or files.get("svg")
            if f.get("headline") and src:
                out.append({"link": r.get("html") or src, "src": src, "name": f.get("name"),
                            "caption": f.get("caption") or f.get("name"),
                            "notebook": r.get("name"), "files": files})
    return out


def _manifest_rows(m: Mapping[str, Any]) -> List[Tuple[str, Any]]:
    git, dev, ck = m.get("git", {}), m.get("device", {}), m.get("checkpoint", {})
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    others = [("other checkpoint", f'{c.get("path") or "–"} · sha256 '
               f'{c.get("sha256") or "not recorded"} · model {c.get("model") or "–"} · '
               f'{", ".join(c.get("notebooks") or [])}') for c in m.get("checkpoints") or []
              if (c.get("path"), c.get("sha256")) != (ck.get("path"), ck.get("sha256"))]
    return [
        ("profile", f'{m.get("profile", {}).get("name")} ({m.get("profile", {}).get("file")})'),
        ("command", " ".join(m.get("command", []))),
        ("started", m.get("started")), ("finished", m.get("finished")),
        ("seed", json.dumps(m.get("seed"))),
        ("git commit", f'{git.get("commit") or "not a git checkout"}{dirty}'),
        ("device", f'{dev.get("requested")} · CPU: {dev.get("cpu")} ×{dev.get("cpu_count")} · '
                   f'GPUs: {", ".join(dev.get("gpus") or []) or "none"} · {dev.get("platform")}'),
        ("checkpoint", f'{ck.get("path") or "–"} · model {ck.get("model") or "–"}'),
        ("checkpoint sha256", (ck.get("sha256") or "not recorded")
         + (f" · MODIFIED: {ck['modified']}" if ck.get("modified") else "")),
        *others,
        ("status", m.get("status") or "–"),
        ("source sha256", m.get("source_sha256") or "–"),
        ("overrides (-p)", json.dumps(m.get("overrides", {}), ensure_ascii=False)),
    ]


def _banner(m: Mapping[str, Any]) -> Dict[str, str]:
    """A line above the table when the run did not finish (or is still going)."""
    status, intr = m.get("status"), m.get("interrupted") or {}
    if status == "interrupted":
        how = f" by {intr['signal']}" if intr.get("signal") else ""
        at = f" at {intr['at']}" if intr.get("at") else ""
        why = f" ({intr['reason']})" if intr.get("reason") else ""
        return {"banner": f"This run was interrupted{how}{at}{why}: the notebooks marked "
                          "interrupted or not run have no new outputs; ",
                "banner_code": "run --resume", "banner_after": " completes it."}
    if status == "running":
        return {"banner": "This run is still going: notebooks marked pending have not run yet.",
                "banner_code": "", "banner_after": ""}
    return {"banner": "", "banner_code": "", "banner_after": ""}


def render_index(manifest: Mapping[str, Any], docs: Mapping[str, Optional[Mapping[str, Any]]],
                 title: str = "unirepclip reports") -> str:
    """The index page as an HTML string from a manifest
    (:func:`~unirepclip.workbook.report.manifest.build_manifest`) and each notebook's results
    file (``docs``: name -> :func:`unirepclip.workbook.results.load`'s dict, or None)."""
    runs = manifest.get("notebooks", [])
    others: Dict[str, int] = {}
    for r in runs:
        if r.get("status") not in ("ok", "failed"):
            others[r.get("status") or "not run"] = others.get(r.get("status") or "not run", 0) + 1
    return _render(
        "index.html.j2", title=title, m=manifest, profile=manifest.get("profile", {}).get("name"),
        runs=_run_rows(manifest, docs), others=others,
        n_ok=sum(r.get("status") == "ok" for r in runs),
        n_failed=sum(r.get("status") == "failed" for r in runs),
        run_status=manifest.get("status"), duration=_duration(manifest.get("duration_s")),
        figures=_figures(manifest, docs), manifest_rows=_manifest_rows(manifest),
        versions=[(k, v or "not installed") for k, v in manifest.get("versions", {}).items()],
        parameters=[(nb, [(k, json.dumps(v, ensure_ascii=False)) for k, v in p.items()])
                    for nb, p in manifest.get("parameters", {}).items()],
        **_banner(manifest))


def write_index(folder: os.PathLike, manifest: Mapping[str, Any],
                docs: Mapping[str, Optional[Mapping[str, Any]]]) -> Path:
    """Write ``manifest.json`` and ``index.html`` into ``folder``; return the index path."""
    folder = Path(folder)
    _results.dump_json(manifest, folder / "manifest.json")
    path = folder / "index.html"
    _results.write_text_atomic(path, render_index(manifest, docs))
    return path


def _setting_rows(settings: List[Mapping[str, Any]], keys: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for st in settings:
        status = st.get("status") or "not run"
        vals = st.get("values", {})
        rows.append({"slug": st.get("slug", ""), "link": st.get("index"),
                     "kept": ", ".join(st.get("kept") or []), "errors": st.get("errors") or [],
                     "shown": [json.dumps(vals[k], ensure_ascii=False) if k in vals else None
                               for k in keys],
                     "status": status, "css": _CSS_CLASS.get(status, "not-run"),
                     "duration": _duration(st.get("duration_s"))})
    return rows


def _comparison_rows(comp: Mapping[str, Any]) -> List[Dict[str, Any]]:
    cols = comp.get("columns") or []
    rows = []
    for row in comp.get("rows", []):
        cells = []
        for c in cols:
            kid = c["key"] if isinstance(c["key"], str) else json.dumps(c["key"])
            v = row["cells"].get(kid)
            cells.append({"key": kid, "text": "–" if v is None else format_value(v, c.get("fmt"))})
        rows.append({"slug": row["slug"], "cells": cells})
    return rows


def _reference(doc: Mapping[str, Any], comp: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    ref = comp.get("reference")
    if ref is None:
        return None
    meta = doc.get("reference") or {}
    digits = 1 if meta.get("unit") == "%" else 3
    return {"label": meta.get("label") or "published",
            "unit": " (%)" if meta.get("unit") == "%" else "",
            "rows": [{"slug": r["slug"], "metric": r.get("metric") or r["key"],
                      "published": "not published" if r.get("published") is None
                      else _number(r["published"], digits),
                      "measured": _number(r.get("measured"), digits),
                      "difference": _number(r.get("difference"), digits, True),
                      "source": r.get("source")} for r in ref]}


def _paired_rows(doc: Mapping[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for r in doc.get("paired") or []:
        fmt = r.get("fmt")
        diff = fmt.replace("%", "f") if fmt and fmt.endswith("%") else fmt  # points stay %
        scale = 100.0 if fmt and fmt.endswith("%") else 1.0
        paired = "p_value" in r
        rows.append({
            "slug": r["slug"], "against": r["against"], "label": r.get("label") or r["key"],
            "pair": (f"{format_value(r['a'], fmt)} vs {format_value(r['b'], fmt)}"
                       if paired else "–"),
            "difference": (f"{format_value(scale * r['difference'], '+' + (diff or '.4g'))} "
                           f"[{format_value(scale * r['low'], '+' + (diff or '.4g'))}, "
                           f"{format_value(scale * r['high'], '+' + (diff or '.4g'))}]"
                           if paired else "–"),
            "p": f"{r['p_value']:.2g}" if paired else "–", "test": r.get("test") or "–",
            "verdict": r["verdict"].split(" (p = ")[0]})
    return rows


def render_sweep_index(doc: Mapping[str, Any], title: str = "unirepclip sweep") -> str:
    """The index page of a sweep's folder, from its ``sweep.json`` document: the settings (slug,
    values, status, link to each one's own index), the comparison of their figures, published
    vs measured where a reference is given, and the comparison figure."""
    settings = doc.get("settings", [])
    comp = doc.get("comparison") or {"columns": [], "rows": [], "reference": None}
    counts: Dict[str, int] = {}
    keys: List[str] = []
    for st in settings:
        counts[st.get("status") or "not run"] = counts.get(st.get("status") or "not run", 0) + 1
        keys += [k for k in st.get("values", {}) if k not in keys]
    profile = (doc.get("profile") or {}).get("name")
    sweep_rows = [("command", " ".join(map(str, doc.get("command") or []))),
                  ("profile", f'{profile} ({(doc.get("profile") or {}).get("file")})'),
                  ("axes", json.dumps(doc.get("axes") or {}, ensure_ascii=False)),
                  ("notebooks", ", ".join(doc.get("only") or []) or "all"),
                  ("overrides (-p)", " ".join(doc.get("overrides") or []) or "–")]
    return _render(
        "sweep.html.j2", title=title, profile=profile, doc=doc, counts=counts, keys=keys,
        settings=_setting_rows(settings, keys), intr=doc.get("interrupted") or {},
        columns=[{"label": c.get("label") or c["key"]} for c in comp.get("columns") or []],
        rows=_comparison_rows(comp), reference=_reference(doc, comp),
        figure=doc.get("figure") or {}, sweep_rows=sweep_rows, paired=_paired_rows(doc))


def write_sweep_index(folder: os.PathLike, doc: Mapping[str, Any]) -> Path:
    """Write a sweep's ``sweep.json`` and ``index.html`` into ``folder``."""
    folder = Path(folder)
    _results.dump_json(doc, folder / "sweep.json")
    path = folder / "index.html"
    _results.write_text_atomic(path, render_sweep_index(doc))
    return path
