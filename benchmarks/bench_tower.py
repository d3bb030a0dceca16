"""UniRepLKNet tower speed on the CPU: training form vs inference form vs channels-last.

Prints seconds per batch (median of N) and images/s for each form, and their ratios against the
training form timed in the same run (so machine noise can be read off). Also checks whether the
default initialization (layer scale 1e-6) hits slow denormal arithmetic, with and without
``torch.set_flush_denormal(True)``.

    python benchmarks/bench_tower.py [--model unireplknet_l] [--size 224] [--batch 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

import unirepclip  # noqa: F401  (registers the towers)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import randomize_reparam_state  # noqa: E402  (tests/ holds the shared helpers)


def time_model(model, x, reps: int, warmup: int = 2) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="unireplknet_l")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    p.add_argument("--skip-denormal", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    rows = []

    def report(name, sec, base):
        rows.append((name, sec))
        ratio = base / sec if base else 1.0
        print(f"{name:<44} {sec:7.3f} s/batch {args.batch / sec:7.2f} img/s  "
              f"speed-up vs training form x{ratio:.2f}", flush=True)

    if not args.skip_denormal:
        default = timm.create_model(args.model, num_classes=0).eval()
        torch.set_flush_denormal(False)
        t_def = time_model(default, x, args.reps)
        report("training form, default init (ls 1e-6)", t_def, None)
        torch.set_flush_denormal(True)
        report("training form, default init, flush denormals", time_model(default, x, args.reps),
               t_def)
        torch.set_flush_denormal(False)
        del default

    train_form = randomize_reparam_state(timm.create_model(args.model, num_classes=0), scale=0.1).eval()
    base = time_model(train_form, x, args.reps)
    report("training form", base, None)
    deploy = timm.utils.reparameterize_model(train_form)
    report("inference form", time_model(deploy, x, args.reps), base)
    deploy_cl = copy.deepcopy(deploy).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    t_cl = time_model(deploy_cl, x_cl, args.reps)
    report("inference form, channels-last", t_cl, base)
    with torch.inference_mode():
        ref = train_form(x)
        err = (deploy_cl(x_cl) - ref).abs().max() / ref.abs().max()
    print(f"max relative difference inference/channels-last vs training form: {err:.2e}")
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(deploy_cl)
        with torch.inference_mode():
            compiled(x_cl)
        print(f"compile time {time.perf_counter() - t0:.1f} s")
        report("inference form, channels-last, compiled", time_model(compiled, x_cl, args.reps),
               base)


if __name__ == "__main__":
    main()
