"""The Receptive field tab: a stage, a resolution and a number of images -> the effective
receptive field (on a button, with a progress bar) and its area ratios."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import guard, message
from unirepclip.viz.explorer.figures import erf_figure, figure_png
from unirepclip.viz.explorer.state import ExplorerState

__all__ = ["ErfPanel"]


class ErfPanel:
    """``stage``, ``resolution`` and ``n_images`` in (starting from the default query's
    :class:`~unirepclip.analysis.explore.ErfQuery`, whose dataset the images come from); the
    ``button`` draws the map (``out``, a PNG) and the table of area ratios (``table``)."""

    title = "Receptive field"

    def __init__(self, state: ExplorerState, options: ex.QueryOptions):
        import ipywidgets as w

        self.state, self.setting, self.seed = state, options.erf, options.seed
        self.stage = w.Dropdown(options=[0, 1, 2, 3], value=self.setting.stage,
                                description="stage")
        self.resolution = w.BoundedIntText(value=self.setting.resolution, min=16, max=2048,
                                           description="resolution")
        self.n_images = w.BoundedIntText(value=self.setting.n_images, min=1, max=500,
                                         description="images")
        self.button = w.Button(description="compute ERF", icon="play")
        self.msg, self.out, self.table = w.HTML(), w.Image(format="png"), w.HTML()
        self.progress = w.Output()
        self.button.on_click(lambda _: self.update())
        self.widget = w.VBox([w.HBox([self.stage, self.resolution, self.n_images, self.button]),
                              self.progress, self.msg, w.HBox([self.out, self.table])])

    def fill(self, gallery: ex.Gallery, query_index: int) -> None:
        """The ERF's images are the dataset's, whatever the gallery."""

    def answer(self) -> Dict[str, Any]:
        query = dataclasses.replace(self.setting, stage=int(self.stage.value),
                                    resolution=int(self.resolution.value),
                                    n_images=int(self.n_images.value))
        with self.progress:
            return ex.receptive_field(self.state.lm.model, query, seed=self.seed, progress=True)

    def update(self) -> None:
        self.msg.value = message("note", "computing the ERF…")
        self.progress.clear_output()
        ans = guard(self.msg, self.answer)
        self.progress.clear_output()
        if ans is None:
            return
        self.msg.value = ""
        self.state.last["erf"] = ans
        self.out.value = figure_png(erf_figure(ans))
        rows = "".join(f"<tr><td>{k}</td><td>{v['side']}</td><td>{v['area_ratio']:.4f}</td></tr>"
                       for k, v in ans["area_ratios"].items())
        self.table.value = ("<table><tr><th>share</th><th>side</th><th>area ratio</th></tr>"
                            f"{rows}</table>")

    def refresh(self) -> None:
        """The ERF is computed on the button only (it takes a while)."""
