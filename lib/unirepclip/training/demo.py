"""The demo CLIP: a small UniRepLKNet CLIP trained on the synthetic world, on two CPU cores.

``python -m unirepclip train-demo --out DIR`` runs the recipe that produced the checkpoint shipped in
``unirepclip/models/weights/`` (``--steps`` / ``--train-size`` shrink it for a quick check);
``python -m unirepclip evaluate-demo CKPT`` re-measures a checkpoint's figures on the test split.

What the recipe does, and why:

* the world: one object per 64 px image spanning 30-55% of the side (object size relative to the
  stride-4 stem is what decides whether shape can be learned at all at this scale), on varied
  backgrounds; captions from the training phrasings; test captions and zero-shot prompts come from
  held-out phrasings the model never saw;
* the model: the registered ``UniRepLKNet-Demo`` config, large dilated kernels kept in stages 1-3
  (``--model UniRepLKNet-Demo-SmallKernel`` trains the 3x3 control of notebook 03 the same way);
* the loss: CLIP's symmetric InfoNCE (open_clip's ``ClipLoss``) with a learnable temperature;
* the optimizer: AdamW, linear warm-up then cosine decay (torch's ``LinearLR`` then
  ``CosineAnnealingLR``), no weight decay on norms, biases, layer scales and GRN parameters (timm's
  ``param_groups_weight_decay``), a fixed number of steps (not a time budget) so that a rerun with
  the same seed on the same machine gives the same weights;
* the checkpoint: open_clip's layout in ``.safetensors`` (fp16 to keep it small), with a JSON of the
  recipe, data seed, package version and the figures measured on the *stored* (fp16-rounded) weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from open_clip.loss import ClipLoss
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from safetensors.torch import save_file
from timm.optim import param_groups_weight_decay
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from tqdm.auto import tqdm

from unirepclip import __version__
from unirepclip.data import SyntheticWorld, zeroshot_task
from unirepclip.eval import retrieval
from unirepclip.models.factory import create_model, get_tokenizer
from unirepclip.models.pretrained import (MODEL_NAME, WEIGHTS_DIR, checkpoint_name,
                                          demo_checkpoint_path, demo_metadata, demo_model_names)
from unirepclip.utils import file_sha256, normalize_images


@dataclasses.dataclass
class Recipe:
    model: str = MODEL_NAME  # or the 3x3 control, or ViT-Demo: the same recipe trains them
    seed: int = 0
    data_seed: int = 0
    image_size: int = 64
    object_scale: tuple = (0.3, 0.55)
    train_size: int = 48000
    test_size: int = 2000
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    min_lr_ratio: float = 0.02
    threads: int = 1  # one thread: no OpenMP barrier stalls when the cores are shared
    eval_batch_size: int = 250
    eval_every: int = 1000  # > 0: print zero-shot figures on 500 test images every N steps (monitoring only)


def no_weight_decay_names(model: torch.nn.Module) -> List[str]:
    """Parameters of more than one dimension that take no weight decay: GRN's gamma and beta
    (shape (1, 1, 1, C)), the text tower's positional embedding and the temperature. timm leaves
    out every 1-d parameter (norms, biases, layer scales) by itself."""
    return [name for name, p in model.named_parameters()
            if p.ndim > 1 and (name.endswith(("gamma", "beta")) or "positional_embedding" in name
                               or "logit_scale" in name)]


def param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW's parameter groups: ``weight_decay`` on the weights, none on the parameters that
    only scale or shift (timm's ``param_groups_weight_decay``)."""
    return param_groups_weight_decay(model, weight_decay,
                                     no_weight_decay_list=no_weight_decay_names(model))


