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
* constrained layout, so labels never overlap without hand tuning.

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
    "use_style", "figure_size", "figure", "subplots", "save",
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


def save(fig, name: str, output_dir: Union[str, os.PathLike],
         formats: Iterable[str] = FORMATS, *, dpi: Optional[float] = None) -> List[Path]:
    """Save ``fig`` as ``<output_dir>/figures/<name>.<format>`` for each format; return the paths.

    ``name`` is a file stem (letters, digits, ``.``, ``_``, ``-``); ``output_dir`` the report folder.
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
        paths.append(path)
    return paths
