"""What every panel of the explorer uses: the debouncer of typed input, the panel messages, the
guard that turns a panel's error into its message, the image thumbnails of the result grids, and
the figures shown at their own size (:func:`show_figure`).
"""
from __future__ import annotations

import asyncio
import base64
import functools
import html
import io
import threading
import traceback
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["Debouncer", "message", "guard", "png_uri", "hit_grid", "show_figure", "clear_figure"]


class Debouncer:
    """Calls ``fn`` once the calls to this object have paused for ``delay`` seconds, with the
    arguments of the last call. In a kernel the delay runs on its asyncio loop (the answer then
    runs on the kernel's main thread, as widget callbacks do); elsewhere on a timer thread.
    ``delay=0`` calls at once."""

    def __init__(self, fn: Callable[..., Any], delay: float = 0.3):
        self.fn, self.delay = fn, float(delay)
        self._handle: Any = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.delay <= 0:
            self.fn(*args, **kwargs)
            return
        with self._lock:
            self.cancel()
            call = functools.partial(self.fn, *args, **kwargs)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                loop = None
            if loop is not None and loop.is_running():
                self._handle = loop.call_later(self.delay, call)
            else:
                self._handle = threading.Timer(self.delay, call)
                self._handle.daemon = True
                self._handle.start()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None



def message(kind: str, text: str) -> str:
    """A panel message (``kind``: error, note or ok) as HTML, the text escaped."""
    colour = {"error": "#b00020", "note": "#8a5a00", "ok": "#1b5e20"}[kind]
    return f'<div class="unirepclip-msg unirepclip-{kind}" style="color:{colour}">' \
           f'{html.escape(text)}</div>'


def guard(msg_widget: Any, fn: Callable[[], Any]) -> Any:
    """Run a panel's work; an error becomes the panel's message (``msg_widget.value``), never a
    traceback, and the result is None."""
    try:
        return fn()
    except (ValueError, TypeError, FileNotFoundError, KeyError, IndexError) as e:
        msg_widget.value = message("error", str(e))
    except Exception as e:  # noqa: BLE001 (an unforeseen failure: say so in the panel)
        last = traceback.extract_tb(e.__traceback__)[-1]
        msg_widget.value = message("error", f"{type(e).__name__}: {e} (at "
                                            f"{last.filename.rsplit('/', 1)[-1]}:"
                                            f"{last.lineno})")
    return None


def png_uri(img: Any, side: int = 96) -> str:
    """An image as a PNG data URI, small images enlarged to ``side`` pixels (nearest neighbour)."""
    from PIL import Image

    pil = Image.fromarray(np.asarray(img, dtype=np.uint8))
    pil = pil.resize((side, side), Image.NEAREST) if max(pil.size) < side else pil
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def hit_grid(hits: Sequence[Mapping[str, Any]], thumb: Callable[[int], str],
             names: Sequence[str], css: str, captions: Optional[Sequence[str]] = None) -> str:
    """Ranked images as an HTML grid: each hit's thumbnail (``thumb(index)``), rank, index and
    score, and its caption (``captions``, else its name) under them, in a ``div`` of class
    ``css``; each cell carries ``data-index``."""
    cells = []
    for h in hits:
        i = h["index"]
        text = html.escape(captions[i] if captions is not None else names[i])
        cells.append(
            f'<div class="unirepclip-hit" data-index="{i}" style="display:inline-'
            f'block;margin:3px;text-align:center;width:104px;vertical-align:top">'
            f'<img src="{thumb(i)}" width="96" height="96" alt="{html.escape(names[i])}"><br>'
            f'<span class="unirepclip-score" style="font-size:10px">{h["rank"]}. #{i} · '
            f'{h["score"]:.3f}</span><div class="unirepclip-caption" '
            f'style="font-size:10px;line-height:1.25;overflow-wrap:anywhere">{text}</div></div>')
    return f'<div class="{css}">{"".join(cells)}</div>'


def show_figure(image_widget: Any, fig: Any) -> None:
    """Show a figure in an ``ipywidgets.Image`` at the size it is rendered for
    (:func:`~unirepclip.viz.explorer.figures.panel_image`): the widget's CSS size is the PNG's
    over its density, so the browser neither stretches nor shrinks it (and never grows it past
    the panel, keeping its aspect)."""
    from unirepclip.viz.explorer.figures import panel_image

    img = panel_image(fig)
    image_widget.value = img.png
    lay = image_widget.layout
    lay.width, lay.height = f"{img.width:g}px", f"{img.height:g}px"
    lay.flex, lay.object_fit, lay.align_self = "0 0 auto", "contain", "flex-start"


def clear_figure(image_widget: Any) -> None:
    """Take a figure off the panel (its answer is no longer current)."""
    image_widget.value = b""
    image_widget.layout.width = image_widget.layout.height = None
