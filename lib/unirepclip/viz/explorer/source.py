"""Where the explorer's images come from: the notebook's dataset, a folder of the user's own, or
an uploaded file."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import guard

__all__ = ["SourcePicker", "DATASET", "FOLDER", "UPLOAD"]

DATASET, FOLDER, UPLOAD = "notebook dataset", "folder", "uploaded file"


class SourcePicker:
    """The ``source`` choice, the ``folder`` box and the ``upload`` button; ``load_button`` hands
    the chosen gallery to ``use(gallery, embeddings=...)`` (errors in ``msg``). The notebook's
    dataset is the first gallery the app was given (:meth:`remember`)."""

    def __init__(self, use: Callable[..., None]):
        import ipywidgets as w

        self.use = use
        self.source = w.Dropdown(options=[DATASET, FOLDER, UPLOAD], description="images")
        self.folder = w.Text(placeholder="/path/to/a/folder/of/images", description="folder")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.load_button = w.Button(description="use these images", icon="images")
        self.msg = w.HTML()
        self.load_button.on_click(lambda _: guard(self.msg, self.load))
        self.widget = w.HBox([self.source, self.folder, self.upload, self.load_button])
        self._dataset: Optional[Tuple[ex.Gallery, np.ndarray]] = None

    def remember(self, gallery: ex.Gallery, embeddings: np.ndarray) -> None:
        """Keep the first gallery as the notebook's dataset."""
        if self._dataset is None:
            self._dataset = (gallery, embeddings)

    def load(self) -> None:
        """Use the images of the chosen source."""
        kind = self.source.value
        if kind == DATASET:
            if self._dataset is None:
                raise ValueError("no dataset gallery was given")
            gallery, embeddings = self._dataset
            self.use(gallery, embeddings=embeddings)
        elif kind == FOLDER:
            self.use(ex.folder_gallery(self.folder.value))
        else:
            self.use(self._uploaded())

    def _uploaded(self) -> ex.Gallery:
        files = list(self.upload.value)
        if not files:
            raise ValueError("no file uploaded yet: choose one with the upload button")
        f = files[0]
        content: Any = f["content"]
        name = f.get("name", "upload")
        img = ex.uploaded_image(content.tobytes() if hasattr(content, "tobytes") else content,
                                name)
        return ex.single_image_gallery(img, name)
