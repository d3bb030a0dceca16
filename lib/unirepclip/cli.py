"""The workbook's command line: ``python -m unirepclip <command>`` (also installed as ``unirepclip``).

Commands:

* ``run``: run the notebooks with papermill into ``reports/<profile>/`` (HTML reports, results.json,
  manifest, index page); see :mod:`unirepclip.runner`. Exit status 0 when every notebook ran, 1 when
  one failed (the others still ran and the index says which), 2 for bad parameters or usage (nothing
  ran).
* ``inspect CKPT``: what a checkpoint file holds and how it would load
  (:func:`unirepclip.checkpoint.inspect_checkpoint`).
* ``train-demo``: train the small demo CLIP (``unirepclip.demo``; arguments pass through, see
  ``train-demo --help``).
* ``kernel``: register the Jupyter kernel ``unirepclip`` for this environment (``make lab`` does it).

Heavy modules are imported only by the command that needs them.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

_EPILOG_RUN = """\
parameters: each notebook declares its parameters in a cell tagged `parameters`. Values come from
the notebook's defaults, then the profile's `common` and `notebooks.<NN_name>` sections, then -p.
`-p key=value` sets key in every notebook that has it; `-p 02_zeroshot.key=value` in one notebook.
Values are YAML scalars: 8 (int), 0.5 / 1e-3 (float), true (bool), cuda (str), '007' (str),
empty (null). Unknown names and wrong types stop the run before any notebook starts.

examples:
  python -m unirepclip run                              # demo profile, CPU, embedded checkpoint
  python -m unirepclip run --profile ci --only 02
  python -m unirepclip run --profile imagenet-l -p checkpoint=/data/ckpt.pt \\
      -p data_dir=/data/imagenet/val -p 02_zeroshot.captions_file=/data/coco.csv \\
      -p 05_linear_probe.data_dir=/data/imagenet-probe --hide-code
  python -m unirepclip run --dry-run -p batch_size=16   # validate and show the parameters only
"""


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m unirepclip",
        description="unirepclip: a reproducible research workbook for CLIP-UniRepLKNet-L.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser(
        "run", help="run the notebooks and render the reports",
        description="Run every notebooks/NN_*.ipynb in order with papermill; write "
                    "<output-dir>/<profile>/: executed notebooks, HTML reports, figures, "
                    "results.json, manifest.json and index.html.",
        epilog=_EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--profile", default="demo",
                   help="profile name (lib/unirepclip/profiles/NAME.yaml) or path to a YAML file "
                        "(default: demo)")
    r.add_argument("-p", "--param", dest="params", action="append", default=[],
                   metavar="KEY=VALUE", help="override a parameter (repeatable)")
    r.add_argument("--only", action="append", metavar="NAME",
                   help="run only this notebook (02, zeroshot or 02_zeroshot; repeatable)")
    r.add_argument("--output-dir", default=None,
                   help="report root (default: reports/ beside notebooks/); the run writes "
                        "OUTPUT_DIR/PROFILE/")
    r.add_argument("--notebooks-dir", default=None,
                   help="folder of NN_*.ipynb notebooks (default: ./notebooks)")
    r.add_argument("--hide-code", action="store_true",
                   help="render HTML reports without code cells (paper style)")
    r.add_argument("--kernel", default=None,
                   help="Jupyter kernel to use (default: register and use this interpreter's)")
    r.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                   help="fail a notebook whose cell runs longer than this")
    r.add_argument("--dry-run", action="store_true",
                   help="validate the parameters and print them; run nothing")
    r.add_argument("--list-profiles", action="store_true", help="list the shipped profiles and exit")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    r.add_argument("-q", "--quiet", action="store_true", help="print only errors and the index path")

    i = sub.add_parser("inspect", help="report what a checkpoint file holds and how it loads",
                       description="Inspect a checkpoint (.pt/.pth/.bin/.safetensors): key layout, "
                                   "matched towers, shapes, dtype, sha256.")
    i.add_argument("checkpoint", metavar="CKPT", help="checkpoint file")
    i.add_argument("--model", default=None,
                   help="model config to match against (e.g. CLIP-UniRepLKNet-L, UniRepLKNet-Demo)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")

    sub.add_parser("train-demo", add_help=False,
                   help="train the demo CLIP by its recipe (`train-demo --help` lists the options)")
    sub.add_parser("evaluate-demo", add_help=False,
                   help="re-measure a demo checkpoint's figures on the test split")
    sub.add_parser("extract", add_help=False,
                   help="extract image features into the cache, on N processes under torchrun "
                        "(`torchrun --nproc_per_node=N -m unirepclip extract ...`)")
    sub.add_parser("kernel", help="register the Jupyter kernel 'unirepclip' for this interpreter")
    return p


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from unirepclip.workbook import runner

    if args.list_profiles:
        for name, desc in runner.list_profiles().items():
            print(f"{name:12s} {desc}")
        return 0
    try:
        res = runner.run(
            profile=args.profile, overrides=args.params, only=args.only,
            output_dir=args.output_dir, notebooks_dir=args.notebooks_dir, hide_code=args.hide_code,
            kernel=args.kernel, progress=not (args.no_progress or args.quiet),
            cell_timeout=args.cell_timeout, dry_run=args.dry_run, quiet=args.quiet,
            command=["python", "-m", "unirepclip", *argv])
    except (runner.ParameterError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        import json
        print(json.dumps(res.manifest["parameters"], indent=2))
        return 0
    failed = [r.name for r in res.notebooks if r.status == "failed" and not r.earlier]
    print(res.index)
    if failed:
        print(f"error: {len(failed)} notebook(s) failed: {', '.join(failed)} (see {res.index})",
              file=sys.stderr)
        return 1
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from unirepclip.models.inspection import inspect_checkpoint

    try:
        rep = inspect_checkpoint(args.checkpoint, model=args.model)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(rep.to_json() if args.json else str(rep))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m unirepclip``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # These hand everything after the command to their own parsers (their --help included).
    if argv and argv[0] in ("train-demo", "evaluate-demo"):
        from unirepclip.training import demo
        return int(demo.main([argv[0].split("-")[0], *argv[1:]]) or 0)
    if argv and argv[0] == "extract":
        from unirepclip.features import distributed
        return int(distributed.main(argv[1:]) or 0)
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _cmd_run(args, argv)
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "kernel":
        from unirepclip.workbook.runner import ensure_kernel
        print(f"Jupyter kernel {ensure_kernel()!r} -> {sys.executable}")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
