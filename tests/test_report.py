"""unirepclip.report: the index page (escaping, content), the manifest, HTML export and cleaning."""
import html.parser
import json
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from unirepclip.workbook import report
from unirepclip.workbook.report import notebook_html

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
# The tags render_index writes itself; anything else in the page came from data unescaped.
OWN_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "strong", "a",
            "table", "tr", "th", "td", "span", "div", "ul", "li", "figure", "img", "figcaption",
            "details", "summary", "code"}


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page):
    p = _Tags()
    p.feed(page)
    return p


def _manifest(**kw):
    m = {
        "profile": {"name": "demo" + EVIL, "file": "/p/" + EVIL},
        "command": ["python", "-m", "unirepclip", "run", "-p", "label=" + EVIL],
        "started": "2024-01-01T00:00:00+00:00", "finished": "2024-01-01T00:01:05+00:00",
        "duration_s": 65.0, "seed": 0, "git": {"commit": "abc123", "dirty": True},
        "versions": {"torch": "2.0", "captum": None},
        "device": {"requested": "cpu", "cpu": "cpu" + EVIL, "cpu_count": 2, "gpus": [],
                   "platform": "x"},
        "checkpoint": {"sha256": "f" * 64, "path": EVIL, "model": "m"},
        "overrides": {"label": EVIL},
        "parameters": {"01_" + EVIL: {"label": EVIL}},
        "notebooks": [
            {"name": "01_ok", "status": "ok", "duration_s": 3.25, "error": None,
             "html": "01_ok.html", "ipynb": "01_ok.ipynb"},
            {"name": "02_" + EVIL, "status": "failed", "duration_s": 1.0, "error": EVIL,
             "html": "02_x.html", "ipynb": None},
        ],
    }
    m.update(kw)
    return m


def _docs():
    return {"01_ok": {"results": {"zeroshot": {"tasks": {EVIL: {"acc1": 0.5}}}, "name": EVIL},
                      "headline": [{"key": f"zeroshot.tasks.{EVIL}.acc1", "label": EVIL,
                                    "fmt": ".1%"},
                                   {"key": "name", "label": "class", "fmt": None}],
                      "figures": [{"name": "fig", "files": {"png": "figures/fig.png"},
                                   "headline": True, "caption": EVIL},
                                  {"name": "not_shown", "files": {"png": "figures/n.png"},
                                   "headline": False, "caption": None}]}}


def test_index_escapes_every_piece_of_data():
    page = report.render_index(_manifest(), _docs())
    parsed = _parse(page)
    assert set(parsed.tags) <= OWN_TAGS
    assert "script" not in parsed.tags
    assert not [a for a, _ in parsed.attrs if a.startswith("on")]
    # Exactly one <img>: the headline figure (the malicious text made none).
    assert parsed.tags.count("img") == 1
    text = "".join(parsed.text)
    assert EVIL in text  # shown to the reader as text
    assert "&lt;script&gt;" in page


def test_index_content_status_headline_figures_manifest():
    page = report.render_index(_manifest(), _docs())
    text = " ".join("".join(_parse(page).text).split())
    assert "2 notebooks: 1 ok, 1 failed" in text
    assert "50.0%" in text  # the headline value with its format
    assert "1 min 05.0 s" in text and "3.2 s" in text
    assert "f" * 64 in text and "abc123 (uncommitted changes)" in text
    assert 'src="figures/fig.png"' in page and "figures/n.png" not in page
    assert 'href="02_x.html#papermill-error-cell"' in page
    assert "captum" in text and "not installed" in text


