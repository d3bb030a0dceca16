"""The report folder's front page, its run manifest, and notebook-to-HTML export.

``reports/<profile>/`` after ``python -m unirepclip run``::

    index.html           this module's page: status, duration, headline numbers and figures of each
                         notebook, links to the reports, and the run manifest
    manifest.json        the run manifest (see :func:`build_manifest`)
    results.json         every notebook's results merged (see :mod:`unirepclip.workbook.results`)
    NN_name.ipynb/.html  each executed notebook and its HTML rendering (nbconvert)
    figures/             PNG + PDF + SVG of each saved figure (:func:`unirepclip.viz.style.save`)
    results/NN_name.json each notebook's own results file

The index page is one self-contained HTML file: inline CSS, no scripts, no fonts or anything else
fetched from the network, so it opens the same from a laptop, a cluster's file browser or an
archive. Every piece of text on it that comes from data (notebook names, parameters, paths, error
messages, result labels and values, class names) goes through :func:`html.escape`, and links through
:func:`urllib.parse.quote`. The notebook reports are rendered by nbconvert's ``lab`` template with
``sanitize_html`` on (HTML in outputs and Markdown is cleaned, scripts dropped), so a class name such
as ``<img onerror=...>`` shown by a notebook is text, not code; nbconvert's page does reference
MathJax on a CDN, which only typesets formulas when the network is there (the page works without).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence
from urllib.parse import quote

from unirepclip.workbook import results as _results

__all__ = [
    "PACKAGES", "package_versions", "git_state", "device_info", "build_manifest", "clean_html",
    "export_html",
    "render_index", "write_index", "format_value", "render_sweep_index",
]

#: Distributions whose versions the manifest records: shown name -> distribution name.
PACKAGES: Dict[str, str] = {
    "unirepclip": "unirepclip",
    "torch": "torch",
    "torchvision": "torchvision",
    "open_clip": "open_clip_torch",
    "timm": "timm",
    "captum": "captum",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "papermill": "papermill",
    "nbconvert": "nbconvert",
}


def now() -> str:
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def package_versions() -> Dict[str, Optional[str]]:
    """Python's and each :data:`PACKAGES` distribution's version (None where not installed).
    Read from the installed metadata, so nothing heavy is imported."""
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for shown, dist in PACKAGES.items():
        try:
            out[shown] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[shown] = None
    return out


def git_state(path: os.PathLike) -> Dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git work tree holding ``path``.
    Dirty means tracked changes or untracked files that git does not ignore (either could change
    what the notebooks compute)."""
    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> List[str]:
    # nvidia-smi rather than torch.cuda: the runner must not hold a CUDA context (GPU memory) while
    # the notebooks' kernels use the GPU.
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        r = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in r.stdout.splitlines() if line.strip()] if r.returncode == 0 else []


def device_info(requested: Iterable[Any] = ()) -> Dict[str, Any]:
    """The machine: requested device parameter(s), CPU model and count, GPUs, platform."""
    req = sorted({str(d) for d in requested if d is not None})
    return {
        "requested": req[0] if len(req) == 1 else (req or None),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": _gpus(),
        "platform": platform.platform(),
    }


