"""One figure style for every notebook, and saving figures for papers.

Every notebook starts with ``style.use_style()`` (:func:`unirepclip.workbook.setup` calls it) and
makes its figures with ``style.figure(width="one"|"two", aspect=...)`` (or ``style.subplots``), so
the whole workbook shares one look:

* sizes for paper columns: ``"one"`` = 3.5 in (a single column of a two-column paper),
  ``"two"`` = 7.2 in (the full text width); a number is a width in inches; ``aspect`` is
  height / width;
* readable fonts at that printed size (8 pt text, 7 pt ticks), shown at 150 dpi in notebooks so
  the on-screen figure is not tiny, saved at 300 dpi;
* a colour-blind-safe colour cycle: the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal
  Design"), ordered so the first colours stay apart under protanopia, deuteranopia and
  tritanopia; sequential maps stay matplotlib's ``viridis`` (perceptually uniform and CVD-safe);
* constrained layout, so labels never overlap without hand tuning;
* titles that fit: :func:`fit_titles` wraps a figure's or an axes' title that would run past
  the figure's edge or into its neighbour's (measured after the layout), and :func:`save` calls
  it, so no saved figure has a clipped title.

``style.save(fig, name, output_dir)`` writes ``<output_dir>/figures/<name>.png`` plus vector
``.pdf`` and ``.svg`` beside it and returns the paths. Vector files are written without creation
dates and with a fixed SVG id salt, so the same figure gives byte-identical files on a rerun (a diff
of two report folders then shows only real changes). Notebooks save through their results recorder,
``lm.results.save_figure(fig, name, headline=..., caption=...)``
(:class:`unirepclip.workbook.results.Recorder`), which calls :func:`save` with the report folder
and lists the figure in the notebook's results file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import matplotlib as mpl

__all__ = [
    "ONE_COLUMN", "TWO_COLUMN", "OKABE_ITO", "PALETTE", "STYLE", "FORMATS",
    "use_style", "figure_size", "figure", "subplots", "fit_titles", "save",
]

ONE_COLUMN = 3.5  # inches: one column of a two-column paper
TWO_COLUMN = 7.2  # inches: the full text width

#: The Okabe-Ito colours by name (hex sRGB).
OKABE_ITO: Dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: The colour cycle. Yellow comes last: it is the one hardest to see on white.
PALETTE: Tuple[str, ...] = tuple(OKABE_ITO[k] for k in (
    "blue", "vermillion", "bluish_green", "orange", "reddish_purple", "sky_blue", "black", "yellow"))

#: Every rcParam that :func:`use_style` sets.
STYLE: Dict[str, Any] = {
    "figure.figsize": (ONE_COLUMN, ONE_COLUMN * 0.75),
    "figure.dpi": 150,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 300,
    "savefig.bbox": "standard",  # keep the size asked for; "tight" would change it per figure
    "savefig.facecolor": "white",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "sans-serif"],
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 10,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "image.cmap": "viridis",
    # TrueType in PDF keeps text editable in vector editors; SVG text as paths looks the same in
    # every viewer whatever fonts it has.
    "pdf.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "unirepclip",  # fixed ids: reruns give identical SVG files
}

#: Formats :func:`save` writes by default: a raster for the web and two vector forms for papers.
FORMATS: Tuple[str, ...] = ("png", "pdf", "svg")

_WIDTHS = {"one": ONE_COLUMN, "two": TWO_COLUMN}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Dates in vector files would make every rerun differ byte-wise.
_NO_DATES = {"pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}}


def use_style() -> None:
    """Set matplotlib's rcParams to the workbook's style (call once at the top of a notebook)."""
    mpl.rcParams.update(STYLE)


def figure_size(width: Union[str, float] = "one", aspect: float = 0.75) -> Tuple[float, float]:
    """(width, height) in inches for a paper column: ``width`` is ``"one"``, ``"two"`` or inches;
    ``aspect`` is height / width."""
    if isinstance(width, str):
        if width not in _WIDTHS:
            raise ValueError(f"width must be 'one', 'two' or a number of inches, got {width!r}")
        w = _WIDTHS[width]
    else:
        w = float(width)
    if not (w > 0 and aspect > 0):
        raise ValueError(f"width and aspect must be positive, got width={width!r}, aspect={aspect!r}")
    return (w, w * float(aspect))


def figure(width: Union[str, float] = "one", aspect: float = 0.75, **kwargs: Any):
    """A new ``matplotlib.figure.Figure`` sized for one or two paper columns (see
    :func:`figure_size`); extra keyword arguments go to ``plt.figure``."""
    import matplotlib.pyplot as plt
    return plt.figure(figsize=figure_size(width, aspect), **kwargs)


def subplots(nrows: int = 1, ncols: int = 1, *, width: Union[str, float] = "one",
             aspect: float = 0.75, **kwargs: Any):
    """``plt.subplots`` sized for one or two paper columns; returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt
    return plt.subplots(nrows, ncols, figsize=figure_size(width, aspect), **kwargs)


