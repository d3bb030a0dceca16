"""The Search tab, both ways: a sentence -> the gallery's top k images with their scores (updated
as you type), and an image -> the captions (one a line) that fit it best."""
from __future__ import annotations

import html
from typing import Any, Dict

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import Debouncer, guard, message
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["TextToImages", "ImageToText"]


class TextToImages:
    """Text -> images: the ``query`` box and the ``k`` slider in, the grid of hits out (``out``,
    CSS class ``unirepclip-search-results``: each hit's thumbnail, rank, score and caption; notes
    and errors in ``msg``)."""

    def __init__(self, state: ExplorerState, *, top_k: int, debounce_s: float):
        import ipywidgets as w

        self.state = state
        self.query = w.Text(description="find", placeholder="a picture of a red star",
                            layout=w.Layout(width="95%"), continuous_update=True)
        self.query.add_class("unirepclip-search-query")
        self.k = w.IntSlider(value=int(top_k), min=1, max=32, description="top k")
        self.msg, self.out = w.HTML(), w.HTML()
        self.out.add_class("unirepclip-search-results")
        debounced = Debouncer(self.update, debounce_s)
        self.query.observe(state.on_input(debounced), names="value")
        self.k.observe(state.on_input(debounced), names="value")
        self.widget = w.VBox([w.HTML("<b>text → images</b>"), self.query, self.k, self.msg,
                              self.out])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A first answer to look at, and to change: the query image's caption (or the first
        class's prompt), unless a query is typed already."""
        if self.query.value.strip():
            return
        n = len(gallery)
        self.query.value = (gallery.captions[int(query_index) % n] if gallery.captions
                            else f"a photo of a {gallery.classnames[0]}."
                            if gallery.classnames else "")

    def answer(self) -> Dict[str, Any]:
        st = self.state
        st.require_text()
        q, notes = st.encode(self.query.value)
        return {"query": self.query.value, "note": notes[0],
                "hits": ex.search_images(q[0], st.embeddings, self.k.value, st.gallery.names)}

    def update(self) -> None:
        if not self.query.value.strip():
            self.msg.value = message("note", "type a sentence to search the images")
            self.out.value = ""
            return
        ans = guard(self.msg, self.answer)
        if ans is None:
            self.out.value = ""
            return
        self.state.last["search"] = ans
        self.msg.value = message("note", ans["note"]) if ans["note"] else ""
        self.out.value = self.state.grid(ans["hits"], "unirepclip-grid")

    refresh = update


class ImageToText:
    """Image -> text: the image ``index`` and the ``captions`` box in, the best captions out
    (``out``: the image's thumbnail beside the ranked list; errors in ``msg``)."""

    def __init__(self, state: ExplorerState, *, top_k: int, debounce_s: float):
        import ipywidgets as w

        self.state, self.top_k = state, int(top_k)
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="image")
        self.captions = w.Textarea(description="captions", layout=w.Layout(width="95%",
                                                                           height="6em"))
        self.msg, self.out = w.HTML(), w.HTML()
        debounced = Debouncer(self.update, debounce_s)
        self.index.observe(state.on_input(debounced), names="value")
        self.captions.observe(state.on_input(debounced), names="value")
        self.widget = w.VBox([w.HTML("<b>image → text</b>"), self.index, self.captions,
                              self.msg, self.out])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A new gallery: the query image, and its distinct captions (or class prompts)."""
        self.index.max = len(gallery) - 1
        self.index.value = min(int(query_index), len(gallery) - 1)
        if gallery.captions is not None:
            self.captions.value = "\n".join(dict.fromkeys(gallery.captions))
        elif gallery.classnames:
            self.captions.value = "\n".join(f"a photo of a {c}." for c in gallery.classnames)

    def answer(self) -> Dict[str, Any]:
        st = self.state
        st.require_text()
        texts = [t.strip() for t in self.captions.value.splitlines() if t.strip()]
        if not texts:
            raise ValueError("the caption list is empty: type one caption per line")
        emb, _ = ex.encode_queries(st.lm.model, st.lm.tokenizer, texts, **st.text_kw)
        i = int(self.index.value)
        return {"index": i, "hits": ex.search_texts(st.embeddings[i], emb, texts,
                                                    min(self.top_k, len(texts)))}

    def update(self) -> None:
        ans = guard(self.msg, self.answer)
        if ans is None:  # the message alone: the last list answered other input
            self.out.value = ""
            self.state.last.pop("image_to_text", None)
            return
        self.msg.value = ""
        self.state.last["image_to_text"] = ans
        rows = "".join(f"<li>{html.escape(h['name'])} <b>{h['score']:.3f}</b></li>"
                       for h in ans["hits"])
        # side by side in a flex row: a floated thumbnail ran into the list's numbers
        thumb = self.state.thumb(ans["index"])
        self.out.value = (f'<div class="unirepclip-image-to-text" style="display:flex;'
                          f'align-items:flex-start;gap:12px"><img src="{thumb}" width="64" '
                          f'height="64" style="flex:none"><ol style="margin:0;padding-left:2.2em">'
                          f'{rows}</ol></div>')

    refresh = update
