"""The interactive explorer of notebook 06: ipywidgets wired to :mod:`unirepclip.analysis.explore`.

Five panels (tabs), each a thin layer over one function that returns plain data:

1. **Zero-shot**: class names (comma separated) and templates (typed, one per line, or a built-in
   ensemble) -> the probabilities of each gallery image, updated as you type;
2. **Search**: a sentence -> the gallery's top k images with their scores (updated as you type);
   an image -> the captions that fit it best;
3. **Explain**: an image, a caption and a method -> the attribution map, with the object's mask
   outlined for synthetic images;
4. **Embedding map**: the gallery's embeddings in 2-D (PCA; t-SNE on a button), coloured by class,
   and the nearest images of a chosen point;
5. **Receptive field**: a stage and a resolution -> the ERF map and its area ratios.

How it stays responsive: the gallery's image embeddings are computed once (with a progress bar)
and kept, so a zero-shot or search answer is a text encoding plus one matrix product; typing is
debounced (:class:`Debouncer`: the answer comes once the text has been still for ``debounce_s``);
prompt and query embeddings are memoized; long work (an attribution map, a t-SNE, an ERF) runs on a
button, with a progress indicator. Bad input gives a message in the panel, never a traceback.

The static figures (:func:`zeroshot_figure`, :func:`hits_figure`, :func:`explain_figure`,
:func:`map_figure`, :func:`erf_figure`) are the ones notebook 06 saves for its report.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import html
import io
import threading
import traceback
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from unirepclip.analysis import attribution
from unirepclip.analysis import explore as ex
from unirepclip.viz import style

__all__ = ["Debouncer", "Explorer", "zeroshot_figure", "hits_figure", "explain_figure",
           "map_figure", "erf_figure", "figure_png", "LIVE_NOTE"]

LIVE_NOTE = ("The live explorer opens in JupyterLab (`make lab`), in this cell: there every panel "
             "answers as you type. Below, each panel's default query is answered as a static "
             "figure.")


# ------------------------------------------------------------------------------------------------
# Static figures (the report's, and the panels')
# ------------------------------------------------------------------------------------------------

def figure_png(fig, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def zeroshot_figure(table: Mapping[str, Any], images: Sequence[np.ndarray], *, n_show: int = 6,
                    n_classes: int = 5, title: str = ""):
    """The first ``n_show`` images with bars of their ``n_classes`` most probable classes."""
    probs = np.asarray(table["probabilities"])
    n_show = min(n_show, len(images), len(probs))
    if n_show < 1:
        raise ValueError("zeroshot_figure: no image to show")
    k = min(n_classes, probs.shape[1])
    fig, axes = style.subplots(2, n_show, width="two", aspect=0.45, squeeze=False,
                               gridspec_kw={"height_ratios": [1.0, 0.9]})
    for j in range(n_show):
        axes[0, j].imshow(images[j])
        axes[0, j].set_axis_off()
        axes[0, j].set_title(_short(table["names"][j], 22), fontsize=6)
        order = np.argsort(-probs[j])[:k]
        ax = axes[1, j]
        ax.barh(np.arange(k)[::-1], probs[j, order], color=style.PALETTE[0])
        ax.set_yticks(np.arange(k)[::-1], [_short(table["classnames"][c], 12) for c in order],
                      fontsize=6)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=5)
    if title:
        fig.suptitle(title)
    return fig


def hits_figure(hits: Sequence[Mapping[str, Any]], images: Sequence[np.ndarray], *, title: str,
                highlight: Optional[int] = None):
    """Ranked images with their scores (``highlight``: the index framed in green)."""
    n = len(hits)
    if n < 1:
        raise ValueError("hits_figure: no hit to show")
    fig, axes = style.subplots(1, n, width="two", aspect=min(0.5, 1.6 / n), squeeze=False)
    for ax, hit, img in zip(axes[0], hits, images):
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{hit['rank']}. #{hit['index']}\n{hit['score']:.3f}", fontsize=6)
        if highlight is not None and hit["index"] == highlight:
            for side in ax.spines.values():
                side.set_edgecolor(style.PALETTE[2])
                side.set_linewidth(2.5)
    fig.suptitle(title)
    return fig


def explain_figure(answer: Mapping[str, Any], mask: Optional[np.ndarray] = None, *,
                   title: str = ""):
    """The image as the model saw it and the attribution map over it (mask outlined)."""
    fig, axes = style.subplots(1, 2, width="one", aspect=0.55, squeeze=False)
    a0, a1 = axes[0]
    a0.imshow(answer["input"])
    a0.set_title("input", fontsize=7)
    amap = np.asarray(answer["map"], dtype=np.float64)
    lim = float(np.abs(amap).max()) or 1.0
    a1.imshow(answer["input"], alpha=0.35)
    im = a1.imshow(amap, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.8)
    if mask is not None and np.shape(mask) == amap.shape:
        a1.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="k", linewidths=0.8)
    a1.set_title(answer["method"].replace("_", " "), fontsize=7)
    for ax in (a0, a1):
        ax.set_axis_off()
    fig.colorbar(im, ax=a1, shrink=0.8)
    fig.suptitle(title or _short(f"“{answer['caption']}”", 60), fontsize=7)
    return fig


def map_figure(emap: Mapping[str, Any], *, labels: Optional[np.ndarray] = None,
               classnames: Optional[Sequence[str]] = None, point: Optional[int] = None,
               neighbours: Sequence[int] = (), title: str = ""):
    """The 2-D embedding map coloured by class; ``point`` and its ``neighbours`` marked."""
    import matplotlib.pyplot as plt

    xy = np.asarray(emap["coords"])
    fig, ax = style.subplots(1, 1, width="one", aspect=0.85)
    if labels is not None:
        labels = np.asarray(labels)
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for c in np.unique(labels):
            sel = labels == c
            name = classnames[int(c)] if classnames is not None else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(int(c) % cmap.N), label=name)
        ax.legend(fontsize=5, markerscale=1.5, loc="best", ncol=2)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, color=style.PALETTE[0])
    if len(neighbours):
        nb = xy[list(neighbours)]
        ax.scatter(nb[:, 0], nb[:, 1], s=30, facecolors="none", edgecolors="k", linewidths=0.8)
    if point is not None:
        ax.scatter([xy[point, 0]], [xy[point, 1]], s=60, marker="*", color="k")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{emap['method'].upper()} of the image embeddings", fontsize=7)
    return fig


def erf_figure(rf: Mapping[str, Any], *, title: str = ""):
    """The normalized ERF map (RepLKNet's log10(map + 1) / max) with its t20 / t99 squares."""
    import matplotlib.patches as patches

    a = np.asarray(rf["normalized"])
    fig, ax = style.subplots(1, 1, width="one", aspect=0.85)
    im = ax.imshow(a, cmap="viridis", vmin=0, vmax=1)
    h, w = a.shape
    for key, colour in (("t20", "w"), ("t99", "r")):
        side = rf["area_ratios"][key]["side"]
        ax.add_patch(patches.Rectangle((w // 2 - side / 2, h // 2 - side / 2), side, side,
                                       fill=False, edgecolor=colour, linewidth=0.8,
                                       label=f"{key}: {rf['area_ratios'][key]['area_ratio']:.3f}"))
    ax.legend(fontsize=5, loc="lower right")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or f"ERF of stage {rf['stage']} at {rf['resolution']} px "
                          f"({rf['n_images']} images)", fontsize=7)
    return fig


# ------------------------------------------------------------------------------------------------
# Debouncing
# ------------------------------------------------------------------------------------------------

class Debouncer:
    """Calls ``fn`` once the calls to this object have paused for ``delay`` seconds, with the
    arguments of the last call. In a kernel the delay runs on its asyncio loop (the answer then
    runs on the kernel's main thread, as widget callbacks do); elsewhere on a timer thread.
    ``delay=0`` calls at once."""

    def __init__(self, fn: Callable[..., Any], delay: float = 0.3):
        self.fn, self.delay = fn, float(delay)
        self._handle: Any = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.delay <= 0:
            self.fn(*args, **kwargs)
            return
        with self._lock:
            self.cancel()
            call = functools.partial(self.fn, *args, **kwargs)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                loop = None
            if loop is not None and loop.is_running():
                self._handle = loop.call_later(self.delay, call)
            else:
                self._handle = threading.Timer(self.delay, call)
                self._handle.daemon = True
                self._handle.start()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


# ------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------

def _png_uri(img: np.ndarray, side: int = 96) -> str:
    from PIL import Image

    pil = Image.fromarray(np.asarray(img, dtype=np.uint8))
    pil = pil.resize((side, side), Image.NEAREST) if max(pil.size) < side else pil
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _message(kind: str, text: str) -> str:
    colour = {"error": "#b00020", "note": "#8a5a00", "ok": "#1b5e20"}[kind]
    return f'<div class="unirepclip-msg unirepclip-{kind}" style="color:{colour}">' \
           f'{html.escape(text)}</div>'


class Explorer:
    """The explorer's widgets over one loaded model (``lm``: :func:`unirepclip.workbook.setup`'s
    result) and one gallery (:class:`unirepclip.analysis.explore.Gallery`).

    ``extract_kw`` go to the image and text feature extraction (``cache``, ``batch_size``,
    ``model_ident``, ``precision``); ``erf_kw`` are the ERF panel's defaults (``dataset``,
    ``data_dir``, ``seed``, ``stage``, ``resolution``, ``n_images``). ``widget`` is the app;
    a notebook displays it with :meth:`show`.
    """

    def __init__(self, lm: Any, gallery: ex.Gallery, *, top_k: int = 8, debounce_s: float = 0.3,
                 n_show: int = 8, embeddings: Optional[np.ndarray] = None,
                 extract_kw: Optional[Mapping[str, Any]] = None,
                 erf_kw: Optional[Mapping[str, Any]] = None, query_index: int = 0):
        import ipywidgets as w

        self.w = w
        self.lm, self.top_k, self.n_show = lm, int(top_k), int(n_show)
        self.extract_kw = dict(extract_kw or {})
        self.extract_kw.setdefault("device", lm.device)
        self.extract_kw.setdefault("precision", lm.precision)
        self.text_kw = {k: v for k, v in self.extract_kw.items()
                        if k in ("device", "precision", "cache", "model_ident", "batch_size")}
        self.erf_kw = dict(erf_kw or {})
        self.text_problem = ex.text_tower_problem(lm.model, lm.tokenizer)
        self._queries: "OrderedDict[str, tuple]" = OrderedDict()
        self._classifiers: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._thumbs: Dict[int, str] = {}
        self._map: Optional[Dict[str, Any]] = None
        self.last: Dict[str, Any] = {}  # each panel's last answer (plain data), for tests
        self._debounce = float(debounce_s)
        self._quiet = False  # set while set_gallery fills the inputs: it answers once itself

        self.status = w.HTML()
        self.progress = w.Output()
        self.gallery_msg = w.HTML()
        self._build_source()
        panels = [self._build_zeroshot(), self._build_search(), self._build_explain(),
                  self._build_map(), self._build_erf()]
        self.tabs = w.Tab(children=panels)
        for i, name in enumerate(["Zero-shot", "Search", "Explain", "Embedding map",
                                  "Receptive field"]):
            self.tabs.set_title(i, name)
        self.widget = w.VBox([self.source_box, self.status, self.gallery_msg, self.progress,
                              self.tabs])
        self.widget.add_class("unirepclip-explorer")
        self.set_gallery(gallery, embeddings=embeddings, query_index=query_index)

    # -- display --------------------------------------------------------------------------------

    def show(self) -> None:
        """Display the app; where no live frontend draws widgets (a rendered report) the text
        says where the live version opens."""
        from IPython.display import HTML, display

        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = LIVE_NOTE
        display(bundle, raw=True)
        # a rendered report has no widget state: this line is what it shows in the app's place
        display(HTML(f'<p class="unirepclip-live-note"><i>{html.escape(LIVE_NOTE)}</i></p>'))

    # -- plumbing -------------------------------------------------------------------------------

    def _guard(self, msg_widget, fn: Callable[[], Any]) -> Any:
        """Run a panel's work; an error becomes the panel's message, never a traceback."""
        try:
            out = fn()
        except (ValueError, TypeError, FileNotFoundError, KeyError, IndexError) as e:
            msg_widget.value = _message("error", str(e))
            return None
        except Exception as e:  # noqa: BLE001 (an unforeseen failure: say so in the panel)
            last = traceback.extract_tb(e.__traceback__)[-1]
            msg_widget.value = _message("error", f"{type(e).__name__}: {e} (at "
                                                 f"{last.filename.rsplit('/', 1)[-1]}:"
                                                 f"{last.lineno})")
            return None
        return out

    def _thumb(self, i: int) -> str:
        if i not in self._thumbs:
            self._thumbs[i] = _png_uri(np.asarray(self.gallery.image(i)))
        return self._thumbs[i]

    def _memo(self, store: OrderedDict, key: Any, make: Callable[[], Any], size: int = 64):
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = store[key] = make()
        while len(store) > size:
            store.popitem(last=False)
        return value

    def _encode(self, text: str):
        return self._memo(self._queries, text, lambda: ex.encode_queries(
            self.lm.model, self.lm.tokenizer, [text], **self.text_kw))

    def _grid(self, hits: Sequence[Mapping[str, Any]], css: str) -> str:
        cells = []
        for h in hits:
            cells.append(
                f'<div class="unirepclip-hit" data-index="{h["index"]}" style="display:inline-'
                f'block;margin:3px;text-align:center;width:104px;vertical-align:top">'
                f'<img src="{self._thumb(h["index"])}" width="96" height="96" '
                f'alt="{html.escape(self.gallery.names[h["index"]])}"><br>'
                f'<span style="font-size:10px">{h["rank"]}. #{h["index"]} · {h["score"]:.3f}'
                f'</span></div>')
        return f'<div class="{css}">{"".join(cells)}</div>'

    # -- gallery --------------------------------------------------------------------------------

    def _build_source(self) -> None:
        w = self.w
        self.source = w.Dropdown(options=["notebook dataset", "folder", "uploaded file"],
                                 description="images")
        self.folder = w.Text(placeholder="/path/to/a/folder/of/images", description="folder")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.load_button = w.Button(description="use these images", icon="images")
        self.load_button.on_click(lambda _: self._guard(self.gallery_msg, self._load_source))
        self.source_box = w.HBox([self.source, self.folder, self.upload, self.load_button])
        self._dataset_gallery: Optional[ex.Gallery] = None

    def _load_source(self) -> None:
        kind = self.source.value
        if kind == "notebook dataset":
            if self._dataset_gallery is None:
                raise ValueError("no dataset gallery was given")
            self.set_gallery(self._dataset_gallery, embeddings=self._dataset_embeddings)
        elif kind == "folder":
            self.set_gallery(ex.folder_gallery(self.folder.value))
        else:
            files = list(self.upload.value)
            if not files:
                raise ValueError("no file uploaded yet: choose one with the upload button")
            f = files[0]
            img = ex.uploaded_image(f["content"].tobytes() if hasattr(f["content"], "tobytes")
                                    else f["content"], f.get("name", "upload"))
            self.set_gallery(ex.single_image_gallery(img, f.get("name", "upload")))

    def set_gallery(self, gallery: ex.Gallery, *, embeddings: Optional[np.ndarray] = None,
                    query_index: int = 0) -> None:
        """Use ``gallery``: its embeddings are computed once (progress bar) unless given."""
        if embeddings is None:
            self.progress.clear_output()
            with self.progress:
                embeddings = ex.embed_gallery(self.lm.model, gallery, self.lm.preprocess,
                                              progress=True, **self.extract_kw)
            self.progress.clear_output()
        if self._dataset_gallery is None:
            self._dataset_gallery, self._dataset_embeddings = gallery, embeddings
        self.gallery, self.embeddings = gallery, np.asarray(embeddings, dtype=np.float32)
        self._thumbs, self._map = {}, None
        n = len(gallery)
        note = f"; {len(gallery.skipped)} unreadable files skipped" if gallery.skipped else ""
        self.status.value = _message("ok", f"{self.lm.model_name}: {gallery.description} "
                                           f"({n} embeddings ready{note})")
        if self.text_problem:
            self.status.value += _message("note", self.text_problem)
        self.gallery_msg.value = ""
        self._quiet = True
        try:
            self._fill_inputs(gallery, query_index)
        finally:
            self._quiet = False
        self.update_zeroshot()
        self.update_search()
        self.update_i2t()
        self.update_map()

    def _fill_inputs(self, gallery: ex.Gallery, query_index: int) -> None:
        n = len(gallery)
        for widget in (self.i2t_index, self.explain_index, self.map_point):
            widget.max = n - 1
            widget.value = min(int(query_index), n - 1)
        if gallery.captions is not None:
            self.i2t_captions.value = "\n".join(dict.fromkeys(gallery.captions))
            self.explain_caption.value = gallery.captions[self.explain_index.value]
        elif gallery.classnames:
            self.i2t_captions.value = "\n".join(f"a photo of a {c}." for c in gallery.classnames)
        if not self.query.value.strip():  # a first answer to look at, and to change
            self.query.value = (gallery.captions[int(query_index) % n] if gallery.captions
                                else f"a photo of a {gallery.classnames[0]}."
                                if gallery.classnames else "")
        if gallery.classnames and self.classes.value == "":
            self.classes.value = ", ".join(gallery.classnames)

    # -- 1. zero-shot ---------------------------------------------------------------------------

    def _build_zeroshot(self):
        w = self.w
        self.classes = w.Text(description="classes", placeholder="cat, dog, a red star",
                              layout=w.Layout(width="95%"), continuous_update=True)
        self.template_choice = w.Dropdown(options=["typed below"] + list(ex.TEMPLATE_SETS),
                                          value=next(iter(ex.TEMPLATE_SETS)),
                                          description="templates", layout=w.Layout(width="60%"))
        self.templates = w.Textarea(value="a photo of a {}.\na picture of a {}.",
                                    description="one a line", layout=w.Layout(width="95%"))
        self.zs_msg, self.zs_out = w.HTML(), w.HTML()
        self.zs_out.add_class("unirepclip-zeroshot-table")
        self._zs_debounced = Debouncer(self.update_zeroshot, self._delay())
        for widget in (self.classes, self.templates, self.template_choice):
            widget.observe(self._on_input(self._zs_debounced), names="value")
        return w.VBox([self.classes, self.template_choice, self.templates, self.zs_msg,
                       self.zs_out])

    def _delay(self) -> float:
        return self._debounce

    def _on_input(self, debounced: Debouncer) -> Callable[[Any], None]:
        def handler(_change: Any) -> None:
            if not self._quiet:
                debounced()
        return handler

    def zeroshot_answer(self) -> Dict[str, Any]:
        """The zero-shot table of the current inputs (plain data)."""
        if self.text_problem:
            raise ValueError(self.text_problem)
        classnames = ex.parse_classnames(self.classes.value)
        if self.template_choice.value == "typed below":
            templates: List[Any] = ex.parse_templates(self.templates.value)
            key = (tuple(classnames), tuple(templates))
        else:
            templates = ex.template_set(self.template_choice.value)
            key = (tuple(classnames), self.template_choice.value)
        clf = self._memo(self._classifiers, key, lambda: ex.text_classifier(
            self.lm.model, self.lm.tokenizer, classnames, templates, **self.text_kw), size=16)
        labels = None
        if self.gallery.classnames and classnames == list(self.gallery.classnames):
            labels = self.gallery.labels
        return ex.zeroshot_table(self.embeddings, clf, classnames, names=self.gallery.names,
                                 labels=labels)

    def update_zeroshot(self) -> None:
        table = self._guard(self.zs_msg, self.zeroshot_answer)
        if table is None:
            return
        self.zs_msg.value = ""
        self.last["zeroshot"] = table
        probs = table["probabilities"]
        rows = []
        for i in range(min(self.n_show, len(probs))):
            order = np.argsort(-probs[i])[:3]
            cells = "".join(f"<td>{html.escape(table['classnames'][c])} "
                            f"<b>{probs[i, c]:.1%}</b></td>" for c in order)
            rows.append(f'<tr><td><img src="{self._thumb(i)}" width="48" height="48"></td>'
                        f'<td>{html.escape(table["names"][i])}</td>{cells}</tr>')
        acc = (f"<p>top-1 against the gallery's labels: {table['accuracy']:.1%} "
               f"({len(probs)} images)</p>" if "accuracy" in table else "")
        self.zs_out.value = f"{acc}<table>{''.join(rows)}</table>"

    # -- 2. search ------------------------------------------------------------------------------

    def _build_search(self):
        w = self.w
        self.query = w.Text(description="find", placeholder="a picture of a red star",
                            layout=w.Layout(width="95%"), continuous_update=True)
        self.query.add_class("unirepclip-search-query")
        self.k = w.IntSlider(value=self.top_k, min=1, max=32, description="top k")
        self.search_msg, self.search_out = w.HTML(), w.HTML()
        self.search_out.add_class("unirepclip-search-results")
        self._search_debounced = Debouncer(self.update_search, self._delay())
        self.query.observe(self._on_input(self._search_debounced), names="value")
        self.k.observe(self._on_input(self._search_debounced), names="value")
        self.i2t_index = w.BoundedIntText(value=0, min=0, max=0, description="image")
        self.i2t_captions = w.Textarea(description="captions", layout=w.Layout(width="95%",
                                                                              height="6em"))
        self.i2t_msg, self.i2t_out = w.HTML(), w.HTML()
        self._i2t_debounced = Debouncer(self.update_i2t, self._delay())
        self.i2t_index.observe(self._on_input(self._i2t_debounced), names="value")
        self.i2t_captions.observe(self._on_input(self._i2t_debounced), names="value")
        return w.VBox([w.HTML("<b>text → images</b>"), self.query, self.k, self.search_msg,
                       self.search_out, w.HTML("<b>image → text</b>"), self.i2t_index,
                       self.i2t_captions, self.i2t_msg, self.i2t_out])

    def search_answer(self) -> Dict[str, Any]:
        if self.text_problem:
            raise ValueError(self.text_problem)
        q, notes = self._encode(self.query.value)
        return {"query": self.query.value, "note": notes[0],
                "hits": ex.search_images(q[0], self.embeddings, self.k.value, self.gallery.names)}

    def update_search(self) -> None:
        if not self.query.value.strip():
            self.search_msg.value = _message("note", "type a sentence to search the images")
            self.search_out.value = ""
            return
        ans = self._guard(self.search_msg, self.search_answer)
        if ans is None:
            self.search_out.value = ""
            return
        self.last["search"] = ans
        self.search_msg.value = _message("note", ans["note"]) if ans["note"] else ""
        self.search_out.value = self._grid(ans["hits"], "unirepclip-grid")

    def i2t_answer(self) -> Dict[str, Any]:
        if self.text_problem:
            raise ValueError(self.text_problem)
        texts = [t.strip() for t in self.i2t_captions.value.splitlines() if t.strip()]
        if not texts:
            raise ValueError("the caption list is empty: type one caption per line")
        emb, _ = ex.encode_queries(self.lm.model, self.lm.tokenizer, texts, **self.text_kw)
        i = int(self.i2t_index.value)
        return {"index": i, "hits": ex.search_texts(self.embeddings[i], emb, texts,
                                                    min(self.top_k, len(texts)))}

    def update_i2t(self) -> None:
        ans = self._guard(self.i2t_msg, self.i2t_answer)
        if ans is None:
            return
        self.i2t_msg.value = ""
        self.last["image_to_text"] = ans
        rows = "".join(f"<li>{html.escape(h['name'])} <b>{h['score']:.3f}</b></li>"
                       for h in ans["hits"])
        self.i2t_out.value = (f'<img src="{self._thumb(ans["index"])}" width="64" height="64" '
                              f'style="float:left;margin-right:8px"><ol>{rows}</ol>')

    # -- 3. explain -----------------------------------------------------------------------------

    def _build_explain(self):
        w = self.w
        self.explain_index = w.BoundedIntText(value=0, min=0, max=0, description="image")
        self.explain_caption = w.Text(description="caption", layout=w.Layout(width="95%"),
                                      value="a picture of a red star")
        self.method = w.Dropdown(options=list(attribution.METHODS),
                                 value="integrated_gradients", description="method")
        self.ig_steps = w.IntSlider(value=32, min=4, max=128, step=4, description="IG steps")
        self.gradcam_stage = w.Dropdown(options=[0, 1, 2, 3], value=2, description="stage")
        self.explain_button = w.Button(description="explain", icon="search")
        self.explain_msg, self.explain_out = w.HTML(), w.Image(format="png")
        self.explain_busy = w.HTML()

        def on_index(_):
            if self.gallery.captions is not None:
                self.explain_caption.value = self.gallery.captions[self.explain_index.value]
        self.explain_index.observe(on_index, names="value")
        self.explain_button.on_click(lambda _: self.update_explain())
        return w.VBox([self.explain_index, self.explain_caption,
                       w.HBox([self.method, self.ig_steps, self.gradcam_stage]),
                       w.HBox([self.explain_button, self.explain_busy]), self.explain_msg,
                       self.explain_out])

    def explain_answer(self) -> Dict[str, Any]:
        if self.text_problem:
            raise ValueError(self.text_problem)
        method = self.method.value
        args = ({"n_steps": int(self.ig_steps.value)} if method == "integrated_gradients" else
                {"stage": int(self.gradcam_stage.value)} if method == "gradcam" else {})
        i = int(self.explain_index.value)
        mask = self.gallery.masks[i] if self.gallery.masks is not None else None
        ans = ex.explain(self.lm.model, self.lm.tokenizer, self.gallery.image(i),
                         self.explain_caption.value, method=method, transform=self.lm.preprocess,
                         mask=mask, device=self.lm.device, **args)
        ans["index"] = i
        return ans

    def update_explain(self) -> None:
        self.explain_busy.value = "computing…"
        try:
            ans = self._guard(self.explain_msg, self.explain_answer)
        finally:
            self.explain_busy.value = ""
        if ans is None:
            return
        self.last["explain"] = ans
        parts = [f"similarity {ans['similarity']:.3f}"]
        if "mass_in_mask" in ans:
            parts.append(f"mass in mask {ans['mass_in_mask']:.1%} (chance {ans['chance']:.1%}), "
                         f"pointing game {ans['pointing_game']:.0%}")
        if ans["note"]:
            parts.append(ans["note"])
        self.explain_msg.value = _message("note", "; ".join(parts))
        mask = self.gallery.masks[ans["index"]] if self.gallery.masks is not None else None
        self.explain_out.value = figure_png(explain_figure(ans, mask))

    # -- 4. embedding map -----------------------------------------------------------------------

    def _build_map(self):
        w = self.w
        self.map_method = w.ToggleButtons(options=[("PCA", "pca"), ("t-SNE", "tsne")],
                                          value="pca")
        self.map_button = w.Button(description="draw t-SNE", icon="play")
        self.map_point = w.BoundedIntText(value=0, min=0, max=0, description="point")
        self.map_msg, self.map_out, self.map_nn = w.HTML(), w.Image(format="png"), w.HTML()
        self.map_button.on_click(lambda _: self._draw_tsne())
        self.map_method.observe(lambda _: None if self._quiet else self.update_map(),
                                names="value")
        self.map_point.observe(lambda _: None if self._quiet else self.update_map(),
                               names="value")
        return w.VBox([w.HBox([self.map_method, self.map_button, self.map_point]), self.map_msg,
                       w.HBox([self.map_out, self.map_nn])])

    def _draw_tsne(self) -> None:
        self._quiet = True
        try:
            self.map_method.value = "tsne"
        finally:
            self._quiet = False
        self.map_msg.value = _message("note", "computing t-SNE…")
        self.update_map(compute=True)

    def map_answer(self, compute: bool = True) -> Dict[str, Any]:
        if self._map is None or self._map["method"] != self.map_method.value:
            if not compute:
                raise ValueError("t-SNE takes a while: press 'draw t-SNE'")
            self._map = ex.embedding_map(self.embeddings, self.map_method.value)
        i = int(self.map_point.value)
        return {"map": self._map, "point": i,
                "neighbours": ex.nearest_neighbours(self.embeddings, i, self.top_k,
                                                    self.gallery.names)}

    def update_map(self, compute: bool = False) -> None:
        """Redraw the map; PCA is computed at once, t-SNE only on its button (``compute``)."""
        if not compute and self.map_method.value == "tsne" and (
                self._map is None or self._map["method"] != "tsne"):
            self.map_msg.value = _message("note", "t-SNE takes a while: press 'draw t-SNE'")
            return
        ans = self._guard(self.map_msg, lambda: self.map_answer(
            compute or self.map_method.value == "pca"))
        if ans is None:
            return
        self.map_msg.value = ""
        self.last["embedding_map"] = ans
        nb = [h["index"] for h in ans["neighbours"]]
        self.map_out.value = figure_png(map_figure(
            ans["map"], labels=self.gallery.labels, classnames=self.gallery.classnames,
            point=ans["point"], neighbours=nb))
        self.map_nn.value = "<b>nearest images</b><br>" + self._grid(ans["neighbours"],
                                                                     "unirepclip-neighbours")

    # -- 5. receptive field ---------------------------------------------------------------------

    def _build_erf(self):
        w = self.w
        kw = self.erf_kw
        self.erf_stage = w.Dropdown(options=[0, 1, 2, 3], value=int(kw.get("stage", 3)),
                                    description="stage")
        self.erf_resolution = w.BoundedIntText(value=int(kw.get("resolution", 64)), min=16,
                                               max=2048, description="resolution")
        self.erf_n = w.BoundedIntText(value=int(kw.get("n_images", 8)), min=1, max=500,
                                      description="images")
        self.erf_button = w.Button(description="compute ERF", icon="play")
        self.erf_msg, self.erf_out, self.erf_table = w.HTML(), w.Image(format="png"), w.HTML()
        self.erf_progress = w.Output()
        self.erf_button.on_click(lambda _: self.update_erf())
        return w.VBox([w.HBox([self.erf_stage, self.erf_resolution, self.erf_n,
                               self.erf_button]), self.erf_progress, self.erf_msg,
                       w.HBox([self.erf_out, self.erf_table])])

    def erf_answer(self) -> Dict[str, Any]:
        kw = self.erf_kw
        with self.erf_progress:
            return ex.receptive_field(self.lm.model, int(self.erf_stage.value),
                                      int(self.erf_resolution.value),
                                      dataset=kw.get("dataset", "synthetic"),
                                      n_images=int(self.erf_n.value),
                                      data_dir=kw.get("data_dir", ""), seed=kw.get("seed", 0),
                                      progress=True)

    def update_erf(self) -> None:
        self.erf_msg.value = _message("note", "computing the ERF…")
        self.erf_progress.clear_output()
        ans = self._guard(self.erf_msg, self.erf_answer)
        self.erf_progress.clear_output()
        if ans is None:
            return
        self.erf_msg.value = ""
        self.last["erf"] = ans
        self.erf_out.value = figure_png(erf_figure(ans))
        rows = "".join(f"<tr><td>{k}</td><td>{v['side']}</td><td>{v['area_ratio']:.4f}</td></tr>"
                       for k, v in ans["area_ratios"].items())
        self.erf_table.value = ("<table><tr><th>share</th><th>side</th><th>area ratio</th></tr>"
                                f"{rows}</table>")
