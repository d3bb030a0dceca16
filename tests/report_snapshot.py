"""What a report folder says, without what changes from run to run (times, durations, paths,
versions, the machine, the code's digests): its figures, its manifest and the index page's
notebook table. ``tests/data/baseline_ci/`` holds this snapshot of the ``ci`` profile's run: first
written from the code before the workbook layer was rebuilt (issue 22, commit 03b3a6e), rewritten
only by changes that alter what a report says on purpose, each saying so in its commit (issue 27:
the demo's sha256 recorded, notebook 06's headline; the figures unchanged). ``test_workbook_ci``
compares today's run with it.

``python tests/report_snapshot.py REPORT_FOLDER OUT_FOLDER`` writes a snapshot."""
from __future__ import annotations

import html
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List

#: Result keys that are timings (they differ on every run).
TIMING = re.compile(r"images_per_s|seconds|_ms\b|time")
_RUN_FIELDS = ("name", "status", "error", "html", "ipynb", "earlier", "kept", "rerun_because",
               "parameters", "model_name", "seed")


def flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}."))
    return out


def figures(folder: Path) -> Dict[str, Any]:
    """results.json, flattened, timings aside."""
    data = flat(json.loads((folder / "results.json").read_text()))
    return {k: v for k, v in data.items() if not TIMING.search(k)}


def _unpath(value: Any, folder: Path) -> Any:
    text = json.dumps(value).replace(str(folder), "<report>")
    return json.loads(text)


def manifest(folder: Path) -> Dict[str, Any]:
    """The manifest's record of what ran with what."""
    m = json.loads((folder / "manifest.json").read_text())
    ck = m["checkpoint"]
    return _unpath({
        "format": m["format"], "status": m["status"], "profile": m["profile"]["name"],
        "seed": m["seed"], "overrides": m["overrides"], "parameters": m["parameters"],
        "injected": m["injected"],
        "checkpoint": {"path": ck["path"], "model": ck["model"], "sha256": ck["sha256"]},
        "checkpoints": m["checkpoints"],
        "notebooks": [{k: r.get(k) for k in _RUN_FIELDS} | {"checkpoint": r.get("checkpoint")}
                      for r in m["notebooks"]],
    }, folder)


class _Table(HTMLParser):
    """The cells' text of the first table on a page (the notebooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: List[List[str]] = []
        self.depth, self.done, self.cell = 0, False, None

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif tag == "tr" and self.depth:
            self.rows.append([])
        elif tag in ("td", "th") and self.depth:
            self.cell = []

    def handle_endtag(self, tag):
        if self.done:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(" ".join(self.cell).split()))
            self.cell = None
        elif tag == "table":
            self.depth -= 1
            self.done = self.depth == 0

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(html.unescape(data))


def index_table(folder: Path) -> List[List[str]]:
    """The index page's notebook table: notebook, status, headline results, files (the
    duration column aside)."""
    parser = _Table()
    parser.feed((folder / "index.html").read_text())
    return [[r[0], r[1], r[3], r[4]] for r in parser.rows]


def snapshot(folder: Path) -> Dict[str, Any]:
    return {"figures": figures(folder), "manifest": manifest(folder),
            "index_table": index_table(folder)}


if __name__ == "__main__":
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    for name, part in snapshot(src).items():
        (dst / f"{name}.json").write_text(json.dumps(part, indent=1, sort_keys=True) + "\n")