def lr_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> LRScheduler:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps`` steps, then a
    cosine from ``lr`` to ``lr * min_lr_ratio`` over the remaining steps; ``step()`` once per
    optimizer step. The optimizer's groups must start at ``recipe.lr``."""
    r = recipe
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, r.steps - r.warmup_steps),
                               eta_min=r.lr * r.min_lr_ratio)
    if r.warmup_steps == 0:
        return cosine
    # step i of the warm-up is at (i + 1) / warmup_steps of lr: the last one reaches lr
    warmup = LinearLR(optimizer, start_factor=1.0 / r.warmup_steps, end_factor=1.0,
                      total_iters=max(1, r.warmup_steps - 1))
    return SequentialLR(optimizer, [warmup, cosine], milestones=[r.warmup_steps])


@torch.no_grad()
def evaluate(model, tokenizer, *, data_seed: int = 0, image_size: int = 64,
             object_scale=(0.3, 0.55), test_size: int = 2000, batch_size: int = 250
             ) -> Dict[str, Any]:
    """Zero-shot shape / colour top-1 and caption retrieval on the synthetic test split."""
    model.eval()
    world = SyntheticWorld(image_size=image_size, object_scale=tuple(object_scale), seed=data_seed)
    s = world.render("test", n=test_size)
    x = normalize_images(s.images)
    feats = torch.cat([model.encode_image(x[i:i + batch_size], normalize=True)
                       for i in range(0, len(x), batch_size)])
    out: Dict[str, Any] = {"test_size": test_size}
    for task, labels in (("shape", s.shape), ("colour", s.colour)):
        classnames, templates = zeroshot_task(task)
        clf = build_zero_shot_classifier(model, tokenizer, classnames, templates,
                                         num_classes_per_batch=None, device="cpu",
                                         use_tqdm=False)
        pred = (feats @ clf).argmax(1).numpy()
        out[f"zeroshot_{task}_acc1"] = float((pred == np.asarray(labels)).mean())
    tok = tokenizer(list(s.captions))
    tfeats = torch.cat([model.encode_text(tok[i:i + batch_size], normalize=True)
                        for i in range(0, len(tok), batch_size)])
    # identical caption strings are one text with every image they describe as a positive, and
    # ties count against the query: the figures do not depend on tie order (eval/retrieval.py)
    r = retrieval.evaluate(feats.numpy(), tfeats.numpy(), np.arange(len(tfeats)), ks=(1, 5, 10),
                           texts=list(s.captions))
    out["retrieval_image_to_text_r5"] = r["image_to_text"]["r5"]
    out["retrieval_text_to_image_r5"] = r["text_to_image"]["r5"]
    out["retrieval_image_to_text_r1"] = r["image_to_text"]["r1"]
    out["retrieval_text_to_image_r1"] = r["text_to_image"]["r1"]
    return out


