"""A measurement, not a benchmark (``make bench`` does not run it): the Navon shape bias of the
demo and its 3x3 control, with bootstrap intervals, at several figure sizes; and the kernel-surgery
curve of the demo at 64 px (zero-shot shape accuracy on the synthetic test split and the Navon
shape bias after each cut), every cut marked when it is a no-op by construction.

    python benchmarks/measure_cue_conflict.py [--n-test 400] [--stages 1,2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unirepclip import create_model, get_tokenizer
from unirepclip.analysis.cue_conflict import (
    describe_difference, navon_classifier, navon_decisions, navon_summary, paired_difference)
from unirepclip.analysis.surgery import Cut, cut_kernels, cut_plan, inference_form
from unirepclip.data.navon import navon_set
from unirepclip.data.sets import val_transform
from unirepclip.data.synthetic import SyntheticShapes
from unirepclip.eval.zeroshot import encode_images, zeroshot_logits
from unirepclip.models.pretrained import CONTROL_MODEL_NAME, MODEL_NAME, resolve_checkpoint

# (image size, global_scale, element_scale): the demo was trained at 64 px on objects 0.3-0.55 of
# the side (19-35 px), so no size puts both levels in that range: these span the trade-off
SETTINGS = [(64, 0.95, 0.15), (64, 0.95, 0.2), (64, 0.6, 0.1), (96, 0.6, 0.12), (128, 0.95, 0.15)]


def load(name):
    model = create_model(name, resolve_checkpoint("demo", name))
    tok = get_tokenizer(name)
    return model, navon_classifier(model, tok)


def accuracy(model, classifier, test, size=64):
    t = val_transform(model, size)
    x = torch.stack([t(im) for im, _ in test])
    feats, _ = encode_images(model, [x[i:i + 100] for i in range(0, len(x), 100)], progress=False)
    return float((zeroshot_logits(feats, classifier).argmax(1) == np.asarray(test.samples.shape)).mean())


def fmt(s):
    iv = s.get("interval")
    bias = (f"{s['shape_bias']:.3f} [{iv.low:.3f}, {iv.high:.3f}] ({iv.method}"
            + (f", {iv.n_undefined} resamples without decisions left out" if iv.n_undefined
               else "") + ")") if iv else "-"
    return (f"bias {bias}  global {s['global_rate']:.2f} local {s['local_rate']:.2f} other "
            f"{s['other_rate']:.2f} | plain acc {s['plain_accuracy']:.2f} | elements alone acc "
            f"{s['elements_alone_accuracy']:.2f} (element {s['element_px']} px)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--stages", default="1,2", help="surgery stages; \"\" skips the surgery")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    models = {n: load(n) for n in (MODEL_NAME, CONTROL_MODEL_NAME)}
    test = SyntheticShapes("test", n=args.n_test, image_size=64, seed=0, target="shape")
    for name, (m, clf) in models.items():
        print(f"{name}: zero-shot shape accuracy on {len(test)} test images: "
              f"{accuracy(m, clf, test):.3f}")
    for size, gs, es in SETTINGS:
        stim = navon_set(image_size=size, global_scale=gs, element_scale=es, colours=("blue", "red", "green"))
        dec = {n: navon_decisions(m, clf, stim) for n, (m, clf) in models.items()}
        sums = {n: navon_summary(stim, d) for n, d in dec.items()}
        print(f"\n== Navon at {size} px: {stim.settings}, "
              f"{len(stim.select('conflict'))} conflict figures")
        for n, s in sums.items():
            print(f"  {n:30s} {fmt(s)}")
        diff = paired_difference(stim, dec[MODEL_NAME], dec[CONTROL_MODEL_NAME])
        print("  " + describe_difference("the demo", sums[MODEL_NAME]["interval"], "the 3x3 control",
                                         sums[CONTROL_MODEL_NAME]["interval"], diff))
    m, clf = models[MODEL_NAME]
    stim = navon_set(image_size=64, element_scale=0.15, colours=("blue", "red", "green"))
    base = inference_form(m)
    print(f"\n== surgery at 64 px (Navon element_scale 0.15); uncut (inference form): acc "
          f"{accuracy(base, clf, test):.3f}, {fmt(navon_summary(stim, navon_decisions(base, clf, stim)))}")
    for stage in [int(s) for s in args.stages.split(",") if s]:
        for p in cut_plan(m, stage, 64) + [{"cut": Cut(stage, drop_dilated=True), "noop": False}]:
            cm = cut_kernels(m, p["cut"])
            s = navon_summary(stim, navon_decisions(cm, clf, stim))
            print(f"  {p['cut'].label:36s} noop={str(p['noop']):5s} acc {accuracy(cm, clf, test):.3f}  {fmt(s)}")
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