def _layout(fig):
    """The figure's renderer, with its layout engine's positions applied (no drawing)."""
    renderer = fig.canvas.get_renderer()
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    return renderer


def _title_rooms(fig, renderer) -> List[Tuple[Any, float]]:
    """``(text, room in pixels)`` for each centred figure text (the suptitle) and axes title: a
    centred line may reach the nearer figure edge, and halfway to the centre of a neighbouring
    axes in its row that has a title too."""
    width = fig.bbox.width
    out = []
    for t in fig.texts:
        if t.get_visible() and t.get_text() and t.get_ha() == "center":
            b = t.get_window_extent(renderer)
            out.append((t, 2 * min((b.x0 + b.x1) / 2, width - (b.x0 + b.x1) / 2)))
    titled = [ax for ax in fig.axes if ax.get_visible() and ax.title.get_text()]
    for ax in titled:
        box = ax.get_window_extent(renderer)
        cx = (box.x0 + box.x1) / 2
        room = 2 * min(cx, width - cx)
        for other in titled:
            ob = other.get_window_extent(renderer)
            if other is not ax and abs(ob.y1 - box.y1) < 0.5 * min(box.height, ob.height):
                room = min(room, abs((ob.x0 + ob.x1) / 2 - cx))
        out.append((ax.title, room))
    return out


def _wrap_line(line: str, room: float, measure) -> List[str]:
    """``line`` broken at spaces into lines no wider than ``room`` by ``measure`` (a word wider
    than that alone is broken between characters)."""
    out: List[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and measure(candidate) > room:
            out.append(current)
            candidate = word
        while len(candidate) > 1 and measure(candidate) > room:
            cut = 1
            while cut < len(candidate) - 1 and measure(candidate[:cut + 1]) <= room:
                cut += 1
            out.append(candidate[:cut])
            candidate = candidate[cut:]
        current = candidate
    return out + [current]


def fit_titles(fig, *, layout: bool = True) -> bool:
    """Wrap, at word boundaries, each line of the figure's centred texts (its suptitle) and of
    its axes' titles that is wider than its room (:func:`_title_rooms`: a line must not cross
    the figure's edge nor reach a neighbour's title), measured on the renderer after the
    layout; the layout is redone after a change (a title of two lines moves the axes). With
    ``layout=False`` the first measurement takes the positions of the figure's last drawing
    (cheap: :func:`save` measures after writing its first file). Returns whether a title
    changed."""
    changed_any = False
    for attempt in range(3):
        renderer = _layout(fig) if layout or attempt else fig.canvas.get_renderer()
        changed = False
        for t, room in _title_rooms(fig, renderer):
            def measure(s, t=t):
                return renderer.get_text_width_height_descent(
                    s.replace("\\$", "$"), t.get_fontproperties(), ismath=False)[0]
            text = t.get_text()
            lines = [w for line in text.split("\n") for w in _wrap_line(line, room, measure)]
            if "\n".join(lines) != text:
                t.set_text("\n".join(lines))
                changed = True
        if not changed:
            break
        changed_any = True
    return changed_any


def save(fig, name: str, output_dir: Union[str, os.PathLike],
         formats: Iterable[str] = FORMATS, *, dpi: Optional[float] = None) -> List[Path]:
    """Save ``fig`` as ``<output_dir>/figures/<name>.<format>`` for each format; return the paths.

    ``name`` is a file stem (letters, digits, ``.``, ``_``, ``-``); ``output_dir`` the report folder.
    A title too wide for its room is wrapped (:func:`fit_titles`) before the file is final.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"figure name {name!r} must be a file stem made of letters, digits, "
                         "'.', '_' and '-' (no folders)")
    formats = tuple(formats)
    if not formats:
        raise ValueError("style.save: formats is empty")
    supported = fig.canvas.get_supported_filetypes()
    for fmt in formats:
        if fmt not in supported:
            raise ValueError(f"style.save: unsupported format {fmt!r} for {name!r}; "
                             f"matplotlib writes {sorted(supported)}")
    if output_dir is None or str(output_dir) == "":
        raise ValueError(f"style.save {name!r}: output_dir is {output_dir!r}; pass the report "
                         "folder (lm.results.save_figure passes the notebook's output_dir)")
    folder = Path(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        fig.savefig(path, format=fmt, dpi=dpi, metadata=_NO_DATES.get(fmt))
        # measured on the drawing just made (no extra layout unless a title is too wide)
        if not paths and fit_titles(fig, layout=False):
            fig.savefig(path, format=fmt, dpi=dpi, metadata=_NO_DATES.get(fmt))
        paths.append(path)
    return paths
