"""The Embedding map tab: the gallery's embeddings in 2-D (PCA at once; t-SNE on a button),
coloured by class, with the nearest images of a chosen point."""
from __future__ import annotations

from typing import Any, Dict

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import clear_figure, guard, message, show_figure
from unirepclip.viz.explorer.figures import map_figure
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["MapPanel"]

_TSNE_NOTE = "t-SNE takes a while: press 'draw t-SNE'"


class MapPanel:
    """The map's ``method`` (PCA or t-SNE; the ``button`` draws a t-SNE) and the ``point`` in;
    the map (``out``, a PNG at its own size) and the point's nearest images (``neighbours``) out.
    A map is computed once per features and method
    (:func:`unirepclip.analysis.explore.embedding_map` keeps it by the features' key), so
    switching back to a t-SNE already drawn shows it at once."""

    title = "Embedding map"

    def __init__(self, state: ExplorerState, options: ex.QueryOptions):
        import ipywidgets as w

        self.state, self.top_k, self.seed = state, options.top_k, options.seed
        self.method = w.ToggleButtons(options=[(ex.MAP_TITLES[m], m) for m in ex.MAP_METHODS],
                                      value=options.map_method)
        self.button = w.Button(description="draw t-SNE", icon="play")
        self.point = w.BoundedIntText(value=0, min=0, max=0, description="point")
        self.msg, self.out, self.neighbours = w.HTML(), w.Image(format="png"), w.HTML()
        self.out.add_class("unirepclip-map")
        self.button.on_click(lambda _: self._draw_tsne())
        redraw = state.on_input(self.update)
        self.method.observe(redraw, names="value")
        self.point.observe(redraw, names="value")
        self.widget = w.VBox([w.HBox([self.method, self.button, self.point]), self.msg,
                              w.HBox([self.out, self.neighbours])])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A new gallery: the query image as the point."""
        self.point.max = len(gallery) - 1
        self.point.value = min(int(query_index), len(gallery) - 1)

    def _draw_tsne(self) -> None:
        with self.state.quietly():
            self.method.value = "tsne"
        self.msg.value = message("note", "computing t-SNE…")
        self.update(compute=True)

    def _has_map(self) -> bool:
        return ex.cached_embedding_map(self.state.embeddings, self.method.value,
                                       seed=self.seed) is not None

    def answer(self, compute: bool = True) -> Dict[str, Any]:
        st = self.state
        if not compute and not self._has_map():
            raise ValueError(_TSNE_NOTE)
        emap = ex.embedding_map(st.embeddings, self.method.value, seed=self.seed)
        i = int(self.point.value)
        return {"map": emap, "point": i,
                "neighbours": ex.nearest_neighbours(st.embeddings, i, self.top_k,
                                                    st.gallery.names)}

    def update(self, compute: bool = False) -> None:
        """Redraw the map; PCA is computed at once, t-SNE only on its button (``compute``) or
        from memory."""
        if not compute and self.method.value == "tsne" and not self._has_map():
            self.msg.value = message("note", _TSNE_NOTE)
            clear_figure(self.out)
            return
        ans = guard(self.msg, lambda: self.answer(compute or self.method.value == "pca"))
        if ans is None:
            clear_figure(self.out)
            return
        self.msg.value = ""
        st = self.state
        st.last["embedding_map"] = ans
        nb = [h["index"] for h in ans["neighbours"]]
        show_figure(self.out, map_figure(
            ans["map"], labels=st.gallery.labels, classnames=st.gallery.classnames,
            point=ans["point"], neighbours=nb))
        self.neighbours.value = "<b>nearest images</b><br>" + st.grid(ans["neighbours"],
                                                                      "unirepclip-neighbours")

    refresh = update
