"""unirepclip.viz.style: the shared style, paper sizes, colour-blind safety, saving PNG/PDF/SVG."""
import struct

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from unirepclip.viz import style as figures  # noqa: E402
from unirepclip.workbook import results  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_state():
    with matplotlib.rc_context():
        yield
        plt.close("all")


def test_use_style_sets_the_documented_rcparams():
    figures.use_style()
    rc = matplotlib.rcParams
    assert rc["font.size"] == 8 and rc["figure.constrained_layout.use"] is True
    assert rc["savefig.dpi"] == 300 and rc["pdf.fonttype"] == 42
    cycle = [c.upper() for c in rc["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.upper() for c in figures.PALETTE]
    # A line drawn without a colour takes the palette's first colour.
    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1])
    assert matplotlib.colors.to_hex(line.get_color()).upper() == figures.PALETTE[0].upper()


def test_figure_sizes_follow_paper_columns():
    assert figures.figure_size("one") == (3.5, 3.5 * 0.75)
    assert figures.figure_size("two", aspect=0.5) == (7.2, 3.6)
    assert figures.figure_size(5, aspect=1.0) == (5.0, 5.0)
    fig = figures.figure("two", aspect=0.4)
    np.testing.assert_allclose(fig.get_size_inches(), [7.2, 2.88])
    fig, axes = figures.subplots(1, 3, width="two", aspect=0.3)
    assert len(axes) == 3
    np.testing.assert_allclose(fig.get_size_inches(), [7.2, 2.16])
    with pytest.raises(ValueError, match="'three'"):
        figures.figure_size("three")
    with pytest.raises(ValueError, match="positive"):
        figures.figure_size("one", aspect=0)


# Machado, Oliveira & Fernandes (2009), full-severity dichromacy, applied in linear RGB.
_CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}


def _min_delta_e(colours, matrix):
    from skimage.color import deltaE_ciede2000, rgb2lab

    rgb = np.array([to_rgb(c) for c in colours])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    sim = np.clip(lin @ np.asarray(matrix).T, 0, 1)
    srgb = np.where(sim <= 0.0031308, 12.92 * sim, 1.055 * sim ** (1 / 2.4) - 0.055)
    lab = rgb2lab(srgb[None])[0]
    n = len(colours)
    return min(deltaE_ciede2000(lab[i], lab[j]) for i in range(n) for j in range(i + 1, n))


@pytest.mark.parametrize("kind", sorted(_CVD))
def test_palette_stays_distinguishable_under_colour_blindness(kind):
    # Every pair of palette colours stays > 10 CIEDE2000 apart under simulated dichromacy...
    assert _min_delta_e(figures.PALETTE, _CVD[kind]) > 10
    # ...a bar that matplotlib's default cycle fails (its red and green merge for protanopes and
    # deuteranopes), so the check can tell a bad palette from a good one.
    tab10 = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors[:6]]
    if kind != "tritanopia":
        assert _min_delta_e(tab10, _CVD[kind]) < 10


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_save_writes_png_pdf_svg_at_the_asked_size(tmp_path):
    figures.use_style()
    fig, ax = figures.subplots(width="one", aspect=0.6)
    ax.plot([0, 1, 2], [1, 0, 1], label="<b>class</b>")
    ax.legend()
    paths = figures.save(fig, "curve", output_dir=tmp_path)
    assert [p.name for p in paths] == ["curve.png", "curve.pdf", "curve.svg"]
    assert all(p.parent == tmp_path / "figures" for p in paths)
    # 3.5 in x 2.1 in at the style's 300 dpi.
    assert _png_size(paths[0]) == (1050, 630)
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in paths[2].read_bytes()[:2000]


def test_vector_files_are_byte_identical_on_a_rerun(tmp_path):
    figures.use_style()
    blobs = []
    for out in (tmp_path / "a", tmp_path / "b"):
        fig, ax = figures.subplots()
        ax.bar(["x", "y"], [1, 2])
        ax.set_title("same figure")
        blobs.append([p.read_bytes() for p in figures.save(fig, "bars", output_dir=out)])
        plt.close(fig)
    assert blobs[0] == blobs[1]


