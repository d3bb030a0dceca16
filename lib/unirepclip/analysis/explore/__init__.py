"""What the interactive explorer (notebook 06, :mod:`unirepclip.viz.explorer`) computes, as plain
data: each panel's answer is one function here, tested on its own; the widgets only wire inputs
to these functions and draw what they return.

- :mod:`.gallery`: the images the panels look at (:class:`Gallery`): a dataset's
  (:func:`dataset_gallery`), a folder of the user's own (:func:`folder_gallery`) or an uploaded
  file (:func:`uploaded_image`, :func:`single_image_gallery`), and their image embeddings,
  computed once (:func:`embed_gallery`);
- :mod:`.zeroshot`: the zero-shot playground (:func:`parse_classnames`,
  :func:`parse_templates`, :data:`TEMPLATE_SETS`, :func:`text_classifier`,
  :func:`zeroshot_table`);
- :mod:`.search`: text -> images and image -> text (:func:`encode_queries`, :func:`rank`,
  :func:`search_images`, :func:`search_texts`) and :func:`text_tower_problem` (why the text
  panels cannot work with a model, or None);
- :mod:`.explanation`: :func:`explain`, the attribution map of one image for one caption,
  :func:`explain_contrast`, the contrastive map against a second one, both scored by
  :func:`score_explanation` (:func:`mask_scores`);
- :mod:`.projection`: the embedding map (:func:`embedding_map`, computed once per
  :func:`features_key`; :func:`cached_embedding_map`, :func:`nearest_neighbours`,
  :func:`nearest_point`);
- :mod:`.receptive`: :func:`receptive_field`, the ERF of one stage (a ViT's block) at one
  resolution, :func:`covers_image` (a square that holds the whole image), and for a tower that
  runs at one size only (a ViT) :func:`size_note` and :func:`runnable_resolution`;
- :mod:`.options`: :class:`QueryOptions` (with :class:`ErfQuery` and its
  :data:`MIN_RESOLUTION`), every panel's default query;
- :mod:`.defaults`: :func:`default_queries`, those queries answered; notebook 06 records them
  under ``explore.*``.

Bad input raises ``ValueError`` with a message fit to show in the panel (the explorer shows it
instead of a traceback).
"""
from unirepclip.analysis.explore.defaults import default_queries
from unirepclip.analysis.explore.explanation import (explain, explain_contrast, mask_scores,
                                                      score_explanation)
from unirepclip.analysis.explore.gallery import (Gallery, dataset_gallery, embed_gallery,
                                                  folder_gallery, single_image_gallery,
                                                  uploaded_image)
from unirepclip.analysis.explore.options import MIN_RESOLUTION, ErfQuery, QueryOptions
from unirepclip.analysis.explore.projection import (MAP_METHODS, MAP_TITLES,
                                                     cached_embedding_map, embedding_map,
                                                     features_key, nearest_neighbours,
                                                     nearest_point)
from unirepclip.analysis.explore.receptive import (covers_image, receptive_field,
                                                    runnable_resolution, size_note)
from unirepclip.analysis.explore.search import (encode_queries, rank, search_images,
                                                 search_texts, text_tower_problem)
from unirepclip.analysis.explore.zeroshot import (TEMPLATE_SETS, parse_classnames,
                                                   parse_templates, template_set,
                                                   text_classifier, zeroshot_table)

__all__ = [
    "Gallery", "dataset_gallery", "folder_gallery", "uploaded_image", "single_image_gallery",
    "embed_gallery", "TEMPLATE_SETS", "template_set", "parse_classnames", "parse_templates",
    "text_classifier", "zeroshot_table", "encode_queries", "rank", "search_images",
    "search_texts", "text_tower_problem", "explain", "explain_contrast", "score_explanation",
    "mask_scores", "MAP_METHODS", "MAP_TITLES",
    "embedding_map", "cached_embedding_map", "features_key", "nearest_neighbours",
    "nearest_point", "receptive_field", "covers_image", "size_note", "runnable_resolution", "ErfQuery", "QueryOptions",
    "MIN_RESOLUTION", "default_queries",
]