def build_manifest(*, profile: Mapping[str, Any], overrides: Mapping[str, Any],
                   parameters: Mapping[str, Mapping[str, Any]],
                   injected: Mapping[str, Mapping[str, Any]], runs: Sequence[Mapping[str, Any]],
                   merged_results: Mapping[str, Any], repo: os.PathLike, started: str,
                   finished: Optional[str], command: Sequence[str], status: Optional[str] = None,
                   interrupted: Optional[Mapping[str, Any]] = None,
                   code: Optional[Mapping[str, Any]] = None,
                   setting: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The run manifest: what ran, with what, where and when.

    Keys: ``profile`` (name, file), ``command``, ``started``/``finished`` (ISO 8601) and
    ``duration_s``, ``parameters`` (per notebook, every parameter's value: the notebook's default
    unless the run set it), ``injected`` (what this run passed to each notebook it ran),
    ``overrides`` (from ``-p``),
    ``seed`` (the ``seed`` parameter: one value, or per notebook where they differ), ``git``
    (commit, dirty), ``versions`` (:func:`package_versions`), ``device`` (:func:`device_info`),
    ``checkpoint`` (this run's: ``path`` and ``sha256`` from its notebooks' records, else the
    ``checkpoint`` parameter and the results' ``checkpoint.sha256``; ``model`` from
    ``model_name``), ``checkpoints`` (every distinct checkpoint in the folder with the notebooks
    that used it), ``status`` (``running``, ``complete``, ``failed``, ``interrupted``),
    ``interrupted`` (signal and time, or why) and ``notebooks`` (name, status, duration, error
    and each one's provenance: parameters, checkpoint, model name, seed, notebook sha256, code);
    ``setting`` (slug and values) when the folder is one setting of a sweep.
    """
    seeds = {nb: p["seed"] for nb, p in parameters.items() if "seed" in p}
    seed: Any = None
    if seeds:
        distinct = {json.dumps(v) for v in seeds.values()}
        seed = next(iter(seeds.values())) if len(distinct) == 1 else dict(seeds)

    # This run's own notebooks speak for it; the others were carried over from earlier runs.
    own = [r for r in runs if not r.get("earlier")] or list(runs)
    own_params = [parameters[r["name"]] for r in own if r.get("name") in parameters] or list(
        parameters.values())

    def first(*names: str) -> Any:
        for p in own_params:
            for name in names:
                if p.get(name) is not None:
                    return p[name]
        return None

    ck_path, sha = first("checkpoint"), None
    for r in own:
        ck = r.get("checkpoint") or {}
        if ck.get("path") is not None or ck.get("sha256") is not None:
            ck_path, sha = ck.get("path"), ck.get("sha256")
            break
    if sha is None:
        try:
            sha = _results.get_path(merged_results, "checkpoint.sha256")
        except KeyError:
            sha = None
    checkpoints: List[Dict[str, Any]] = []
    for r in runs:
        ck = r.get("checkpoint") or {}
        p = parameters.get(r.get("name"), {})
        entry = {"path": ck.get("path", p.get("checkpoint")), "sha256": ck.get("sha256"),
                 "model": r.get("model_name") or p.get("model_name") or p.get("model")}
        if entry["path"] is None and entry["sha256"] is None:
            continue
        for c in checkpoints:
            if all(c[k] == entry[k] for k in entry):
                c["notebooks"].append(r.get("name"))
                break
        else:
            checkpoints.append({**entry, "notebooks": [r.get("name")]})
    try:
        t0 = _dt.datetime.fromisoformat(started)
        t1 = _dt.datetime.fromisoformat(finished or "")
        duration = round((t1 - t0).total_seconds(), 1)
    except (ValueError, TypeError):
        duration = None
    return {
        "format": "unirepclip.manifest/1",
        "status": status,
        "interrupted": dict(interrupted) if interrupted else None,
        "profile": {"name": profile.get("name"), "file": str(profile.get("path") or "")},
        "command": list(command),
        "started": started,
        "finished": finished,
        "duration_s": duration,
        "seed": seed,
        "git": {k: code[k] for k in ("commit", "dirty")} if code else git_state(repo),
        "source_sha256": (code or {}).get("source_sha256"),
        "versions": package_versions(),
        "device": device_info(p.get("device") for p in parameters.values()),
        "checkpoint": {"sha256": sha, "path": ck_path, "model": first("model_name", "model")},
        "checkpoints": checkpoints,
        "overrides": dict(overrides),
        "parameters": {nb: dict(p) for nb, p in parameters.items()},
        "injected": {nb: dict(p) for nb, p in injected.items()},
        "notebooks": [dict(r) for r in runs],
        **({"setting": dict(setting)} if setting else {}),
    }


_EXPORTERS: Dict[bool, Any] = {}

# nbconvert's lab page, less require.js (only widgets need it) and with MathJax only for notebooks
# that have formulas: a page without them then loads nothing from the network.
_REPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
{%- if resources.unirepclip_math -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
"""
_MATH_RE = re.compile(r"\$[^$\n]+\$|\$\$|\\\(|\\\[|\\begin\{")


def _has_math(nb: Any) -> bool:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _MATH_RE.search(cell.source):
            return True
        for out in cell.get("outputs", []):
            if "text/latex" in out.get("data", {}):
                return True
    return False


_ALLOWED_TAGS = frozenset("""
    a abbr b blockquote br caption code col colgroup dd del details div dl dt em figcaption figure
    h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span strong sub summary sup
    table tbody td tfoot th thead tr u ul var""".split())


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title", "style"):
        return True
    if tag == "a" and name == "href":
        return not value.strip().lower().startswith("data:")  # data: only for images
    if tag == "img":
        if name == "src":
            v = value.strip().lower()
            return v.startswith("data:image/") or not v.startswith("data:")
        return name in ("alt", "width", "height")
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan", "align")
    return tag == "ol" and name == "start"


def clean_html(fragment: Any) -> str:
    """Sanitize an HTML fragment from a notebook (Markdown or a ``text/html`` output): the tags
    and attributes of prose, tables and images stay; scripts, event handlers and anything else
    are escaped into visible text. Replaces nbconvert's own ``clean_html``, whose allow-list
    (bleach's defaults) escapes paragraphs, headings, images and table headers too."""
    import bleach
    from bleach.css_sanitizer import CSSSanitizer

    text = fragment.decode() if isinstance(fragment, bytes) else str(fragment)
    return bleach.clean(text, tags=_ALLOWED_TAGS, attributes=_allowed_attribute,
                        protocols=["http", "https", "mailto", "data"],
                        css_sanitizer=CSSSanitizer())


def export_html(ipynb: os.PathLike, html_path: os.PathLike, hide_code: bool = False) -> Path:
    """Render an executed notebook to a standalone HTML page with nbconvert (``lab`` template,
    HTML sanitized, no scripts fetched unless formulas need MathJax). ``hide_code`` drops code
    cells' input for a paper-style report (outputs and prose stay).

    Output images and Markdown cell attachments are inline (data URIs). nbconvert's
    ``embed_images`` stays off: it also embeds Markdown images given by file path, but it breaks
    inline HTML in Markdown (``<span style=...>text</span>`` loses its text; papermill's error
    banner is such a span), and a path relative to ``notebooks/`` would not resolve from the report
    folder anyway. Images in prose belong in cell attachments."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = _EXPORTERS.get(hide_code)
    if exporter is None:  # template loading is the slow part: one exporter per setting
        exporter = HTMLExporter(
            template_name="lab", template_file="unirepclip_report.html.j2",
            extra_loaders=[DictLoader({"unirepclip_report.html.j2": _REPORT_TEMPLATE})],
            sanitize_html=True, filters={"clean_html": clean_html}, embed_images=False,
            exclude_input=hide_code,
            exclude_input_prompt=hide_code, exclude_output_prompt=hide_code)
        _EXPORTERS[hide_code] = exporter
    nb = nbformat.read(str(ipynb), as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"unirepclip_math": _has_math(nb)})
    html_path = Path(html_path)
    html_path.write_text(body, encoding="utf-8")
    return html_path


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


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _href(rel: str) -> str:
    """A relative link to a file in the report folder, percent-encoded then HTML-escaped."""
    return _esc(quote(rel, safe="/#"))


def _fmt_duration(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:04.1f} s"


_CSS = """
:root { --fg:#1b1b1b; --muted:#5c5c5c; --line:#d9d9d9; --bg:#ffffff; --soft:#f5f6f7;
        --ok:#00735a; --fail:#b34700; --link:#005a8c; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 1.5rem 1.25rem 3rem; color: var(--fg);
       background: var(--bg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line);
     padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .25rem; }
a { color: var(--link); }
.summary { color: var(--muted); margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
table.compact { width: auto; min-width: 24rem; }
th, td { text-align: left; vertical-align: top; padding: .4rem .6rem;
         border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: .85em; overflow-wrap: anywhere; }
.status { display: inline-block; padding: .05rem .5rem; border-radius: .75rem; font-weight: 600;
          font-size: .85em; border: 1px solid currentColor; white-space: nowrap; }
.status.ok { color: var(--ok); }
.status.failed { color: var(--fail); }
.status.not-run { color: var(--muted); }
.status.interrupted { color: var(--fail); border-style: dashed; }
.banner { border: 1px solid var(--fail); color: var(--fail); padding: .5rem .75rem;
          border-radius: .25rem; margin: .5rem 0 1rem; }
.error { color: var(--fail); font-size: .9em; margin-top: .25rem; white-space: pre-wrap; }
.headline { margin: 0; padding: 0; list-style: none; }
.headline li { margin: 0; }
.headline .v { font-weight: 600; font-variant-numeric: tabular-nums; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; max-width: 22rem; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); background: white; }
figcaption { font-size: .85em; color: var(--muted); }
.note { color: var(--muted); font-size: .9em; }
details { margin: .5rem 0; }
summary { cursor: pointer; }
"""


def _headline_items(run: Mapping[str, Any], doc: Optional[Mapping[str, Any]]) -> str:
    if not doc or not doc.get("headline"):
        return '<span class="note">–</span>'
    items = []
    for h in doc["headline"]:
        try:
            value = format_value(_results.get_path(doc["results"], h["key"]), h.get("fmt"))
        except KeyError:
            value = "missing"
        items.append(f'<li><span class="k">{_esc(h.get("label") or h["key"])}</span>: '
                     f'<span class="v">{_esc(value)}</span></li>')
    return '<ul class="headline">' + "".join(items) + "</ul>"


def _params_table(params: Mapping[str, Any]) -> str:
    if not params:
        return '<p class="note">no parameters</p>'
    rows = "".join(
        f"<tr><td><code>{_esc(k)}</code></td><td><code>{_esc(json.dumps(v, ensure_ascii=False))}"
        f"</code></td></tr>" for k, v in params.items())
    return f'<table class="compact"><tr><th>parameter</th><th>value</th></tr>{rows}</table>'


def _banner(m: Mapping[str, Any]) -> str:
    """A line above the table when the run did not finish (or is still going)."""
    status, intr = m.get("status"), m.get("interrupted") or {}
    if status == "interrupted":
        how = f" by {intr['signal']}" if intr.get("signal") else ""
        at = f" at {intr['at']}" if intr.get("at") else ""
        why = f" ({intr['reason']})" if intr.get("reason") else ""
        return (f'<p class="banner">This run was interrupted{_esc(how)}{_esc(at)}{_esc(why)}: '
                "the notebooks marked interrupted or not run have no new outputs; "
                "<code>run --resume</code> completes it.</p>")
    if status == "running":
        return ('<p class="banner">This run is still going: notebooks marked pending have not '
                "run yet.</p>")
    return ""


def render_index(manifest: Mapping[str, Any], docs: Mapping[str, Optional[Mapping[str, Any]]],
                 title: str = "unirepclip reports") -> str:
    """The index page as an HTML string.

    ``manifest`` is :func:`build_manifest`'s dict; each of its ``notebooks`` entries has ``name``,
    ``status`` (``ok``/``failed``/``not run``), ``duration_s``, ``error``, ``html`` and ``ipynb``
    (file names relative to the page, or None); ``docs`` maps a notebook name to its results file
    (:func:`unirepclip.workbook.results.load`) or None.
    """
    runs = manifest.get("notebooks", [])
    n_ok = sum(r.get("status") == "ok" for r in runs)
    n_failed = sum(r.get("status") == "failed" for r in runs)
    others = {}
    for r in runs:
        if r.get("status") not in ("ok", "failed"):
            others[r.get("status") or "not run"] = others.get(r.get("status") or "not run", 0) + 1
    profile = manifest.get("profile", {}).get("name")
    run_status = manifest.get("status")
    run_ck = manifest.get("checkpoint") or {}
    own = [r for r in runs if not r.get("earlier")] or list(runs)
    run_seed = next((r.get("seed") for r in own if r.get("seed") is not None), None)
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)} · {_esc(profile)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{_esc(title)}</h1>",
           f'<p class="summary">profile <strong>{_esc(profile)}</strong> · {len(runs)} notebooks: '
           f'{n_ok} ok, {n_failed} failed'
           + "".join(f", {n} {_esc(k)}" for k, n in others.items())
           + (f' · run {_esc(run_status)}' if run_status else "")
           + f' · started {_esc(manifest.get("started"))} · '
           f'{_esc(_fmt_duration(manifest.get("duration_s")))} · '
           f'<a href="results.json">results.json</a> · <a href="manifest.json">manifest.json</a></p>',
           _banner(manifest),
           "<h2>Notebooks</h2>",
           "<table><tr><th>notebook</th><th>status</th><th>duration</th>"
           "<th>headline results</th><th>files</th></tr>"]
    for r in runs:
        status = r.get("status") or "not run"
        css = {"ok": "ok", "failed": "failed", "interrupted": "interrupted"}.get(status, "not-run")
        name = r.get("name", "")
        title_cell = (f'<a href="{_href(r["html"])}">{_esc(name)}</a>' if r.get("html")
                      else _esc(name))
        if r.get("error"):
            anchor = f'{r["html"]}#papermill-error-cell' if r.get("html") else None
            err = _esc(r["error"])
            title_cell += (f'<div class="error"><a href="{_href(anchor)}">{err}</a></div>'
                           if anchor else f'<div class="error">{err}</div>')
        if r.get("earlier"):
            title_cell += f'<div class="note">from an earlier run ({_esc(r.get("finished"))})</div>'
        if r.get("kept"):
            title_cell += f'<div class="note">{_esc(r["kept"])}</div>'
        ck = r.get("checkpoint") or {}
        if ck and (ck.get("path"), ck.get("sha256")) != (run_ck.get("path"), run_ck.get("sha256")):
            title_cell += (f'<div class="note">checkpoint <code>{_esc(ck.get("path"))}</code> '
                           f'(sha256 <code>{_esc(ck.get("sha256") or "not recorded")}</code>)'
                           "</div>")
        if r.get("seed") is not None and r.get("seed") != run_seed:
            title_cell += f'<div class="note">seed {_esc(json.dumps(r.get("seed")))}</div>'
        files = " · ".join(f'<a href="{_href(r[k])}">{k}</a>' for k in ("html", "ipynb") if r.get(k))
        out.append(
            f"<tr><td>{title_cell}</td><td><span class=\"status {css}\">{_esc(status)}</span></td>"
            f'<td class="num">{_esc(_fmt_duration(r.get("duration_s")))}</td>'
            f"<td>{_headline_items(r, docs.get(name))}</td><td>{files or '–'}</td></tr>")
    out.append("</table>")

    figs = []
    for r in runs:
        doc = docs.get(r.get("name", "")) or {}
        for f in doc.get("figures", []):
            if not f.get("headline"):
                continue
            files = f.get("files", {})
            src = files.get("png") or files.get("svg")
            if not src:
                continue
            links = " · ".join(f'<a href="{_href(v)}">{_esc(k)}</a>' for k, v in files.items())
            cap = _esc(f.get("caption") or f.get("name"))
            figs.append(f'<figure><a href="{_href(r.get("html") or src)}"><img src="{_href(src)}" '
                        f'alt="{_esc(f.get("name"))}"></a>'
                        f"<figcaption>{cap} <span class=\"note\">({_esc(r.get('name'))}; "
                        f"{links})</span></figcaption></figure>")
    if figs:
        out.append("<h2>Headline figures</h2><div class=\"gallery\">" + "".join(figs) + "</div>")

    m = manifest
    git = m.get("git", {})
    commit = git.get("commit") or "not a git checkout"
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    dev = m.get("device", {})
    ck = m.get("checkpoint", {})
    rows = [
        ("profile", f'{m.get("profile", {}).get("name")} ({m.get("profile", {}).get("file")})'),
        ("command", " ".join(m.get("command", []))),
        ("started", m.get("started")), ("finished", m.get("finished")),
        ("seed", json.dumps(m.get("seed"))),
        ("git commit", f"{commit}{dirty}"),
        ("device", f'{dev.get("requested")} · CPU: {dev.get("cpu")} ×{dev.get("cpu_count")} · '
                   f'GPUs: {", ".join(dev.get("gpus") or []) or "none"} · {dev.get("platform")}'),
        ("checkpoint", f'{ck.get("path") or "–"} · model {ck.get("model") or "–"}'),
        ("checkpoint sha256", ck.get("sha256") or "not recorded"),
        *[("other checkpoint", f'{c.get("path") or "–"} · sha256 {c.get("sha256") or "not recorded"}'
                               f' · model {c.get("model") or "–"} · {", ".join(c.get("notebooks") or [])}')
          for c in m.get("checkpoints") or []
          if (c.get("path"), c.get("sha256")) != (ck.get("path"), ck.get("sha256"))],
        ("status", m.get("status") or "–"),
        ("source sha256", m.get("source_sha256") or "–"),
        ("overrides (-p)", json.dumps(m.get("overrides", {}), ensure_ascii=False)),
    ]
    out.append("<h2>Run manifest</h2><table>")
    out.extend(f'<tr><th>{_esc(k)}</th><td class="mono">{_esc(v)}</td></tr>' for k, v in rows)
    out.append('</table><h3>Package versions</h3><table class="compact">'
               "<tr><th>package</th><th>version</th></tr>")
    out.extend(f"<tr><td>{_esc(k)}</td><td class=\"mono\">{_esc(v or 'not installed')}</td></tr>"
               for k, v in m.get("versions", {}).items())
    out.append("</table><h3>Parameters</h3>")
    for nb, params in m.get("parameters", {}).items():
        out.append(f"<details><summary>{_esc(nb)}</summary>{_params_table(params)}</details>")
    out.append('<p class="note">The same manifest as JSON: <a href="manifest.json">manifest.json</a>.'
               "</p></body></html>\n")
    return "\n".join(out)


def write_index(folder: os.PathLike, manifest: Mapping[str, Any],
                docs: Mapping[str, Optional[Mapping[str, Any]]]) -> Path:
    """Write ``manifest.json`` and ``index.html`` into ``folder``; return the index path."""
    folder = Path(folder)
    _results.dump_json(manifest, folder / "manifest.json")
    path = folder / "index.html"
    path.write_text(render_index(manifest, docs), encoding="utf-8")
    return path


def _fmt_number(v: Any, digits: int = 1, signed: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, f"{'+' if signed else ''}.{digits}f")
    return str(v)


def render_sweep_index(doc: Mapping[str, Any], title: str = "unirepclip sweep") -> str:
    """The index page of a sweep's folder, from its ``sweep.json`` document
    (:mod:`unirepclip.workbook.sweep`): the settings (slug, values, status, link to each one's
    own index), the comparison table of their figures, published vs measured where a reference
    is given, and the comparison figure. Self-contained, escaped like :func:`render_index`."""
    settings = doc.get("settings", [])
    comp = doc.get("comparison") or {"columns": [], "rows": [], "reference": None}
    profile = (doc.get("profile") or {}).get("name")
    counts: Dict[str, int] = {}
    for st in settings:
        counts[st.get("status") or "not run"] = counts.get(st.get("status") or "not run", 0) + 1
    keys = []
    for st in settings:
        for k in st.get("values", {}):
            if k not in keys:
                keys.append(k)
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)} · {_esc(profile)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{_esc(title)}</h1>",
           f'<p class="summary">profile <strong>{_esc(profile)}</strong> · {len(settings)} settings: '
           + ", ".join(f"{n} {_esc(k)}" for k, n in counts.items())
           + f' · sweep {_esc(doc.get("status"))} · started {_esc(doc.get("started"))}'
           + (f' · finished {_esc(doc.get("finished"))}' if doc.get("finished") else "")
           + f' · {_esc(doc.get("jobs"))} at a time · <a href="sweep.json">sweep.json</a></p>']
    intr = doc.get("interrupted") or {}
    if doc.get("status") == "interrupted":
        out.append(f'<p class="banner">This sweep was interrupted by {_esc(intr.get("signal"))} at '
                   f'{_esc(intr.get("at"))}: the settings marked interrupted or not run have no '
                   "new outputs; <code>run --resume</code> with the same sweep completes it.</p>")
    out.append("<h2>Settings</h2><table><tr><th>setting (folder)</th>"
               + "".join(f"<th><code>{_esc(k)}</code></th>" for k in keys)
               + "<th>status</th><th>duration</th></tr>")
    for st in settings:
        status = st.get("status") or "not run"
        css = {"ok": "ok", "failed": "failed", "interrupted": "interrupted"}.get(status, "not-run")
        slug = st.get("slug", "")
        cell = (f'<a href="{_href(st["index"])}">{_esc(slug)}</a>' if st.get("index")
                else _esc(slug))
        if st.get("kept"):
            cell += f'<div class="note">kept by --resume: {_esc(", ".join(st["kept"]))}</div>'
        for err in st.get("errors") or []:
            cell += f'<div class="error">{_esc(err)}</div>'
        vals = "".join(
            f"<td><code>{_esc(json.dumps(st.get('values', {}).get(k), ensure_ascii=False))}"
            f"</code></td>" if k in st.get("values", {}) else "<td>–</td>" for k in keys)
        out.append(f"<tr><td>{cell}</td>{vals}<td><span class=\"status {css}\">{_esc(status)}"
                   f'</span></td><td class="num">{_esc(_fmt_duration(st.get("duration_s")))}'
                   "</td></tr>")
    out.append("</table>")
    cols = comp.get("columns") or []
    out.append("<h2>Comparison</h2>")
    if cols:
        out.append("<table class=\"compact comparison\"><tr><th>setting</th>"
                   + "".join(f"<th>{_esc(c.get('label') or c['key'])}</th>" for c in cols)
                   + "</tr>")
        for row in comp.get("rows", []):
            cells = []
            for c in cols:
                kid = c["key"] if isinstance(c["key"], str) else json.dumps(c["key"])
                v = row["cells"].get(kid)
                cells.append(f'<td class="num" data-key="{_esc(kid)}">'
                             f'{_esc("–" if v is None else format_value(v, c.get("fmt")))}</td>')
            out.append(f"<tr><td>{_esc(row['slug'])}</td>{''.join(cells)}</tr>")
        out.append("</table>")
    else:
        out.append('<p class="note">No figures yet: no setting has recorded a headline.</p>')
    ref = comp.get("reference")
    if ref is not None:
        meta = doc.get("reference") or {}
        unit = " (%)" if meta.get("unit") == "%" else ""
        out.append(f"<h3>{_esc(meta.get('label') or 'published')} vs measured{_esc(unit)}</h3>"
                   '<table class="compact reference"><tr><th>setting</th><th>metric</th>'
                   "<th>published</th><th>measured</th><th>difference</th><th>source</th></tr>")
        digits = 1 if meta.get("unit") == "%" else 3
        for r in ref:
            pub = "not published" if r.get("published") is None else _fmt_number(r["published"], digits)
            out.append(f"<tr><td>{_esc(r['slug'])}</td><td>{_esc(r.get('metric') or r['key'])}</td>"
                       f'<td class="num">{_esc(pub)}</td>'
                       f'<td class="num">{_esc(_fmt_number(r.get("measured"), digits))}</td>'
                       f'<td class="num">{_esc(_fmt_number(r.get("difference"), digits, True))}</td>'
                       f'<td class="note">{_esc(r.get("source"))}</td></tr>')
        out.append("</table>")
    fig = doc.get("figure") or {}
    if fig.get("png"):
        links = " · ".join(f'<a href="{_href(v)}">{_esc(k)}</a>' for k, v in fig.items())
        out.append(f'<figure style="max-width:100%"><img src="{_href(fig["png"])}" '
                   f'alt="sweep comparison"><figcaption>each setting\'s figures ({links})'
                   "</figcaption></figure>")
    elif doc.get("figure_error"):
        out.append(f'<p class="note">The comparison figure failed: {_esc(doc["figure_error"])}</p>')
    out.append("<h2>Sweep</h2><table>")
    rows = [("command", " ".join(map(str, doc.get("command") or []))),
            ("profile", f'{profile} ({(doc.get("profile") or {}).get("file")})'),
            ("axes", json.dumps(doc.get("axes") or {}, ensure_ascii=False)),
            ("notebooks", ", ".join(doc.get("only") or []) or "all"),
            ("overrides (-p)", " ".join(doc.get("overrides") or []) or "–")]
    out.extend(f'<tr><th>{_esc(k)}</th><td class="mono">{_esc(v)}</td></tr>' for k, v in rows)
    out.append('</table><p class="note">Each setting\'s folder has its own index, manifest '
               "(provenance) and results.json.</p></body></html>\n")
    return "\n".join(out)