def train(recipe: Recipe, out_dir: Optional[Path] = None, progress: bool = True,
          log_every: int = 50) -> Dict[str, Any]:
    """Run the recipe; writes the checkpoint + JSON into ``out_dir`` when given.

    Returns the metadata dict (recipe, losses, figures, wall time).
    """
    # A recipe that trains nothing would still write a "demo" checkpoint (random weights).
    bad = [f"{k}={getattr(recipe, k)!r}" for k in ("steps", "batch_size", "train_size",
                                                    "test_size", "eval_batch_size")
           if getattr(recipe, k) < 1]
    bad += [] if recipe.lr > 0 and math.isfinite(recipe.lr) else [f"lr={recipe.lr!r}"]
    if bad:
        raise ValueError(f"the recipe trains nothing: {', '.join(bad)} (counts must be >= 1, "
                         "lr > 0)")
    t0 = time.time()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    world = SyntheticWorld(image_size=recipe.image_size, object_scale=tuple(recipe.object_scale),
                           seed=recipe.data_seed)
    data = world.render("train", n=recipe.train_size)
    images = torch.from_numpy(data.images)  # uint8, normalized per batch to save memory
    checkpoint_name(recipe.model)  # an unknown model fails here, before any work
    tokenizer = get_tokenizer(recipe.model)
    tokens = tokenizer(list(data.captions))
    model = create_model(recipe.model, load_weights=False)  # the config's own initialization
    model.train()
    opt = torch.optim.AdamW(param_groups(model, recipe.weight_decay), lr=recipe.lr,
                            betas=(0.9, 0.98), eps=1e-6)
    schedule = lr_scheduler(opt, recipe)
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(images), generator=gen)
    pos = 0
    losses = []
    bar = tqdm(range(recipe.steps), desc="train demo CLIP", disable=not progress)
    for step in bar:
        if pos + recipe.batch_size > len(order):
            order = torch.randperm(len(images), generator=gen)
            pos = 0
        idx = order[pos:pos + recipe.batch_size]
        pos += recipe.batch_size
        x = normalize_images(images[idx].numpy())
        img_f, txt_f, scale = model(x, tokens[idx])
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if step % log_every == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.3f}")
        if recipe.eval_every and (step + 1) % recipe.eval_every == 0:
            figs = evaluate(model, tokenizer, data_seed=recipe.data_seed,
                            image_size=recipe.image_size, object_scale=recipe.object_scale,
                            test_size=500, batch_size=recipe.eval_batch_size)
            model.train()
            tqdm.write(f"step {step + 1}: loss {np.mean(losses[-log_every:]):.3f} "
                       f"shape {figs['zeroshot_shape_acc1']:.3f} "
                       f"colour {figs['zeroshot_colour_acc1']:.3f}")
    train_seconds = time.time() - t0
    model.eval()

    meta: Dict[str, Any] = {
        "model": recipe.model,
        "recipe": dataclasses.asdict(recipe),
        "data_seed": recipe.data_seed,
        "package_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "train_wall_seconds": round(train_seconds, 1),
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
        "loss_curve": [float(np.mean(losses[i:i + 50])) for i in range(0, len(losses), 50)],
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / checkpoint_name(recipe.model)
        save_checkpoint(model, ckpt, model_name=recipe.model)
        # figures on the weights as stored (fp16-rounded), so a reload reproduces them exactly
        model = create_model(recipe.model, pretrained=str(ckpt))
        meta["sha256"] = file_sha256(ckpt)
    meta["figures"] = evaluate(model, tokenizer, data_seed=recipe.data_seed,
                               image_size=recipe.image_size, object_scale=recipe.object_scale,
                               test_size=recipe.test_size, batch_size=recipe.eval_batch_size)
    meta["total_wall_seconds"] = round(time.time() - t0, 1)
    if out_dir is not None:
        ckpt.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def save_checkpoint(model: torch.nn.Module, path: Path, dtype=torch.float16,
                    model_name: str = MODEL_NAME) -> None:
    """open_clip layout, floating tensors in ``dtype``; atomic write."""
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
          for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp), metadata={"format": "pt", "model": model_name})
    tmp.replace(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unirepclip",
                                description="Train or evaluate the demo CLIP.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="run the training recipe")
    t.add_argument("--out", type=Path, required=True, help="output folder")
    for f in dataclasses.fields(Recipe):
        if isinstance(f.default, (int, float, str)):
            t.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                           default=f.default)
    e = sub.add_parser("evaluate", help="measure a checkpoint's figures on the test split")
    e.add_argument("checkpoint", nargs="?", default=None)
    e.add_argument("--model", default=MODEL_NAME, choices=demo_model_names())
    e.add_argument("--test-size", type=int, default=Recipe.test_size)
    args = p.parse_args(argv)
    if args.cmd == "train":
        kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
              if hasattr(args, f.name)}
        meta = train(Recipe(**kw), out_dir=args.out)
        print(json.dumps(meta["figures"], indent=2))
        print(f"wall time {meta['total_wall_seconds']} s; wrote {args.out}")
        return 0
    ckpt = args.checkpoint or str(demo_checkpoint_path(args.model))
    model = create_model(args.model, pretrained=ckpt)
    print(json.dumps(evaluate(model, get_tokenizer(args.model), test_size=args.test_size),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
