"""The interactive explorer of notebook 06: ipywidgets wired to :mod:`unirepclip.analysis.explore`.

Five tabs, each a thin layer over functions that return plain data, one module each:

1. :mod:`.zeroshot`, **Zero-shot**: class names (comma separated) and templates (typed, one per
   line, or a built-in ensemble) -> the probabilities of the gallery's images from any image on,
   with their cosine similarities, updated as you type;
2. :mod:`.search`, **Search**: a sentence -> the gallery's top k images with their scores and
   captions (updated as you type); an image -> the captions that fit it best;
3. :mod:`.explain`, **Explain**: an image, a caption and a method -> the attribution map, with
   the object's mask outlined and scored for synthetic images; with a second caption, the
   contrastive map beside it;
4. :mod:`.embedding_map`, **Embedding map**: the gallery's embeddings in 2-D (PCA; t-SNE on a
   button), coloured by class, and the nearest images of a chosen point;
5. :mod:`.receptive_field`, **Receptive field**: a stage and a resolution -> the ERF map and its
   area ratios.

:mod:`.app` lays them out under the image source (:mod:`.source`: the notebook's dataset, a
folder, an uploaded file) as :class:`Explorer`; :mod:`.state` is what the tabs share (the model,
the gallery and its embeddings, the memoized text encodings); :mod:`.common` the helpers every tab
uses (:class:`Debouncer`, messages, the error guard, thumbnails).

How it stays responsive: the gallery's image embeddings are computed once (with a progress bar)
and kept, so a zero-shot or search answer is a text encoding plus one matrix product; typing is
debounced (:class:`Debouncer`: the answer comes once the text has been still for ``debounce_s``);
prompt and query embeddings are memoized; long work (an attribution map, a t-SNE, an ERF) runs on a
button, with a progress indicator. Bad input gives a message in the panel, never a traceback.

The static figures (:mod:`.figures`: :func:`zeroshot_figure`, :func:`hits_figure`,
:func:`explain_figure`, :func:`map_figure`, :func:`erf_figure`) are the ones notebook 06 saves for
its report. They are made without pyplot (see :mod:`.figures` for why: drawn through pyplot, the
receptive-field map came out blank in JupyterLab) and the panels show them at the size they are
rendered for.
"""
from unirepclip.viz.explorer.app import LIVE_NOTE, Explorer
from unirepclip.viz.explorer.common import Debouncer
from unirepclip.viz.explorer.figures import (erf_figure, explain_figure, figure_png, hits_figure,
                                              map_figure, zeroshot_figure)

__all__ = ["Debouncer", "Explorer", "zeroshot_figure", "hits_figure", "explain_figure",
           "map_figure", "erf_figure", "figure_png", "LIVE_NOTE"]
