"""One run, side by side: image-encoder throughput in every form, and the whole extraction pipeline.

For each model (the demo CLIP and CLIP-UniRepLKNet-L, random weights unless --checkpoint):

* images/s of ``encode_image`` in the training form, the inference (re-parameterized) form, the
  inference form channels-last, the same under bf16 autocast, and compiled (``--compile``);
* images/s of the whole extraction pipeline (JPEG decode + open_clip transform + forward, through
  :func:`unirepclip.features.extract_image_features` with DataLoader workers) vs the forward alone;
* FLOPs per image (torch's FlopCounterMode), hence achieved FLOP/s and, given the device's peak
  (``--peak-tflops``; known GPUs are filled in), its share of the peak.

Runs on the CPU here and on CUDA where present (``--device cuda``). Ratios are against the training
form measured in the same run, so machine noise can be read off.

    python benchmarks/bench_all.py [--models demo,l] [--device cpu] [--batch 4] [--sizes 224,320]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import unirepclip
from unirepclip.data import ImageFolderDataset
from unirepclip.features import extract_image_features
import unirepclip.training.demo
from unirepclip.models.factory import build_model, get_model_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import randomize_reparam_state  # noqa: E402  (tests/ holds the shared helpers)

KNOWN_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}

MODELS = {"demo": ("UniRepLKNet-Demo", (64,)), "l": ("CLIP-UniRepLKNet-L", (224, 320))}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps, warmup=2):
    for _ in range(warmup):
        fn()
    sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def flops_per_image(model, size):
    with torch.device("meta"):
        meta_model = build_model(model.unirepclip_config, meta=True)
    x = torch.empty(1, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model.visual.to("meta")(x)
    return counter.get_total_flops()


def peak_for(device, given):
    if given:
        return given
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for k, v in KNOWN_PEAK_TFLOPS.items():
            if k in name:
                return v
    return None


def pipeline_images_per_s(model, size, device, batch, workers, n_images=64):
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for c in ("a", "b"):
            (Path(tmp) / c).mkdir()
            for i in range(n_images // 2):
                arr = rng.integers(0, 255, (size + 32, size + 48, 3), dtype=np.uint8)
                Image.fromarray(arr).save(Path(tmp) / c / f"{i}.jpg", quality=90)
        ds = ImageFolderDataset(tmp)
        t0 = time.perf_counter()
        extract_image_features(model, ds, batch_size=batch, num_workers=workers, device=device,
                               progress=False)
        sync(device)
        return n_images / (time.perf_counter() - t0)


def bench_model(key, args, device, peak):
    name, default_sizes = MODELS[key]
    sizes = [int(s) for s in args.sizes.split(",")] if (args.sizes and key == "l") else default_sizes
    torch.manual_seed(0)
    if args.checkpoint and key == "l":
        model = unirepclip.create_model(name, pretrained=args.checkpoint)
    elif key == "demo" and not args.random_demo:
        model = unirepclip.create_model(name, pretrained=str(unirepclip.training.demo.demo_checkpoint_path()))
    else:
        model = randomize_reparam_state(unirepclip.create_model(name), scale=0.1)
    model = model.to(device).eval()
    batch = args.batch if key == "l" else args.batch * 16
    for size in sizes:
        fl = flops_per_image(model, size)
        x = torch.randn(batch, 3, size, size, device=device)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        train_form = model
        deploy = copy.deepcopy(model)
        deploy.visual.trunk.reparameterize()
        deploy_cl = copy.deepcopy(deploy)
        deploy_cl.visual.to(memory_format=torch.channels_last)
        print(f"\n== {name} @ {size}px, batch {batch}, {device} | {fl / 1e9:.2f} GFLOPs/image "
              f"({fl / 2e9:.2f} GMACs)")
        rows = []

        def run(label, m, inp, autocast=False):
            def fwd():
                with torch.inference_mode():
                    if autocast:
                        with torch.autocast(device.type, dtype=torch.bfloat16):
                            m.encode_image(inp)
                    else:
                        m.encode_image(inp)
            sec = timed(fwd, device, args.reps)
            rows.append((label, batch / sec))

        run("training form fp32", train_form, x)
        run("inference form fp32", deploy, x)
        run("inference form, channels-last fp32", deploy_cl, x_cl)
        if not args.skip_bf16:
            run("inference form, channels-last, bf16 autocast", deploy_cl, x_cl, autocast=True)
        if args.compile:
            compiled = copy.deepcopy(deploy_cl)
            compiled.visual = torch.compile(compiled.visual)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled.encode_image(x_cl)
            print(f"   (compile took {time.perf_counter() - t0:.1f} s)")
            run("inference form, channels-last, compiled", compiled, x_cl)
        base = rows[0][1]
        for label, ips in rows:
            achieved = ips * fl / 1e12
            share = f"{achieved / peak:6.1%} of peak" if peak else "peak n/a"
            print(f"   {label:<48} {ips:9.2f} img/s  x{ips / base:5.2f}  "
                  f"{achieved:8.3f} TFLOP/s  {share}")
        if not args.skip_pipeline:
            fwd_only = rows[2][1]
            pipe = pipeline_images_per_s(deploy_cl, size, device, batch, args.workers,
                                         n_images=args.pipeline_images if key == "l" else 256)
            print(f"   {'pipeline (decode+transform+forward)':<48} {pipe:9.2f} img/s  "
                  f"pipeline / forward alone = {pipe / fwd_only:.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="demo,l")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=4, help="batch for L; the demo uses 16x")
    p.add_argument("--sizes", default="224,320", help="resolutions for L")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pipeline-images", type=int, default=16)
    p.add_argument("--checkpoint", default=None, help="a real CLIP-UniRepLKNet-L checkpoint")
    p.add_argument("--random-demo", action="store_true", help="random demo weights")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--skip-bf16", action="store_true")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak (dense) TFLOP/s for the share column")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = peak_for(device, args.peak_tflops)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} threads"))
    for key in args.models.split(","):
        bench_model(key, args, device, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
