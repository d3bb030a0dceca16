"""The Zero-shot tab: class names (comma separated) and templates (typed, one a line, or a
built-in ensemble) -> the probabilities of each gallery image, updated as you type.

Typing in the templates box chooses the typed templates (the choice switches to
:data:`TYPED`); a built-in ensemble is chosen in the list. The table starts at any image
(``first``) and shows each class's cosine similarity beside its probability: with a logit scale
of 100 the probabilities saturate at 100 % and 0 % for cosines a few hundredths apart, where the
similarities still say how close the call was. After bad input the panel shows the message
alone, never the previous table as if it answered the new input.
"""
from __future__ import annotations

import html
from typing import Any, Dict

import numpy as np

from unirepclip.analysis import explore as ex
from unirepclip.eval.zeroshot import LOGIT_SCALE
from unirepclip.viz.explorer.common import Debouncer, guard
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ZeroShotPanel", "TYPED"]

#: The template choice that reads the templates box.
TYPED = "typed below"


class ZeroShotPanel:
    """The zero-shot playground: ``classes``, ``template_choice`` and ``templates`` in, and the
    image to start the table at (``first``); the table of ``n_show`` images from there, each
    with its three most probable classes, their probabilities and cosine similarities, out
    (``out``; errors in ``msg``)."""

    title = "Zero-shot"

    def __init__(self, state: ExplorerState, *, debounce_s: float, n_show: int):
        import ipywidgets as w

        self.state, self.n_show = state, int(n_show)
        self.classes = w.Text(description="classes", placeholder="cat, dog, a red star",
                              layout=w.Layout(width="95%"), continuous_update=True)
        self.template_choice = w.Dropdown(options=[TYPED] + list(ex.TEMPLATE_SETS),
                                          value=next(iter(ex.TEMPLATE_SETS)),
                                          description="templates", layout=w.Layout(width="60%"))
        self.templates = w.Textarea(value="a photo of a {}.\na picture of a {}.",
                                    description="one a line", layout=w.Layout(width="95%"))
        self.first = w.BoundedIntText(value=0, min=0, max=0, description="from image")
        self.msg, self.out = w.HTML(), w.HTML()
        self.out.add_class("unirepclip-zeroshot-table")
        debounced = Debouncer(self.update, debounce_s)
        for widget in (self.classes, self.template_choice, self.first):
            widget.observe(state.on_input(debounced), names="value")
        self.templates.observe(state.on_input(lambda: self._typed(debounced)), names="value")
        self.widget = w.VBox([self.classes, self.template_choice, self.templates, self.first,
                              self.msg, self.out])

    def _typed(self, debounced: Debouncer) -> None:
        """Typing templates means using them: choose the typed templates, then answer once."""
        with self.state.quietly():
            self.template_choice.value = TYPED
        debounced()

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A new gallery: its class names, unless some are typed already; the table from the
        query image."""
        if gallery.classnames and self.classes.value == "":
            self.classes.value = ", ".join(gallery.classnames)
        self.first.max = len(gallery) - 1
        self.first.value = min(int(query_index), len(gallery) - 1)

    def answer(self) -> Dict[str, Any]:
        """The zero-shot table of the current inputs (plain data, with the ``templates`` used:
        the typed ones, or the ensemble's name)."""
        st = self.state
        st.require_text()
        classnames = ex.parse_classnames(self.classes.value)
        choice = self.template_choice.value
        templates = tuple(ex.parse_templates(self.templates.value)) if choice == TYPED else choice
        clf = st.classifier(tuple(classnames), templates)
        labels = None
        if st.gallery.classnames and classnames == list(st.gallery.classnames):
            labels = st.gallery.labels
        table = ex.zeroshot_table(st.embeddings, clf, classnames, names=st.gallery.names,
                                  labels=labels)
        table["templates"] = list(templates) if choice == TYPED else choice
        return table

    def _rows(self, table: Dict[str, Any]) -> str:
        probs, sims = table["probabilities"], table["similarities"]
        first = int(self.first.value)
        rows = []
        for i in range(first, min(first + self.n_show, len(probs))):
            order = np.argsort(-probs[i])[:3]
            cells = "".join(f"<td>{html.escape(table['classnames'][c])} "
                            f"<b>{probs[i, c]:.1%}</b> <small>cos {sims[i, c]:.3f}</small></td>"
                            for c in order)
            rows.append(f'<tr data-index="{i}"><td><img src="{self.state.thumb(i)}" width="48" '
                        f'height="48"></td><td>{html.escape(table["names"][i])}</td>{cells}</tr>')
        return "".join(rows)

    def update(self) -> None:
        table = guard(self.msg, self.answer)
        if table is None:  # the message alone: the last table answered other input
            self.out.value = ""
            self.state.last.pop("zeroshot", None)
            return
        self.msg.value = ""
        self.state.last["zeroshot"] = table
        n = len(table["probabilities"])
        acc = (f"top-1 against the gallery's labels: {table['accuracy']:.1%} ({n} images); "
               if "accuracy" in table else "")
        head = (f"<p>{acc}probability: softmax of {LOGIT_SCALE:g} × the cosine similarity "
                f"(cos), so cosines a few hundredths apart read 100 % and 0 %</p>")
        self.out.value = f"{head}<table>{self._rows(table)}</table>"

    refresh = update
