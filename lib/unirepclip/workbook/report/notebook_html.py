"""Executed notebooks to HTML: nbconvert's ``lab`` template with ``sanitize_html`` on (HTML in
outputs and Markdown is cleaned, scripts dropped), so a class name such as ``<img onerror=...>``
shown by a notebook is text, not code; nbconvert's page references MathJax only for notebooks that
have formulas, so a page without them loads nothing from the network."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict

from unirepclip.workbook.results import write_text_atomic

__all__ = ["clean_html", "export_html", "has_math"]


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


def has_math(nb: Any) -> bool:
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
    body, _ = exporter.from_notebook_node(nb, resources={"unirepclip_math": has_math(nb)})
    html_path = Path(html_path)
    write_text_atomic(html_path, body)
    return html_path
