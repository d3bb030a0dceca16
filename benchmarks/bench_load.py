"""Loading a full-size CLIP-UniRepLKNet-L checkpoint: time and peak memory against the file size.

Writes a random full-size checkpoint (574M parameters, about 2.3 GB in fp32; safetensors and a
torch zip ``.pt``), then loads it in fresh subprocesses, each measured after one forward pass so a
lazily mapped file is really read:

* ``naive``: ``torch.load`` + build the model (random init) + ``load_state_dict``;
* ``open_clip``: ``open_clip.create_model(config, pretrained=file)``, open_clip's own path;
* ``unirepclip``: ``unirepclip.create_model(name, pretrained=file)`` (parameters on the meta device,
  tensors assigned from the file, no second copy).

Prints load seconds, peak RSS and peak RSS / file size for each, and the same ratio counted
above the bare process (Python, torch, open_clip imported: about half a GB with a CUDA build of
torch, which holds no weights).

    python benchmarks/bench_load.py [--dir /tmp/unirepclip-bench] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    torch.set_num_threads(2)
    how, path = sys.argv[1], sys.argv[2]
    import open_clip, unirepclip  # imported by every method, so the baseline is the same
    def rss_now():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
    base = rss_now()  # the interpreter, torch and the libraries, before any weights
    t0 = time.perf_counter()
    if how == "naive":
        import unirepclip
        from unirepclip.models.factory import build_model, get_model_config
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(get_model_config("CLIP-UniRepLKNet-L"))
        model.load_state_dict(sd)
        del sd
    elif how == "open_clip":
        import open_clip, unirepclip
        model = open_clip.create_model("CLIP-UniRepLKNet-L", pretrained=path)
    else:
        import unirepclip
        model = unirepclip.create_model("CLIP-UniRepLKNet-L", pretrained=path)
    t_load = time.perf_counter() - t0
    model.eval()
    with torch.inference_mode():
        model.encode_image(torch.randn(1, 3, 224, 224))
        model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"load_s": t_load, "total_s": time.perf_counter() - t0, "peak_rss": peak,
                      "base_rss": base}))
""")


def write_checkpoints(folder: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    import unirepclip
    from unirepclip.models.factory import build_model, get_model_config

    torch.manual_seed(0)
    model = build_model(get_model_config("CLIP-UniRepLKNet-L"))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    n = sum(v.numel() for k, v in sd.items() if v.is_floating_point())
    paths = {"safetensors": folder / "clip_unireplknet_l_random.safetensors",
             "pt": folder / "clip_unireplknet_l_random.pt"}
    save_file(sd, str(paths["safetensors"]))
    torch.save(sd, paths["pt"])
    print(f"wrote a random CLIP-UniRepLKNet-L: {n / 1e6:.1f}M parameters; "
          + ", ".join(f"{k} {p.stat().st_size / 1e9:.2f} GB" for k, p in paths.items()))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--formats", default="safetensors,pt")
    p.add_argument("--methods", default="naive,open_clip,unirepclip")
    args = p.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="unirepclip-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        paths = write_checkpoints(folder)
        results = []
        for fmt in args.formats.split(","):
            size = paths[fmt].stat().st_size
            for how in args.methods.split(","):
                out = subprocess.run([sys.executable, "-c", CHILD, how, str(paths[fmt])],
                                     capture_output=True, text=True, env=os.environ.copy())
                if out.returncode != 0:
                    print(f"{fmt:<12} {how:<11} FAILED: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(format=fmt, method=how, file_size=size)
                results.append(r)
                print(f"{fmt:<12} {how:<11} load {r['load_s']:5.1f} s "
                      f"(+ first forward {r['total_s']:5.1f} s)  peak RSS "
                      f"{r['peak_rss'] / 1e9:5.2f} GB = x{r['peak_rss'] / size:.2f} the file; "
                      f"above the {r['base_rss'] / 1e9:.2f} GB of the bare process: "
                      f"x{(r['peak_rss'] - r['base_rss']) / size:.2f} the file", flush=True)
        base = {r["format"]: r for r in results if r["method"] == "open_clip"}
        for r in results:
            if r["method"] == "unirepclip" and r["format"] in base:
                b = base[r["format"]]
                print(f"{r['format']}: unirepclip vs open_clip: time x{r['load_s'] / b['load_s']:.2f} "
                      f"(with the first forward x{r['total_s'] / b['total_s']:.2f}), "
                      f"peak RSS x{r['peak_rss'] / b['peak_rss']:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
