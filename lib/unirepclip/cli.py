"""The workbook's command line: ``python -m unirepclip <command>`` (also installed as ``unirepclip``).

Commands:

* ``run``: run the notebooks with papermill into ``reports/<profile>/`` (HTML reports, results.json,
  manifest, index page); see :mod:`unirepclip.workbook.run`. Exit status 0 when every notebook ran, 1 when
  one failed (the others still ran and the index says which), 2 for bad parameters or usage (nothing
  ran).
* ``inspect CKPT``: what a checkpoint file holds and how it would load
  (:func:`unirepclip.models.inspection.inspect_checkpoint`).
* ``train-demo``: train the small demo CLIP (:mod:`unirepclip.training.demo`; arguments pass through, see
  ``train-demo --help``).
* ``kernel``: register the Jupyter kernel ``unirepclip`` for this environment (``make lab`` does it).

Every command answers a user error with one line and exit status 2 (``--debug``: the traceback).
``run`` exits 128 + the signal's number (130, 143) when SIGINT/SIGTERM stopped it.

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

sweeps: `--sweep key=v1,v2` runs the profile once per value (several flags: every combination),
each setting into OUTPUT_DIR/PROFILE/<slug>/, then writes OUTPUT_DIR/PROFILE/index.html comparing
the settings' headline figures (see unirepclip.workbook.sweep; a profile's `sweep:` section does the
same). `--jobs N` runs N settings at once (one GPU each, or the CPU threads shared).
  python -m unirepclip run --profile demo-sweep --only 02       # the demo vs its 3x3 control
  python -m unirepclip run --only 02 --sweep seed=0,1,2 --sweep 02_zeroshot.n_images=200,1000
  python -m unirepclip run --profile paper-zeroshot -p checkpoint=/data/ckpt.pt \
      -p data_dir=/data/clip_benchmark/{dataset}
"""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


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
                   help="profile name (lib/unirepclip/workbook/profiles/NAME.yaml) or path to a YAML file "
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
    r.add_argument("--cell-timeout", type=_int, default=None, metavar="SECONDS",
                   help="fail a notebook whose cell runs longer than this")
    r.add_argument("--dry-run", action="store_true",
                   help="validate the parameters and print them; run nothing")
    r.add_argument("--list-profiles", action="store_true", help="list the shipped profiles and exit")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    r.add_argument("-q", "--quiet", action="store_true", help="print only errors and the index path")
    r.add_argument("--wait", action="store_true",
                   help="wait for another run that writes the same report folder (default: refuse)")
    r.add_argument("--resume", action="store_true",
                   help="rerun only the notebooks whose outputs are missing, failed, interrupted or "
                        "made with other parameters, checkpoint, notebook file or code (in a "
                        "sweep: per setting)")
    r.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="run once per value (YAML scalars; NN_name.key too); several flags make "
                        "a grid; replaces the profile's sweep axis of the same key")
    r.add_argument("--jobs", type=_int, default=1, metavar="N",
                   help="notebooks run at once (default 1), each in its own kernel; in a sweep, "
                        "settings at once: one GPU each on CUDA (CUDA_VISIBLE_DEVICES), else the "
                        "CPU threads split (num_threads)")
    r.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="where a sweep's settings run: here (default) or as one Slurm job array "
                        "through submitit (each setting a task; see the README's Slurm section)")
    g = r.add_argument_group("Slurm (with --executor slurm; over the profile's slurm: section)")
    g.add_argument("--partition", default=None, help="sbatch --partition")
    g.add_argument("--account", default=None, help="sbatch --account")
    for flag, what in (("--gpus-per-task", "GPUs per setting"), ("--cpus-per-task",
                       "CPUs per setting"), ("--time-min", "each attempt's time limit (minutes)"),
                       ("--max-requeue", "requeues after a time limit (default 3)"),
                       ("--signal-delay-s", "seconds of warning before the time limit, to "
                        "stop cleanly and requeue (default 90)"),
                       ("--parallelism", "at most this many settings at once")):
        g.add_argument(flag, type=_int, default=None, metavar="N", help=what)
    g.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="memory per setting")
    g.add_argument("--detach", action="store_true",
                   help="return once the job array is submitted (default: watch it to the end; "
                        "`status DIR` shows it any time)")
    # One setting of a sweep run by `--jobs` in its own process: {"slug", "values", "sources"}.
    r.add_argument("--sweep-setting", default=None, help=argparse.SUPPRESS)

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
                        "(`torchrun --nproc_per_node=N -m unirepclip extract ...`) or as one "
                        "Slurm job (`extract --executor slurm --nodes N --gpus-per-node G`)")
    sub.add_parser("kernel", help="register the Jupyter kernel 'unirepclip' for this interpreter")
    st = sub.add_parser("status", help="a report folder's state (a run that died reads, and is "
                                       "marked, interrupted)")
    st.add_argument("folder", metavar="DIR", help="a report folder (OUTPUT_DIR/PROFILE)")
    return p


