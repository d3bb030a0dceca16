"""The explorer's layout: the image source, a status line and the five tabs over one shared state;
choosing a gallery fills every tab's inputs and answers the quick tabs once."""
from __future__ import annotations

import html
from typing import Any, Dict, Mapping, Optional

import numpy as np

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import message
from unirepclip.viz.explorer.embedding_map import MapPanel
from unirepclip.viz.explorer.explain import ExplainPanel
from unirepclip.viz.explorer.receptive_field import ErfPanel
from unirepclip.viz.explorer.search import ImageToText, TextToImages
from unirepclip.viz.explorer.source import SourcePicker
from unirepclip.viz.explorer.state import ExplorerState
from unirepclip.viz.explorer.zeroshot import ZeroShotPanel

__all__ = ["Explorer", "LIVE_NOTE"]

LIVE_NOTE = ("The live explorer opens in JupyterLab (`make lab`), in this cell: there every panel "
             "answers as you type. Below, each panel's default query is answered as a static "
             "figure.")

# Drawn by the app itself, so only where the app is live: there the note is hidden (it speaks to
# the reader of a rendered report, where the app cannot be drawn and the note takes its place).
_HIDE_NOTE = "<style>.unirepclip-live-note { display: none; }</style>"


class Explorer:
    """The explorer's widgets over one loaded model (``lm``: :func:`unirepclip.workbook.setup`'s
    result) and one gallery (:class:`unirepclip.analysis.explore.Gallery`).

    ``options`` (:class:`~unirepclip.analysis.explore.QueryOptions`) is the default query the
    panels start from: the query image, the number of hits, the attribution method, the map's
    method and the ERF setting, as :func:`~unirepclip.analysis.explore.default_queries` answers
    them. ``extract_kw`` go to the feature extraction (see
    :class:`~unirepclip.viz.explorer.state.ExplorerState`). Typed input is answered once it has
    been still for ``debounce_s`` seconds; the zero-shot table shows ``n_show`` images.
    ``widget`` is the app; a notebook displays it with :meth:`show`. The tabs are the attributes
    ``zeroshot``, ``search`` and ``image_to_text`` (the Search tab), ``explain``, ``map``,
    ``erf``; ``source`` picks the images.
    """

    def __init__(self, lm: Any, gallery: ex.Gallery, *, embeddings: Optional[np.ndarray] = None,
                 options: Optional[ex.QueryOptions] = None,
                 extract_kw: Optional[Mapping[str, Any]] = None, debounce_s: float = 0.3,
                 n_show: int = 8):
        import ipywidgets as w

        options = options if options is not None else ex.QueryOptions()
        self.state = st = ExplorerState(lm, extract_kw)
        self.status, self.progress = w.HTML(), w.Output()
        self.source = SourcePicker(self.set_gallery)
        self.zeroshot = ZeroShotPanel(st, debounce_s=debounce_s, n_show=n_show)
        self.search = TextToImages(st, top_k=options.top_k, debounce_s=debounce_s)
        self.image_to_text = ImageToText(st, top_k=options.top_k, debounce_s=debounce_s)
        self.explain = ExplainPanel(st, options)
        self.map = MapPanel(st, options)
        self.erf = ErfPanel(st, options)
        self._panels = [self.zeroshot, self.search, self.image_to_text, self.explain, self.map,
                        self.erf]
        tabs = [(self.zeroshot.title, self.zeroshot.widget),
                ("Search", w.VBox([self.search.widget, self.image_to_text.widget])),
                (self.explain.title, self.explain.widget), (self.map.title, self.map.widget),
                (self.erf.title, self.erf.widget)]
        self.tabs = w.Tab(children=[widget for _, widget in tabs])
        for i, (title, _) in enumerate(tabs):
            self.tabs.set_title(i, title)
        self.widget = w.VBox([w.HTML(_HIDE_NOTE), self.source.widget, self.status,
                              self.source.msg, self.progress, self.tabs])
        self.widget.add_class("unirepclip-explorer")
        self.set_gallery(gallery, embeddings=embeddings, query_index=options.query_index)

    @property
    def gallery(self) -> ex.Gallery:
        return self.state.gallery

    @property
    def embeddings(self) -> np.ndarray:
        return self.state.embeddings

    @property
    def last(self) -> Dict[str, Any]:
        """Each panel's last answer, as plain data."""
        return self.state.last

    def show(self) -> None:
        """Display the app; where no live frontend draws widgets (a rendered report) a note in
        its place says where the live version opens. The live app hides that note: under the
        app itself it would send the reader to where they are."""
        from IPython.display import HTML, display

        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = LIVE_NOTE
        display(bundle, raw=True)
        # a rendered report has no widget state: this line is what it shows in the app's place
        display(HTML(f'<p class="unirepclip-live-note"><i>{html.escape(LIVE_NOTE)}</i></p>'))

    def set_gallery(self, gallery: ex.Gallery, *, embeddings: Optional[np.ndarray] = None,
                    query_index: int = 0) -> None:
        """Use ``gallery``: its embeddings are computed once (progress bar) unless given; every
        tab's inputs follow it, and the quick tabs answer once."""
        st = self.state
        if embeddings is None:
            self.progress.clear_output()
            with self.progress:
                embeddings = st.embed(gallery)
            self.progress.clear_output()
        self.source.remember(gallery, embeddings)
        st.use(gallery, embeddings)
        note = f"; {len(gallery.skipped)} unreadable files skipped" if gallery.skipped else ""
        self.status.value = message("ok", f"{st.lm.model_name}: {gallery.description} "
                                          f"({len(gallery)} embeddings ready{note})")
        if st.text_problem:
            self.status.value += message("note", st.text_problem)
        self.source.msg.value = ""
        with st.quietly():
            for panel in self._panels:
                panel.fill(gallery, query_index)
        for panel in self._panels:
            panel.refresh()
