"""The reports open in a real browser: headless Chromium loads the index and every report of a run,
every image loads, no notebook failed, no script from data ran; a screenshot is kept.

Needs Debian's `chromium` and `chromium-driver`; where they are missing this test FAILS (never
skips) with the install command.
"""
import struct
from pathlib import Path

import pytest

from helpers import headless_chromium
from unirepclip.cli import main

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
# A class name that would run a script if any page put it into HTML unescaped.
EVIL = "<script>document.title='pwned';window.__pwned=1</script>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as drv:
        yield drv


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    code = main(["run", "--notebooks-dir", str(DATA / "notebooks"), "--output-dir", str(out),
                 "--profile", str(DATA / "toy_profile.yaml"), "--only", "01_record",
                 "--no-progress", "-q", "-p", f"label={EVIL}"])
    assert code == 0
    return out / "toy_profile"


def _images(drv):
    return drv.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc.slice(0, 80), i.complete, "
        "i.naturalWidth]);")


def _check_page(drv, url):
    drv.get(url)
    assert drv.execute_script("return document.readyState") == "complete"
    broken = [src for src, done, width in _images(drv) if not (done and width > 0)]
    assert not broken, f"{url}: images that did not load: {broken}"
    assert drv.execute_script("return window.__pwned") is None, f"{url}: a script from data ran"
    assert "pwned" not in drv.title


def test_index_and_reports_load_in_chromium(browser, report_dir):
    index = (report_dir / "index.html").as_uri()
    _check_page(browser, index)
    assert len(_images(browser)) >= 1  # the headline figure's thumbnail
    statuses = browser.execute_script(
        "return Array.from(document.querySelectorAll('span.status')).map(s => s.textContent);")
    assert statuses == ["ok"], statuses
    # The malicious class name is shown as text on the page.
    assert EVIL in browser.find_element("tag name", "body").text

    shot = report_dir / "index.png"
    assert browser.save_screenshot(str(shot))
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24])[0] > 0

    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a')).map(a => a.href)"
        ".filter(h => h.endsWith('.html'));")
    assert links, "the index links no report"
    for url in sorted(set(links)):
        _check_page(browser, url)
        assert len(_images(browser)) >= 1, f"{url}: the figure output is missing"
        browser.save_screenshot(str(report_dir / (Path(url).stem + ".png")))


def test_real_notebook_reports_load_in_chromium(browser, ci_reports):
    """The real notebooks on the ci profile: the index says ok for each, and every report's
    images load."""
    code, folder = ci_reports
    assert code == 0
    _check_page(browser, (folder / "index.html").as_uri())
    statuses = browser.execute_script(
        "return Array.from(document.querySelectorAll('span.status')).map(s => s.textContent);")
    assert statuses == ["ok"] * len(list((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))), statuses
    browser.save_screenshot(str(folder / "index.png"))
    for page in sorted(folder.glob("[0-9][0-9]_*.html")):
        _check_page(browser, page.as_uri())
        assert len(_images(browser)) >= 2, f"{page.name}: figures are missing"
        browser.save_screenshot(str(folder / f"{page.stem}.png"))
