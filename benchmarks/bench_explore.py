"""Latencies of the explorer's answers (notebook 06), once the input has settled (the debounce delay
not counted), on the demo model:

* a gallery of ``--images`` synthetic images embedded once (printed: the one-time cost);
* a **zero-shot** answer for a newly typed class list: the prompts' text encoding plus one product
  (typed templates, and the built-in 24-template ensemble);
* a **search** answer for a newly typed query: one text encoding plus one product;
* an **integrated-gradients** map (``--ig-steps``, 32) and a **Grad-CAM** map of one image, the
  caption's encoding included, and the **contrastive** IG map against a second caption (the
  attribution of the similarity difference);
* the panels' **figures** rendered as the panels show them (two device pixels per CSS pixel): the
  explain figure, and the receptive field of the default query (stage 3, 64 px, 8 images) with
  its figure;
* the **embedding map** redrawn for features already mapped (the t-SNE kept by the features' key),
  against the t-SNE computed once;
* the product alone of one query against ``--big`` (100k) cached embeddings of the real L's width
  (768), the part of a text search over a large gallery that does not depend on the text tower.

The targets of issue 17 are printed beside each figure (demo on the CPU: zero-shot / search under
0.5 s for 1,000 images, a map under 2 s). Each figure is the median of ``--repeats`` runs, every
run with a text not seen before (no memo helps).

    python benchmarks/bench_explore.py [--images 1000] [--repeats 5] [--threads 0] [--training-form]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _median(fn, repeats: int) -> float:
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--training-form", action="store_true",
                    help="the training form of the tower (default: the inference form, as "
                         "notebook 06 loads it with deploy=True)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from unirepclip.analysis import explore as ex
    from unirepclip.data import SHAPES
    from unirepclip.workbook.session import load

    lm = load("UniRepLKNet-Demo", "demo", device="cpu", deploy=not args.training_form)
    print(f"{lm.describe()}, {torch.get_num_threads()} torch threads")
    t0 = time.perf_counter()
    gallery = ex.dataset_gallery("synthetic", n_images=args.images, image_size=lm.image_size)
    emb = ex.embed_gallery(lm.model, gallery, lm.preprocess, progress=False, batch_size=250)
    print(f"{'gallery embedded once':<44} {time.perf_counter() - t0:8.3f} s   "
          f"({len(gallery)} images, one-time)")
    rows = []

    def zeroshot(templates):
        def run(r):
            classes = list(SHAPES[:7]) + [f"thing{r}"]  # a class list not typed before
            clf = ex.text_classifier(lm.model, lm.tokenizer, classes, templates)
            ex.zeroshot_table(emb, clf, classes)
        return run
    typed = ["a photo of a {}.", "a picture of a red {}"]
    rows.append((f"zero-shot, 8 classes x {len(typed)} typed templates",
                 _median(zeroshot(typed), args.repeats), 0.5))
    ensemble = ex.template_set(next(iter(ex.TEMPLATE_SETS)))
    rows.append((f"zero-shot, 8 classes x {len(ensemble)} ensemble templates",
                 _median(zeroshot(ensemble), args.repeats), 0.5))

    def search(r):
        q, _ = ex.encode_queries(lm.model, lm.tokenizer, [f"a picture of a blue star {r}"])
        ex.search_images(q[0], emb, 8, gallery.names)
    rows.append((f"search, text -> top 8 of {len(gallery)} images",
                 _median(search, args.repeats), 0.5))

    image, mask = gallery.image(0), gallery.masks[0]

    def explain(method, **kw):
        def run(r):
            ex.explain(lm.model, lm.tokenizer, image, f"a picture of a red crescent {r}",
                       method=method, transform=lm.preprocess, mask=mask, **kw)
        return run
    rows.append((f"integrated gradients, {args.ig_steps} steps, one image",
                 _median(explain("integrated_gradients", n_steps=args.ig_steps),
                         max(3, args.repeats // 2)), 2.0))
    rows.append(("Grad-CAM (stage 3), one image",
                 _median(explain("gradcam", stage=3), args.repeats), 2.0))

    def contrast(r):
        ex.explain_contrast(lm.model, lm.tokenizer, image, f"a picture of a red crescent {r}",
                            "a picture of a blue star", transform=lm.preprocess,
                            n_steps=args.ig_steps)
    rows.append(("contrastive IG map (two captions), one image",
                 _median(contrast, max(3, args.repeats // 2)), 2.0))
    rows += _figure_rows(ex, lm, image, mask, emb, args.repeats)

    big = np.random.default_rng(0).normal(size=(args.big, 768)).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    query = big[0] + 0.1

    def product(r):
        ex.search_images(query, big, 8)
    rows.append((f"product + top 8 over {args.big:,} x 768 embeddings",
                 _median(product, args.repeats), 0.2))

    print(f"{'answer':<44} {'median':>8}     target")
    for name, seconds, target in rows:
        ok = "ok" if seconds < target else "OVER"
        print(f"{name:<44} {seconds:8.3f} s   < {target:.1f} s  {ok}")


def _figure_rows(ex, lm, image, mask, emb, repeats: int):
    """The panels' figures as they are shown, the ERF's with its computation, and the embedding
    map from the features' memory."""
    from unirepclip.viz import style
    from unirepclip.viz.explorer.figures import (erf_figure, explain_figure, map_figure,
                                                 panel_image)

    style.use_style()
    ans = ex.explain(lm.model, lm.tokenizer, image, "a red crescent", transform=lm.preprocess,
                     mask=mask, n_steps=8)
    rows = [("explain figure rendered for the panel",
             _median(lambda r: panel_image(explain_figure(ans, mask)), repeats), 0.5)]
    rows.append(("ERF (stage 3, 64 px, 8 images) + figure", _median(
        lambda r: panel_image(erf_figure(ex.receptive_field(lm.model, ex.ErfQuery(), seed=r))),
        max(3, repeats // 2)), 2.0))
    t0 = time.perf_counter()
    emap = ex.embedding_map(emb, "tsne", seed=12345)  # a seed no earlier call used
    rows.append((f"t-SNE of {len(emb)} embeddings, computed once", time.perf_counter() - t0,
                 30.0))
    rows.append(("that t-SNE redrawn (kept by features' key)", _median(
        lambda r: panel_image(map_figure(ex.embedding_map(emb, "tsne", seed=12345))), repeats),
        0.5))
    assert emap["method"] == "tsne"
    return rows


if __name__ == "__main__":
    main()
