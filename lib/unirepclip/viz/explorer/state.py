"""What the explorer's panels share: the loaded model, the current gallery with its embeddings,
the memoized text encodings, the thumbnails, and each panel's last answer."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from unirepclip.analysis import explore as ex
from unirepclip.viz.explorer.common import hit_grid, png_uri

__all__ = ["ExplorerState", "TEXT_KEYS"]

#: The feature-extraction keywords the text encodings take.
TEXT_KEYS = ("device", "precision", "cache", "model_ident", "batch_size")


class ExplorerState:
    """The explorer's shared state over one loaded model (``lm``:
    :func:`unirepclip.workbook.setup`'s result).

    ``extract_kw`` go to the image and text feature extraction (``cache``, ``batch_size``,
    ``model_ident``, ``precision``, ``device``; the last two default to the model's). A gallery
    chosen in the app is read in the kernel's own process: ``num_workers`` is dropped, so no
    DataLoader worker is forked from a kernel whose widget callbacks may run on threads.
    ``quiet`` is set while a new gallery fills the panels' inputs (then they answer once, not once
    per input); ``last`` holds each panel's last answer as plain data.
    """

    def __init__(self, lm: Any, extract_kw: Optional[Mapping[str, Any]] = None):
        self.lm = lm
        self.extract_kw = {k: v for k, v in dict(extract_kw or {}).items() if k != "num_workers"}
        self.extract_kw.setdefault("device", lm.device)
        self.extract_kw.setdefault("precision", lm.precision)
        self.text_kw = {k: v for k, v in self.extract_kw.items() if k in TEXT_KEYS}
        self.text_problem = ex.text_tower_problem(lm.model, lm.tokenizer)
        self.gallery: Optional[ex.Gallery] = None
        self.embeddings = np.zeros((0, 0), dtype=np.float32)
        self.last: Dict[str, Any] = {}
        self.quiet = False
        self._thumbs: Dict[int, str] = {}
        # per app: the memos hold this model's encodings (only answers, never errors)
        self.encode = functools.lru_cache(maxsize=64)(self._encode)
        self.classifier = functools.lru_cache(maxsize=16)(self._classifier)

    def embed(self, gallery: ex.Gallery) -> np.ndarray:
        """The gallery's image embeddings (with a progress bar)."""
        return ex.embed_gallery(self.lm.model, gallery, self.lm.preprocess, progress=True,
                                **self.extract_kw)

    def use(self, gallery: ex.Gallery, embeddings: np.ndarray) -> None:
        """Make ``gallery`` (with its ``embeddings``) the one the panels look at."""
        self.gallery, self.embeddings = gallery, np.asarray(embeddings, dtype=np.float32)
        self._thumbs = {}

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        """Inputs changed inside this block start no answer."""
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False

    def on_input(self, answer: Callable[[], Any]) -> Callable[[Any], None]:
        """A widget observer that calls ``answer`` unless the state is quiet."""
        def handler(_change: Any) -> None:
            if not self.quiet:
                answer()
        return handler

    def require_text(self) -> None:
        """Refuse a text query when the model cannot encode text (the panel shows why)."""
        if self.text_problem:
            raise ValueError(self.text_problem)

    def thumb(self, i: int) -> str:
        """Image ``i``'s thumbnail as a data URI (made once per gallery)."""
        if i not in self._thumbs:
            self._thumbs[i] = png_uri(np.asarray(self.gallery.image(i)))
        return self._thumbs[i]

    def grid(self, hits: Sequence[Mapping[str, Any]], css: str) -> str:
        """Ranked gallery images as an HTML grid of thumbnails with their captions (their names
        where the gallery has none)."""
        return hit_grid(hits, self.thumb, self.gallery.names, css, self.gallery.captions)

    def _encode(self, text: str) -> Tuple[np.ndarray, list]:
        return ex.encode_queries(self.lm.model, self.lm.tokenizer, [text], **self.text_kw)

    def _classifier(self, classnames: Tuple[str, ...], templates: Union[str, Tuple[str, ...]]
                    ) -> np.ndarray:
        """Zero-shot weights; ``templates``: typed templates or a built-in ensemble's name."""
        chosen = ex.template_set(templates) if isinstance(templates, str) else list(templates)
        return ex.text_classifier(self.lm.model, self.lm.tokenizer, list(classnames), chosen,
                                  **self.text_kw)