def test_headline_values_show_their_recorded_interval():
    from unirepclip.workbook.report.pages import interval_of

    results = {"zeroshot": {"acc1": 0.5, "acc1_ci": [0.41, 0.59], "acc5": 0.9},
               "retrieval": {"text_to_image": {"r5": 0.8}, "text_to_image_ci": {"r5": [0.7, 0.87]}},
               "probe": {"a.b": {"acc1": 0.75, "acc1_ci": [0.6, 0.85]}}}
    assert interval_of(results, "zeroshot.acc1") == [0.41, 0.59]
    assert interval_of(results, "retrieval.text_to_image.r5") == [0.7, 0.87]
    assert interval_of(results, ["probe", "a.b", "acc1"]) == [0.6, 0.85]
    assert interval_of(results, "zeroshot.acc5") is None  # none recorded: none shown
    # the two other recorded forms: _low/_high siblings, an Interval recorded whole
    more = {"b": {"swap": {"text_acc": 0.54, "text_acc_low": 0.47, "text_acc_high": 0.61}},
            "s": {"bias": {"estimate": 0.5, "low": 0.33, "high": 0.67, "n": 28}},
            "t": {"x": 0.5, "x_low": 0.4}}
    assert interval_of(more, "b.swap.text_acc") == [0.47, 0.61]
    assert interval_of(more, "s.bias.estimate") == [0.33, 0.67]
    assert interval_of(more, "s.bias.n") is None and interval_of(more, "t.x") is None
    binding = {"c": {"swap": {"text_acc": 0.54, "low": 0.47, "high": 0.61, "n": 200}}}
    assert interval_of(binding, "c.swap.text_acc") == [0.47, 0.61]
    docs = {"01_ok": {"results": results, "figures": [],
                      "headline": [{"key": "zeroshot.acc1", "label": "top-1", "fmt": ".1%"},
                                   {"key": "zeroshot.acc5", "label": "top-5", "fmt": ".1%"},
                                   {"key": "retrieval.text_to_image.r5", "label": "r5",
                                    "fmt": ".1%"}]}}
    text = " ".join("".join(_parse(report.render_index(_manifest(), docs)).text).split())
    assert "top-1: 50.0% [41.0%, 59.0%]" in text and "r5: 80.0% [70.0%, 87.0%]" in text
    assert "top-5: 90.0%" in text and "top-5: 90.0% [" not in text  # none recorded, none shown
    assert "headline results (95% interval in brackets)" in text


def test_links_are_percent_encoded():
    m = _manifest(notebooks=[{"name": "03_a b", "status": "ok", "duration_s": 1.0,
                              "html": "03_a b\".html", "ipynb": None}])
    page = report.render_index(m, {})
    assert 'href="03_a%20b%22.html"' in page


def test_format_value():
    assert report.format_value(0.12345, ".1%") == "12.3%"
    assert report.format_value(0.123456789) == "0.1235"
    assert report.format_value("x", ".2f") == "x"  # a format that does not apply is ignored
    assert report.format_value({"a": 1}) == '{"a": 1}'


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_git_state_commit_and_dirty_flag(tmp_path):
    assert report.git_state(tmp_path) == {"commit": None, "dirty": None}
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert report.git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "a.txt").write_text("2")
    assert report.git_state(tmp_path) == {"commit": head, "dirty": True}


def test_build_manifest(tmp_path):
    params = {"01_a": {"seed": 3, "device": "cpu", "checkpoint": "demo"},
              "02_b": {"seed": 3, "device": "cpu"}}
    m = report.build_manifest(report.RunFacts(
        profile={"name": "demo", "path": "x.yaml"}, overrides={"seed": 3}, parameters=params,
        injected={"01_a": {"seed": 3}}, runs=[{"name": "01_a", "status": "ok"}],
        merged_results={"checkpoint": {"sha256": "ab" * 32}}, repo=tmp_path,
        started="2024-01-01T10:00:00+01:00", finished="2024-01-01T10:02:30+01:00",
        command=["python", "-m", "unirepclip", "run"]))
    assert m["seed"] == 3 and m["duration_s"] == 150.0
    assert m["checkpoint"] == {"sha256": "ab" * 32, "path": "demo", "model": None}
    assert m["device"]["requested"] == "cpu" and m["git"] == {"commit": None, "dirty": None}
    for pkg in ("torch", "torchvision", "open_clip", "timm", "captum", "sklearn", "numpy",
                "unirepclip", "python"):
        assert m["versions"][pkg], pkg
    json.dumps(m, allow_nan=False)
    params["02_b"]["seed"] = 4
    m = report.build_manifest(report.RunFacts(
        profile={"name": "demo"}, overrides={}, parameters=params, injected={}, runs=[],
        merged_results={}, repo=tmp_path, started="x", finished="y", command=[]))
    assert m["seed"] == {"01_a": 3, "02_b": 4}
    assert m["checkpoint"]["sha256"] is None and m["duration_s"] is None


