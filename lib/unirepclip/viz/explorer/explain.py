"""The Explain tab: an image, a caption and a method -> the attribution map (on a button), with
the object's mask outlined and scored for synthetic images."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from unirepclip.analysis import attribution
from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import guard, message
from unirepclip.viz.explorer.figures import explain_figure, figure_png
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ExplainPanel"]


class ExplainPanel:
    """The image ``index``, its ``caption``, the ``method`` with its ``ig_steps`` or
    ``gradcam_stage`` in; the ``button`` draws the map (``out``, a PNG; scores, notes and errors in
    ``msg``). The method and the IG steps start from the default query's."""

    title = "Explain"

    def __init__(self, state: ExplorerState, options: ex.QueryOptions):
        import ipywidgets as w

        self.state = state
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="image")
        self.caption = w.Text(description="caption", layout=w.Layout(width="95%"),
                              value="a picture of a red star")
        self.method = w.Dropdown(options=list(attribution.METHODS),
                                 value=options.explain_method, description="method")
        self.ig_steps = w.IntSlider(value=int(options.explain_args.get("n_steps", 32)), min=4,
                                    max=128, step=4, description="IG steps")
        self.gradcam_stage = w.Dropdown(options=[0, 1, 2, 3], value=2, description="stage")
        self.button = w.Button(description="explain", icon="search")
        self.msg, self.out, self.busy = w.HTML(), w.Image(format="png"), w.HTML()
        self.index.observe(self._own_caption, names="value")
        self.button.on_click(lambda _: self.update())
        self.widget = w.VBox([self.index, self.caption,
                              w.HBox([self.method, self.ig_steps, self.gradcam_stage]),
                              w.HBox([self.button, self.busy]), self.msg, self.out])

    def _own_caption(self, _change: Any) -> None:
        captions = self.state.gallery.captions
        if captions is not None:
            self.caption.value = captions[self.index.value]

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """A new gallery: the query image and its caption."""
        self.index.max = len(gallery) - 1
        self.index.value = min(int(query_index), len(gallery) - 1)
        if gallery.captions is not None:
            self.caption.value = gallery.captions[self.index.value]

    def _mask(self, i: int) -> Optional[np.ndarray]:
        masks = self.state.gallery.masks
        return masks[i] if masks is not None else None

    def answer(self) -> Dict[str, Any]:
        st = self.state
        st.require_text()
        method = self.method.value
        args = ({"n_steps": int(self.ig_steps.value)} if method == "integrated_gradients" else
                {"stage": int(self.gradcam_stage.value)} if method == "gradcam" else {})
        i = int(self.index.value)
        ans = ex.explain(st.lm.model, st.lm.tokenizer, st.gallery.image(i), self.caption.value,
                         method=method, transform=st.lm.preprocess, mask=self._mask(i),
                         device=st.lm.device, **args)
        ans["index"] = i
        return ans

    def update(self) -> None:
        self.busy.value = "computing…"
        try:
            ans = guard(self.msg, self.answer)
        finally:
            self.busy.value = ""
        if ans is None:
            return
        self.state.last["explain"] = ans
        parts = [f"similarity {ans['similarity']:.3f}"]
        if "mass_in_mask" in ans:
            parts.append(f"mass in mask {ans['mass_in_mask']:.1%} (chance {ans['chance']:.1%}), "
                         f"pointing game {ans['pointing_game']:.0%}")
        if ans["note"]:
            parts.append(ans["note"])
        self.msg.value = message("note", "; ".join(parts))
        self.out.value = figure_png(explain_figure(ans, self._mask(ans["index"])))

    def refresh(self) -> None:
        """The map is drawn on the button only (it takes a while)."""
