"""The Receptive field tab: a stage, a resolution and a number of images -> the effective
receptive field (on a button, with a progress bar) and its area ratios."""
from __future__ import annotations

import dataclasses
import html
from typing import Any, Dict

from unirepclip.analysis import explore as ex
from unirepclip.models.towers import tower_of
from unirepclip.viz.explorer.common import clear_figure, guard, message, show_figure
from unirepclip.viz.explorer.figures import erf_figure
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ErfPanel", "MAX_RESOLUTION", "ratio_table"]

#: The largest resolution the panel computes (pixels): the map's memory grows with its square.
MAX_RESOLUTION = 2048


def ratio_table(area_ratios: Dict[str, Dict[str, Any]]) -> str:
    """The area ratios as an HTML table; a square that holds the whole image says so (its
    nominal side is past the image: 65 on a 64-pixel one)."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        f"<td>{'whole image' if ex.covers_image(v) else v['side']}</td>"
        f"<td>{v['area_ratio']:.4f}</td></tr>" for k, v in area_ratios.items())
    return ('<table class="unirepclip-erf-table"><tr><th>share</th><th>square side (px)</th>'
            f"<th>area ratio</th></tr>{rows}</table>")


class ErfPanel:
    """``stage``, ``resolution`` and ``n_images`` in (starting from the default query's
    :class:`~unirepclip.analysis.explore.ErfQuery`, whose dataset the images come from); the
    ``button`` draws the map (``out``, a PNG at its own size) and the table of area ratios
    (``table``). A resolution outside :data:`~unirepclip.analysis.explore.MIN_RESOLUTION` ..
    :data:`MAX_RESOLUTION` is refused with the bound, never changed behind the user's back."""

    title = "Receptive field"

    def __init__(self, state: ExplorerState, options: ex.QueryOptions):
        import ipywidgets as w

        self.state, self.setting, self.seed = state, options.erf, options.seed
        # the tower's own depths: four stages for UniRepLKNet, one per block for a ViT
        tower = tower_of(state.lm.model)
        self.stage = w.Dropdown(options=list(range(tower.depth_count)), value=self.setting.stage,
                                description=tower.unit)
        # IntText, not BoundedIntText: a bounded box silently replaces a value out of its range
        self.resolution = w.IntText(value=self.setting.resolution, description="resolution")
        self.n_images = w.BoundedIntText(value=self.setting.n_images, min=1, max=500,
                                         description="images")
        self.button = w.Button(description="compute ERF", icon="play")
        self.msg, self.out, self.table = w.HTML(), w.Image(format="png"), w.HTML()
        self.out.add_class("unirepclip-erf-map")
        self.progress = w.Output()
        self.button.on_click(lambda _: self.update())
        self.widget = w.VBox([w.HBox([self.stage, self.resolution, self.n_images, self.button]),
                              self.progress, self.msg, w.HBox([self.out, self.table])])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """The ERF's images are the dataset's, whatever the gallery."""

    def answer(self) -> Dict[str, Any]:
        r = int(self.resolution.value)
        if r > MAX_RESOLUTION:
            raise ValueError(f"resolution {r} px: the panel computes at most {MAX_RESOLUTION} px")
        if r < ex.MIN_RESOLUTION:
            raise ValueError(f"resolution {r} px: the smallest the ERF takes is "
                             f"{ex.MIN_RESOLUTION} px")
        query = dataclasses.replace(self.setting, stage=int(self.stage.value), resolution=r,
                                    n_images=int(self.n_images.value))
        with self.progress:
            return ex.receptive_field(self.state.lm.model, query, seed=self.seed, progress=True)

    def update(self) -> None:
        self.msg.value = message("note", "computing the ERF…")
        self.progress.clear_output()
        ans = guard(self.msg, self.answer)
        self.progress.clear_output()
        if ans is None:  # the map and table on screen are no longer this input's
            clear_figure(self.out)
            self.table.value = ""
            self.state.last.pop("erf", None)
            return
        self.msg.value = ""
        self.state.last["erf"] = ans
        show_figure(self.out, erf_figure(ans))
        self.table.value = ratio_table(ans["area_ratios"])

    def refresh(self) -> None:
        """The ERF is computed on the button only (it takes a while)."""