def _options(args: argparse.Namespace, argv: Sequence[str]):
    """The command line as one :class:`~unirepclip.workbook.run.RunOptions` (checked there)."""
    from unirepclip.workbook.run import RunOptions
    return RunOptions(
        profile=args.profile, overrides=tuple(args.params), only=args.only,
        output_dir=args.output_dir, notebooks_dir=args.notebooks_dir, hide_code=args.hide_code,
        kernel=args.kernel, progress=not (args.no_progress or args.quiet),
        cell_timeout=args.cell_timeout, dry_run=args.dry_run, quiet=args.quiet,
        command=["python", "-m", "unirepclip", *argv], wait=args.wait, resume=args.resume,
        sweep=tuple(args.sweep), jobs=args.jobs, executor=args.executor,
        slurm={k: getattr(args, k) for k in _SLURM_FLAGS}, detach=args.detach)


_SLURM_FLAGS = ("partition", "account", "gpus_per_task", "cpus_per_task", "mem_gb", "time_min",
                "max_requeue", "signal_delay_s", "parallelism")


def _error(e: Exception) -> int:
    """A refusal before anything ran: one line per problem, exit status 2."""
    problems = getattr(e, "problems", None)
    if problems and len(problems) == 1:
        print(f"error: {problems[0]}", file=sys.stderr)
    else:
        print(f"error: {e}", file=sys.stderr)
    return 2


def _setting(text: str):
    import json

    from unirepclip.workbook.sweep import Setting
    doc = json.loads(text)
    return Setting(doc["slug"], doc["values"], doc["sources"])


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from unirepclip.workbook.params import ParameterError, list_profiles, load_profile
    from unirepclip.workbook.run import RunLocked, run

    if args.list_profiles:
        for name, desc in list_profiles().items():
            print(f"{name:15s} {desc}")
        return 0
    try:
        options = _options(args, argv)
        profile = load_profile(options.profile)  # once: it decides run or sweep, and runs
        if args.sweep_setting is None and (options.sweep or profile["sweep"] is not None):
            return _cmd_sweep(options, profile)
        if options.executor == "slurm" and args.sweep_setting is None:
            raise ParameterError(["--executor slurm runs a sweep's settings as a job array; "
                                  "give --sweep (or a profile with a sweep: section), or submit "
                                  "a plain run with sbatch"])
        setting = None if args.sweep_setting is None else _setting(args.sweep_setting)
        res = run(options, setting=setting, profile=profile)
    except (ParameterError, RunLocked) as e:
        return _error(e)
    if res.interrupted:
        import signal
        print(res.index)
        print(f"error: interrupted by {res.interrupted}; `run --resume` completes the run",
              file=sys.stderr)
        return 128 + int(getattr(signal, res.interrupted, signal.SIGINT))
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


