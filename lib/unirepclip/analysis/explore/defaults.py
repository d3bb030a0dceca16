"""Every panel's default query on a gallery, answered: what notebook 06 shows and records under
``explore.*``.

The queries (:class:`~unirepclip.analysis.explore.options.QueryOptions` says which image, how many
hits, which methods): zero-shot with the gallery's own class names and the built-in ensemble that
fits them; text -> images with the query image's caption (or class prompt); image -> text of the
same image over the gallery's distinct captions; its attribution map for that caption; the
embedding map with that image's nearest neighbours; the ERF of one stage at one resolution.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch.nn as nn

from unirepclip.analysis.explore.explanation import explain
from unirepclip.analysis.explore.gallery import Gallery
from unirepclip.analysis.explore.options import QueryOptions
from unirepclip.analysis.explore.projection import embedding_map, nearest_neighbours
from unirepclip.analysis.explore.receptive import (receptive_field, runnable_resolution,
                                                    size_note)
from unirepclip.analysis.explore.search import (encode_queries, rank, search_images,
                                                 search_texts)
from unirepclip.analysis.explore.zeroshot import (TEMPLATE_SETS, template_set,
                                                   text_classifier, zeroshot_table)

__all__ = ["default_queries"]


@dataclasses.dataclass
class _Query:
    """What every panel's default query reads."""

    model: nn.Module
    tokenizer: Callable
    gallery: Gallery
    embeddings: np.ndarray
    options: QueryOptions
    text_kw: Dict[str, Any]

    @property
    def index(self) -> int:
        return self.options.query_index

    @property
    def classnames(self) -> List[str]:
        return self.gallery.classnames or ["object"]

    @functools.cached_property
    def captions(self) -> List[str]:
        """The gallery's captions, or a class prompt for each image."""
        if self.gallery.captions is not None:
            return list(self.gallery.captions)
        return [f"a photo of a {self.classnames[int(y)]}." for y in self.gallery.labels]


def default_queries(model: nn.Module, tokenizer: Callable, gallery: Gallery,
                    image_embeddings: np.ndarray, *, transform: Callable,
                    options: QueryOptions = QueryOptions(), **text_kw: Any) -> Dict[str, Any]:
    """Every panel's default query on the gallery, answered (``text_kw``, such as ``device`` and
    ``precision``, go to the text encoding; ``transform`` is the model's preprocessing).

    Returns ``{"answers": the full answers (maps, tables), "record": the flat figures for
    ``results.record("explore", ...)``}``.
    """
    n = len(gallery)
    if not options.query_index < n:
        raise ValueError(f"query_index={options.query_index}: the gallery has {n} images")
    text_kw.setdefault("progress", False)
    c = _Query(model, tokenizer, gallery, image_embeddings, options, text_kw)
    table, zs_record = _zeroshot(c)
    found, search_record, i2t_record = _search(c)
    expl, explain_record = _explain(c, transform)
    emap, nn_hits, map_record = _embedding_map(c)
    rf, erf_note = _receptive(model, options)
    record: Dict[str, Any] = {
        "n_images": n, "zeroshot": zs_record, "search": search_record,
        "image_to_text": i2t_record, "explain": explain_record, "embedding_map": map_record,
        "erf": {"stage": rf["stage"], "resolution": rf["resolution"], "n_images": rf["n_images"],
                "area_ratio": {k: v["area_ratio"] for k, v in rf["area_ratios"].items()}},
    }
    if erf_note:
        record["erf"]["note"] = erf_note
    answers = {"table": table, **found, "explain": expl, "map": emap, "neighbours": nn_hits,
               "erf": rf, "classnames": c.classnames, "query_index": c.index}
    return {"answers": answers, "record": record}


def _receptive(model: nn.Module, options: QueryOptions) -> Tuple[Dict[str, Any], str]:
    """The ERF of the default setting; a tower that runs at one size only (a ViT) is measured
    at that size, and the note says so (never a traceback)."""
    q = options.erf
    size = runnable_resolution(model, q.resolution)
    note = "" if size == q.resolution else \
        f"{size_note(model, q.resolution)}: the ERF is measured at {size} px"
    return receptive_field(model, dataclasses.replace(q, resolution=size),
                           seed=options.seed), note