def test_clean_html_keeps_prose_and_escapes_code():
    out = report.clean_html(
        '<h2 id="t">Title</h2><p>text <img src="data:image/png;base64,AAAA" alt="a"></p>'
        '<table><thead><tr><th colspan="2">h</th></tr></thead></table>'
        '<script>alert(1)</script><img src=x onerror="alert(1)">'
        '<a href="javascript:alert(1)">j</a><a href="https://example.org">ok</a>'
        '<a href="data:text/html,hi">d</a><span style="color: red">r</span>')
    parsed = _parse(out)
    assert set(parsed.tags) == {"h2", "p", "img", "table", "thead", "tr", "th", "a", "span"}
    assert "script" not in parsed.tags and "&lt;script&gt;" in out
    attrs = dict()
    for k, v in parsed.attrs:
        attrs.setdefault(k, []).append(v)
    assert "onerror" not in attrs
    assert attrs["href"] == ["https://example.org"]
    assert "data:image/png;base64,AAAA" in attrs["src"]
    assert attrs["colspan"] == ["2"] and attrs["style"] == ["color: red;"]


def _notebook(markdown="# Heading\n\nSome prose."):
    code = new_code_cell("print('hello')\nx = 1", execution_count=1)
    code.outputs = [
        new_output("stream", name="stdout", text="hello <b>world</b>\n"),
        new_output("display_data", data={"text/html": "<p>class <script>bad()</script></p>"}),
        new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
    ]
    return new_notebook(cells=[new_markdown_cell(markdown), code], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})


def test_export_html(tmp_path):
    nbformat.write(_notebook(), tmp_path / "a.ipynb")
    page = report.export_html(tmp_path / "a.ipynb", tmp_path / "a.html").read_text()
    parsed = _parse(page)
    assert "h1" in parsed.tags  # Markdown rendered, not escaped
    text = "".join(parsed.text)
    assert "print('hello')" in text  # the code, highlighted
    assert "hello <b>world</b>" in text  # stream text escaped by nbconvert
    assert "bad()" in text and "<script>bad()" not in page  # script in an output is text
    assert "data:image/png;base64,iVBORw0KGgo=" in page
    # No math, so no script fetched from anywhere.
    assert not [v for k, v in parsed.attrs if k == "src" and v and v.startswith("http")]

    hidden = report.export_html(tmp_path / "a.ipynb", tmp_path / "b.html", hide_code=True)
    hidden_text = "".join(_parse(hidden.read_text()).text)
    assert "print(" not in hidden_text and "hello <b>world</b>" in hidden_text

    nbformat.write(_notebook("The cost is $O(k^2)$."), tmp_path / "m.ipynb")
    page = report.export_html(tmp_path / "m.ipynb", tmp_path / "m.html").read_text()
    assert "mathjax" in page.lower()


def test_export_keeps_inline_html_and_attachments(tmp_path):
    cell = new_markdown_cell('See ![dot](attachment:dot.png) and <span style="color: red">the '
                             'banner <a href="#e">In [4]</a></span>')
    cell.attachments = {"dot.png": {"image/png": "iVBORw0KGgo="}}
    nbformat.write(new_notebook(cells=[cell]), tmp_path / "a.ipynb")
    page = report.export_html(tmp_path / "a.ipynb", tmp_path / "a.html").read_text()
    assert '<span style="color: red;">the banner <a href="#e">In [4]</a></span>' in page
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page


@pytest.mark.parametrize("src,expected", [("a $x$ b", True), ("$$y$$", True),
                                          (r"\begin{align}", True), ("plain text", False)])
def test_math_detection(src, expected):
    assert notebook_html.has_math(_notebook(src)) is expected
