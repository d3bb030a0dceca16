"""Rendering speed of the synthetic world: milliseconds per image, with and without masks.

The demo recipe renders 48,000 training images and every notebook renders its test split, so this
is the figure to watch when the renderer changes (about 0.5 ms per 64 px image on one core of
the development machine; it was a test's wall-clock bound once, which a shared machine made flaky).

    python benchmarks/bench_data.py [--n 2000] [--size 64] [--threads 1]
"""
from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

from unirepclip.data import SyntheticWorld


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="images per render call")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-run-time", type=float, default=3.0, help="seconds per measurement")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = SyntheticWorld(seed=0, image_size=args.size)
    print(f"SyntheticWorld.render('train', {args.n}), {args.size} px, {args.threads} thread(s)")
    for masks in (False, True):
        t = benchmark.Timer(stmt="world.render('train', n, with_masks=masks)",
                            globals={"world": world, "n": args.n, "masks": masks},
                            num_threads=args.threads)
        m = t.blocked_autorange(min_run_time=args.min_run_time)
        print(f"  with_masks={masks!s:5}: {m.median * 1e3 / args.n:.3f} ms per image "
              f"(median of {len(m.times)}; IQR {m.iqr * 1e3 / args.n:.3f})")


if __name__ == "__main__":
    main()