def _zeroshot(c: _Query) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The gallery's class names with the built-in ensemble that fits the gallery."""
    classnames = c.classnames
    templates = (template_set(next(iter(TEMPLATE_SETS))) if c.gallery.kind == "synthetic"
                 else template_set("CLIP ImageNet, simple (7)"))
    clf = text_classifier(c.model, c.tokenizer, classnames, templates, **c.text_kw)
    table = zeroshot_table(c.embeddings, clf, classnames, names=c.gallery.names,
                           labels=c.gallery.labels)
    record = {"n_classes": len(classnames), "n_templates": len(templates),
              "first_image_class": classnames[int(table["predicted"][c.index])],
              "first_image_probability": float(table["confidence"][c.index])}
    if "accuracy" in table:
        record["acc1"] = table["accuracy"]
    return table, record


def _search(c: _Query) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """Text -> images with the query image's caption; image -> text over the distinct captions
    (repeated captions would fill the top k)."""
    captions, top_k, n = c.captions, c.options.top_k, len(c.gallery)
    query = captions[c.index]
    q, notes = encode_queries(c.model, c.tokenizer, [query], **c.text_kw)
    hits = search_images(q[0], c.embeddings, top_k, c.gallery.names)
    distinct = list(dict.fromkeys(captions))
    cap_emb, _ = encode_queries(c.model, c.tokenizer, distinct, **c.text_kw)
    text_hits = search_texts(c.embeddings[c.index], cap_emb, distinct, top_k)
    own_rank = next((h["rank"] for h in rank(c.embeddings @ q[0], n)
                     if h["index"] == c.index), None)
    top_texts = [h["name"] for h in rank(c.embeddings[c.index] @ cap_emb.T, len(distinct),
                                         distinct)]
    search = {"query": query, "top_k": int(min(top_k, n)), "own_image_rank": own_rank,
              "top1_score": hits[0]["score"],
              "hits_with_query_caption": int(sum(captions[h["index"]] == query for h in hits))}
    image_to_text = {"n_captions": len(distinct), "top1": text_hits[0]["name"],
                     "own_caption_rank": top_texts.index(query) + 1}
    found = {"query": query, "query_note": notes[0], "hits": hits, "text_hits": text_hits}
    return found, search, image_to_text


def _explain(c: _Query, transform: Callable) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The query image's attribution map for its caption, scored against its mask if known."""
    method, i = c.options.explain_method, c.index
    mask = c.gallery.masks[i] if c.gallery.masks is not None else None
    expl = explain(c.model, c.tokenizer, c.gallery.image(i), c.captions[i], method=method,
                   transform=transform, mask=mask, device=c.text_kw.get("device"),
                   **c.options.explain_args)
    record: Dict[str, Any] = {"method": method, "similarity": expl["similarity"]}
    for key in ("mass_in_mask", "pointing_game", "chance"):
        if key in expl:
            record[key] = float(expl[key])
    return expl, record


def _embedding_map(c: _Query) -> Tuple[Dict[str, Any], List[Dict[str, Any]], Dict[str, Any]]:
    """The 2-D map and the query image's nearest neighbours (how many share its class)."""
    emap = embedding_map(c.embeddings, c.options.map_method, seed=c.options.seed)
    nn_hits = nearest_neighbours(c.embeddings, c.index, c.options.top_k, c.gallery.names)
    record: Dict[str, Any] = {"method": emap["method"]}
    if emap["method"] == "pca":
        record["explained_variance_ratio"] = emap["explained_variance_ratio"]
    labels = c.gallery.labels
    if labels is not None:
        same = [int(labels[h["index"]] == labels[c.index]) for h in nn_hits]
        record["neighbours_same_class"] = float(np.mean(same))
    return emap, nn_hits, record
