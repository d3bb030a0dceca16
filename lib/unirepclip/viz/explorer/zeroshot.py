"""The Zero-shot tab: class names (comma separated) and templates (typed, one a line, or a
built-in ensemble) -> the probabilities of each gallery image, updated as you type."""
from __future__ import annotations

import html
from typing import Any, Dict

import numpy as np

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import Debouncer, guard
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ZeroShotPanel", "TYPED"]

#: The template choice that reads the templates box.
TYPED = "typed below"


class ZeroShotPanel:
    """The zero-shot playground: ``classes``, ``template_choice`` and ``templates`` in, the table
    of the first ``n_show`` images' three most probable classes out (``out``; errors in ``msg``)."""

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
        self.msg, self.out = w.HTML(), w.HTML()
        self.out.add_class("unirepclip-zeroshot-table")
        debounced = Debouncer(self.update, debounce_s)
        for widget in (self.classes, self.templates, self.template_choice):
            widget.observe(state.on_input(debounced), names="value")
        self.widget = w.VBox([self.classes, self.template_choice, self.templates, self.msg,
                              self.out])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A new gallery: its class names, unless some are typed already."""
        if gallery.classnames and self.classes.value == "":
            self.classes.value = ", ".join(gallery.classnames)

    def answer(self) -> Dict[str, Any]:
        """The zero-shot table of the current inputs (plain data)."""
        st = self.state
        st.require_text()
        classnames = ex.parse_classnames(self.classes.value)
        choice = self.template_choice.value
        templates = tuple(ex.parse_templates(self.templates.value)) if choice == TYPED else choice
        clf = st.classifier(tuple(classnames), templates)
        labels = None
        if st.gallery.classnames and classnames == list(st.gallery.classnames):
            labels = st.gallery.labels
        return ex.zeroshot_table(st.embeddings, clf, classnames, names=st.gallery.names,
                                 labels=labels)

    def update(self) -> None:
        table = guard(self.msg, self.answer)
        if table is None:
            return
        self.msg.value = ""
        self.state.last["zeroshot"] = table
        probs = table["probabilities"]
        rows = []
        for i in range(min(self.n_show, len(probs))):
            order = np.argsort(-probs[i])[:3]
            cells = "".join(f"<td>{html.escape(table['classnames'][c])} "
                            f"<b>{probs[i, c]:.1%}</b></td>" for c in order)
            rows.append(f'<tr><td><img src="{self.state.thumb(i)}" width="48" height="48"></td>'
                        f'<td>{html.escape(table["names"][i])}</td>{cells}</tr>')
        acc = (f"<p>top-1 against the gallery's labels: {table['accuracy']:.1%} "
               f"({len(probs)} images)</p>" if "accuracy" in table else "")
        self.out.value = f"{acc}<table>{''.join(rows)}</table>"

    refresh = update