def test_the_recorder_saves_into_its_folder_and_lists_the_figure(tmp_path):
    res_file = tmp_path / "results" / "nb.json"
    rec = results.Recorder(tmp_path, res_file)
    fig, _ = figures.subplots()
    paths = rec.save_figure(fig, "thumb", formats=("png",), headline=True, caption="a caption")
    assert paths == [tmp_path / "figures" / "thumb.png"] and paths[0].is_file()
    rec.save_figure(fig, "other", formats=("png", "svg"))
    rec.save_figure(fig, "thumb", formats=("png",), caption="again")  # a re-save replaces
    doc = results.load(res_file)
    assert doc["figures"] == [
        {"name": "other", "files": {"png": "figures/other.png", "svg": "figures/other.svg"},
         "headline": False, "caption": None},
        {"name": "thumb", "files": {"png": "figures/thumb.png"}, "headline": False,
         "caption": "again"}]
    # An explicit call to style.save lists nothing: the figure sink is the recorder, not a global.
    figures.save(fig, "loose", tmp_path, formats=("png",))
    assert [f["name"] for f in results.load(res_file)["figures"]] == ["other", "thumb"]


def test_save_rejects_bad_names_formats_and_a_missing_folder(tmp_path):
    fig, _ = figures.subplots()
    for bad in ("../escape", "a/b", "", ".hidden", "sp ace"):
        with pytest.raises(ValueError, match="figure name"):
            figures.save(fig, bad, output_dir=tmp_path)
    with pytest.raises(ValueError, match="'bmpx'"):
        figures.save(fig, "ok", output_dir=tmp_path, formats=("png", "bmpx"))
    assert not (tmp_path / "figures" / "ok.png").exists()  # nothing half-written
    for missing in (None, ""):
        with pytest.raises(ValueError, match="'nowhere': output_dir is"):
            figures.save(fig, "nowhere", missing)
    with pytest.raises(RuntimeError, match="'nowhere': this recorder has no output_dir"):
        results.Recorder(None, tmp_path / "nb.json").save_figure(fig, "nowhere")


def test_a_cell_ending_in_save_figure_shows_nothing(tmp_path):
    """Reports 02, 03, 05 and 06 printed ``[PosixPath('.../.partial/figures/...png'), ...]``
    under every cell that ended in save_figure: the temporary folder's paths, gone once the run
    completes. IPython's formatter decides what a cell's value shows (ipykernel sends nothing
    for an empty bundle); the paths stay usable as a list."""
    from IPython.core.interactiveshell import InteractiveShell

    rec = results.Recorder(tmp_path, None)
    fig, _ = figures.subplots()
    paths = rec.save_figure(fig, "quiet", formats=("png", "svg"))
    assert InteractiveShell.instance().display_formatter.format(paths) == ({}, {})
    assert paths == [tmp_path / "figures" / "quiet.png", tmp_path / "figures" / "quiet.svg"]
    assert [p.name for p in paths] == ["quiet.png", "quiet.svg"]


@pytest.mark.parametrize("caption", [None, "", "  "])
def test_a_headline_figure_needs_a_caption(tmp_path, caption):
    """The index shows a headline figure's caption under its thumbnail; without one it showed
    the raw file name (notebook 05's comparison)."""
    rec = results.Recorder(tmp_path, tmp_path / "nb.json")
    fig, _ = figures.subplots()
    with pytest.raises(ValueError, match="'thumb': a headline figure needs a caption"):
        rec.save_figure(fig, "thumb", formats=("png",), headline=True, caption=caption)
    assert not (tmp_path / "figures" / "thumb.png").exists() and rec.document()["figures"] == []


def test_save_wraps_titles_that_would_cross_the_edge_or_meet_a_neighbour(tmp_path):
    """A row of images with long captions (the explorer's zero-shot figure): the last one ran
    past the figure's right edge, neighbours into each other. After save, each title lies in
    the figure and apart from the others, its words unchanged; a title that fits is left as
    it was."""
    figures.use_style()
    fig, axes = figures.subplots(1, 6, width="two", aspect=0.3)
    caption = "#5 a rendering of a large purple star on stripes, cost $5"
    for ax in axes:
        ax.imshow(np.zeros((8, 8, 3)))
        ax.set_title(caption.replace("$", r"\$"), fontsize=6)
    fig.suptitle("fits")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()

    def boxes():
        return [ax.title.get_window_extent(r) for ax in axes]

    before = boxes()
    assert before[-1].x1 > fig.bbox.width and before[0].overlaps(before[1])
    figures.save(fig, "row", tmp_path, formats=("png",))
    fig.canvas.draw()
    after = boxes()
    assert all(0 <= b.x0 and b.x1 <= fig.bbox.width for b in after)
    assert not any(a.overlaps(b) for a, b in zip(after, after[1:]))
    assert all(ax.get_title().split() == caption.replace("$", r"\$").split() for ax in axes)
    assert fig.get_suptitle() == "fits"
    assert _png_size(tmp_path / "figures" / "row.png") == (2160, 648)