def _cmd_sweep(options, profile) -> int:
    import json
    import signal

    from unirepclip.workbook.params import ParameterError
    from unirepclip.workbook.run import RunLocked
    from unirepclip.workbook.sweep import run_sweep

    try:
        res = run_sweep(options, profile)
    except (ParameterError, RunLocked) as e:
        return _error(e)
    if options.dry_run:
        print(json.dumps({s["slug"]: {"values": s["values"], "parameters": s["parameters"]}
                          for s in res.doc["settings"]}, indent=2))
        return 0
    print(res.index)
    if options.detach:  # submitted; the tasks report on the index and to `status DIR`
        return 0
    if res.interrupted:
        print(f"error: interrupted by {res.interrupted}; `run --resume` with the same sweep "
              "completes it", file=sys.stderr)
        return 128 + int(getattr(signal, res.interrupted, signal.SIGINT))
    bad = [s["slug"] for s in res.doc["settings"] if s["status"] != "ok"]
    if bad:
        print(f"error: {len(bad)} setting(s) did not complete: {', '.join(bad)} (see {res.index})",
              file=sys.stderr)
        return 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """A report folder's state as its manifest says (a dead run's folder is marked, and its index
    rewritten, as interrupted)."""
    from pathlib import Path

    from unirepclip.workbook.run import read_manifest

    if (Path(args.folder) / "sweep.json").is_file():
        return _sweep_status(Path(args.folder))
    m = read_manifest(args.folder)
    if m is None:
        print(f"error: {args.folder} holds no readable manifest.json", file=sys.stderr)
        return 2
    print(f"{args.folder}: {m.get('status')}")
    for r in m.get("notebooks", []):
        print(f"  {r.get('name')}: {r.get('status')}" + (f" ({r['error']})" if r.get("error")
                                                          else ""))
    return 0


def _sweep_status(folder) -> int:
    """A sweep folder's settings; a Slurm sweep's index re-rendered from its tasks' state files
    and Slurm's accounting first."""
    import json

    if (folder / "slurm" / "sweep-spec.pickle").is_file():
        from unirepclip.workbook.sweep.slurm_state import render
        doc = render(folder)
    else:
        doc = json.loads((folder / "sweep.json").read_text())
    job = (doc.get("slurm") or {}).get("job_id")
    print(f"{folder}: sweep {doc.get('status')}" + (f" (Slurm job array {job})" if job else ""))
    for e in doc.get("settings", []):
        print(f"  {e.get('slug')}: {e.get('status')}"
              + (f" ({'; '.join(e['errors'])})" if e.get("errors") else ""))
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
    """Entry point of ``python -m unirepclip``; returns the exit status. A user error (a bad
    value, a missing or unreadable file) is one line on stderr and exit status 2; ``--debug``
    anywhere on the command line shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except (ValueError, OSError, LookupError) as e:
        if debug:
            raise
        text = str(e).strip().splitlines() or [""]
        print(f"error: {type(e).__name__}: {text[0]}" + (" (--debug for more)"
                                                         if len(text) > 1 else ""),
              file=sys.stderr)
        return 2


def _main(argv: List[str]) -> int:
    # These hand everything after the command to their own parsers (their --help included).
    try:
        if argv and argv[0] in ("train-demo", "evaluate-demo"):
            from unirepclip.training import demo
            return int(demo.main([argv[0].split("-")[0], *argv[1:]]) or 0)
        if argv and argv[0] == "extract":  # here, as a torchrun rank, or on Slurm
            from unirepclip.workbook import extract_slurm
            return int(extract_slurm.main(argv[1:]) or 0)
    except SystemExit as e:
        if isinstance(e.code, str):  # a command's own one-line refusal: a user error
            print(e.code, file=sys.stderr)
            return 2
        raise
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _cmd_run(args, argv)
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "kernel":
        from unirepclip.workbook.run import ensure_kernel
        print(f"Jupyter kernel {ensure_kernel()!r} -> {sys.executable}")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
