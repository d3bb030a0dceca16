"""The Explain tab: an image, a caption and a method -> the attribution map (on a button), with
the object's mask outlined and scored for synthetic images; with a second caption, the
contrastive map (the attribution of the difference of the two similarities) beside it."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from unirepclip.analysis import attribution
from unirepclip.analysis import explore as ex
from unirepclip.analysis.attribution.metrics import ZHANG_TOLERANCE
from unirepclip.models.towers import tower_of
from unirepclip.viz.explorer.common import clear_figure, guard, message, show_figure
from unirepclip.viz.explorer.figures import explain_figure
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ExplainPanel", "score_text"]


def _pointing_text(s: Mapping[str, Any]) -> str:
    n, hits = s["n_maxima"], s["n_maxima_in_mask"]
    if n == 1:
        where = "on the object" if hits else "off the object"
        head = f"pointing game {s['pointing_game']:.0%} (the map's maximum is {where})"
    else:
        head = (f"pointing game {s['pointing_game']:.0%}: the maximum is tied at {n} pixels, "
                f"{hits} of them on the object (the score is that share)")
    return (f"{head}; within {s['tolerance']:g} px of the object (Zhang et al.'s tolerance): "
            f"{s['pointing_game_tolerant']:.0%}")


def score_text(ans: Mapping[str, Any]) -> str:
    """The panel's readout of an answer of :func:`unirepclip.analysis.explore.explain`: the
    similarity, and against a mask the mass in it (with chance) and the pointing game, saying
    what a share of tied maxima means; for a contrastive answer the same of the contrastive
    map."""
    parts: List[str] = [f"similarity {ans['similarity']:.3f}"]
    if "mass_in_mask" in ans:
        parts.append(f"mass in mask {ans['mass_in_mask']:.1%} (chance {ans['chance']:.1%}), "
                     + _pointing_text(ans))
    if "contrast" in ans:
        parts.append(f"versus “{ans['contrast']}”: similarity {ans['contrast_similarity']:.3f}, "
                     f"difference {ans['similarity'] - ans['contrast_similarity']:+.3f}")
        if "contrast_scores" in ans:
            c = ans["contrast_scores"]
            parts.append(f"contrastive map: mass in mask {c['mass_in_mask']:.1%}, "
                         + _pointing_text(c))
    if ans["note"]:
        parts.append(ans["note"])
    return "; ".join(parts)


class ExplainPanel:
    """The image ``index``, its ``caption``, an optional second caption (``contrast``), the
    ``method`` with its ``ig_steps`` or ``gradcam_stage``, and the pointing game's ``tolerance``
    in; the ``button`` draws the map (``out``, a PNG at its own size; scores, notes and errors in
    ``msg``). The method and the IG steps start from the default query's."""

    title = "Explain"

    def __init__(self, state: ExplorerState, options: ex.QueryOptions):
        import ipywidgets as w

        self.state = state
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="image")
        self.caption = w.Text(description="caption", layout=w.Layout(width="95%"),
                              value="a picture of a red star")
        self.contrast = w.Text(description="rather than", layout=w.Layout(width="95%"),
                               placeholder="a second caption: the map of the difference "
                                           "(optional)")
        self.method = w.Dropdown(options=list(attribution.METHODS),
                                 value=options.explain_method, description="method")
        self.ig_steps = w.IntSlider(value=int(options.explain_args.get("n_steps", 32)), min=4,
                                    max=128, step=4, description="IG steps")
        # the tower's own depths (a ViT's blocks); one whose map never reaches the embedding
        # (a class-token ViT's last block) is left out: Grad-CAM there is an empty map
        tower = tower_of(state.lm.model)
        depths = [d for d in range(tower.depth_count) if tower.unused_map_note(d) is None]
        self.gradcam_stage = w.Dropdown(options=depths, value=depths[min(2, len(depths) - 1)],
                                        description=tower.unit)
        self.tolerance = w.BoundedIntText(value=ZHANG_TOLERANCE, min=0, max=1000,
                                          description="tolerance px")
        self.button = w.Button(description="explain", icon="search")
        self.msg, self.out, self.busy = w.HTML(), w.Image(format="png"), w.HTML()
        self.out.add_class("unirepclip-explain-map")
        self.index.observe(self._own_caption, names="value")
        self.button.on_click(lambda _: self.update())
        self.widget = w.VBox([self.index, self.caption, self.contrast,
                              w.HBox([self.method, self.ig_steps, self.gradcam_stage]),
                              w.HBox([self.tolerance, self.button, self.busy]), self.msg,
                              self.out])

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
        i, contrast = int(self.index.value), self.contrast.value.strip()
        lm, image = st.lm, st.gallery.image(i)
        ans = ex.explain(lm.model, lm.tokenizer, image, self.caption.value, method=method,
                         transform=lm.preprocess, device=lm.device, **args)
        if contrast:
            ans.update(ex.explain_contrast(lm.model, lm.tokenizer, image, self.caption.value,
                                           contrast, method=method, transform=lm.preprocess,
                                           device=lm.device, **args))
        ans["index"] = i
        return ex.score_explanation(ans, self._mask(i), int(self.tolerance.value))

    def update(self) -> None:
        self.busy.value = "computing…"
        try:
            ans = guard(self.msg, self.answer)
        finally:
            self.busy.value = ""
        if ans is None:  # the map on screen is no longer this input's
            clear_figure(self.out)
            self.state.last.pop("explain", None)
            return
        self.state.last["explain"] = ans
        self.msg.value = message("note", score_text(ans))
        show_figure(self.out, explain_figure(ans, self._mask(ans["index"])))

    def refresh(self) -> None:
        """The map is drawn on the button only (it takes a while)."""
