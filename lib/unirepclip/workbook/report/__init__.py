"""The report folder's pages and records: the run manifest (:mod:`.manifest`), executed notebooks
as HTML (:mod:`.notebook_html`), and the index pages from jinja2 templates (:mod:`.pages`).

``reports/<profile>/`` after ``python -m unirepclip run``::

    index.html           the front page: status, duration, headline numbers and figures of each
                         notebook, links to the reports, and the run manifest
    manifest.json        the run manifest (:func:`.manifest.build_manifest`)
    results.json         every notebook's results merged (:mod:`unirepclip.workbook.results`)
    NN_name.ipynb/.html  each executed notebook and its HTML rendering (nbconvert)
    figures/             PNG + PDF + SVG of each saved figure
    results/NN_name.json each notebook's own results file
"""
from unirepclip.workbook.report.manifest import (  # noqa: F401
    PACKAGES, RunFacts, build_manifest, device_info, git_state, gpus, now, package_versions)
from unirepclip.workbook.report.notebook_html import clean_html, export_html  # noqa: F401
from unirepclip.workbook.report.pages import (  # noqa: F401
    format_value, render_index, render_sweep_index, write_index, write_sweep_index)
