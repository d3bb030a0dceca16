"""``python -m unirepclip extract --executor slurm``: the sharded extraction of
:mod:`unirepclip.features.distributed` as ONE Slurm job of ``--nodes`` x ``--gpus-per-node`` tasks
(one process per GPU; on the CPU ``--tasks-per-node`` processes with gloo), submitted through
submitit. Each task exports the variables torchrun would set
(``submitit.helpers.TorchDistributedEnvironment``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and runs the same code as a torchrun rank, so the shards, their
merge and the cache entry are the same.

A job warned of its time limit or of preemption is requeued (``--max-requeue`` times for a time
limit) and resumes from its finished shards, as the same command run again does: committed shards
are kept, a shard that was being written is redone. submitit's files (the pickled task, each
task's stdout/stderr per attempt) live in ``<cache-dir>.slurm/``, beside the cache.

Every bad setting is one line before anything is submitted: an unknown partition, no GPU where
the device is CUDA, GPUs asked for a CPU run, a backend the device cannot use, missing files."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from unirepclip.features import distributed

__all__ = ["ExtractTask", "build_parser", "main", "slurm_folder", "submit", "settings_problems"]

#: The Slurm flags (dest names); any given with ``--executor local`` is refused.
SLURM_ARGS = ("nodes", "gpus_per_node", "tasks_per_node", "partition", "account",
              "cpus_per_task", "mem_gb", "time_min", "max_requeue", "signal_delay_s", "detach")
_DEFAULTS = {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "time_min": 60,
             "max_requeue": 3, "signal_delay_s": 90}


def slurm_folder(cache_dir: str) -> Path:
    """Where submitit's files of an extraction into ``cache_dir`` go: ``<cache-dir>.slurm``."""
    cache = Path(cache_dir).resolve()
    return cache.with_name(cache.name + ".slurm")


def build_parser() -> argparse.ArgumentParser:
    """``extract``'s arguments (:func:`unirepclip.features.distributed.build_parser`) and the
    Slurm executor's."""
    p = distributed.build_parser()
    p.prog = "python -m unirepclip extract"
    p.description += (" Under torchrun: `torchrun --nproc_per_node=N -m unirepclip extract ...`;"
                      " on a Slurm cluster: `--executor slurm --nodes N --gpus-per-node G`.")
    g = p.add_argument_group(
        "Slurm (--executor slurm)",
        "one Slurm job of NODES x GPUS_PER_NODE tasks, one process per GPU (on the CPU: "
        "--tasks-per-node processes, gloo), submitted with submitit; a requeued (preempted, "
        "timed-out) job resumes from its finished shards. submitit's files and the tasks' logs "
        "go to <cache-dir>.slurm/, beside the cache.")
    g.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local (default: this process, or a torchrun rank) or slurm")
    g.add_argument("--nodes", type=int, default=None, help="nodes (default 1)")
    g.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node, one task each (default 0; > 0 with --device cuda)")
    g.add_argument("--tasks-per-node", type=int, default=None,
                   help="processes per node on the CPU (default 1; with --device cuda it is "
                        "--gpus-per-node)")
    g.add_argument("--partition", default=None, help="sbatch --partition (default: the "
                                                     "cluster's default)")
    g.add_argument("--account", default=None, help="sbatch --account")
    g.add_argument("--cpus-per-task", type=int, default=None,
                   help="CPUs per task (default 1; a CPU rank uses that many threads)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per node, in GB")
    g.add_argument("--time-min", type=int, default=None,
                   help="each attempt's time limit in minutes (default 60)")
    g.add_argument("--max-requeue", type=int, default=None,
                   help="how often a job that hit its time limit is requeued (default 3)")
    g.add_argument("--signal-delay-s", type=int, default=None,
                   help="Slurm's warning before the time limit, in seconds (default 90)")
    g.add_argument("--detach", action="store_true",
                   help="exit once submitted (default: wait for the job and say how it ended)")
    return p


def _value(args: argparse.Namespace, name: str) -> Any:
    v = getattr(args, name)
    return _DEFAULTS.get(name) if v is None else v


def _layout_problems(args: argparse.Namespace) -> List[str]:
    nodes, gpus = _value(args, "nodes"), _value(args, "gpus_per_node")
    tasks, out = args.tasks_per_node, []
    if nodes < 1:
        out.append(f"--nodes {nodes}: must be at least 1")
    if gpus < 0:
        out.append(f"--gpus-per-node {gpus}: must be at least 0")
    if tasks is not None and tasks < 1:
        out.append(f"--tasks-per-node {tasks}: must be at least 1")
    if args.device == "cuda" and gpus == 0:
        out.append("--gpus-per-node 0 with --device cuda: each rank needs a GPU of its own; "
                   "pass --gpus-per-node G (one process per GPU)")
    elif args.device == "cuda" and tasks is not None and tasks != gpus:
        out.append(f"--tasks-per-node {tasks} with --device cuda: one process per GPU, so "
                   f"--gpus-per-node ({gpus}) sets it; drop --tasks-per-node")
    elif args.device == "cpu" and gpus > 0:
        out.append(f"--gpus-per-node {gpus} with --device cpu: the ranks would not use the "
                   "GPUs; pass --device cuda, or drop --gpus-per-node")
    return out


def _model_problems(args: argparse.Namespace) -> List[str]:
    """``--model`` and ``--checkpoint`` checked as a notebook's ``model_name`` and
    ``checkpoint`` are (the models layer's torch-free checks): a config, a .json file, an
    open_clip name, ``local-dir:`` or ``hf-hub:``; ``demo``, a file, ``hf-hub:`` or a pretrained
    tag of the model."""
    from unirepclip.models.params import PARAMETERS
    from unirepclip.workbook.params.checks import check_value

    decls = {p.name: p for p in PARAMETERS}
    values = {"model_name": args.model, "checkpoint": args.checkpoint or ""}
    out = []
    for flag, key in (("--model", "model_name"), ("--checkpoint", "checkpoint")):
        problem = check_value(decls[key], values[key], values)
        if problem:
            out.append(f"{flag} {values[key]}: {problem}")
    return out


def _file_problems(args: argparse.Namespace) -> List[str]:
    out = _model_problems(args)
    if args.data_root is not None:
        root = args.data_root.replace("{dataset}", args.dataset)
        if not Path(root).is_dir():
            out.append(f"--data-root {root}: no such folder")
    return out


def settings_problems(args: argparse.Namespace) -> List[str]:
    """Every problem of an ``--executor slurm`` command line, one line each, the cluster's (its
    commands, the partition) last; empty when it can be submitted."""
    import torch

    from unirepclip.workbook.params import ParameterError
    from unirepclip.workbook.params.slurm import cluster_problems, flag_problems
    out = flag_problems({k: getattr(args, k) for k in ("partition", "account", "cpus_per_task",
                                                       "mem_gb", "time_min", "max_requeue",
                                                       "signal_delay_s")})
    out += _layout_problems(args)
    if args.batch_size < 1:
        out.append(f"--batch-size {args.batch_size}: must be at least 1")
    try:
        distributed.pick_backend(args.backend, torch.device(args.device))
    except (ValueError, RuntimeError) as e:
        out.append(str(e))
    out += _file_problems(args)
    try:
        return out + cluster_problems(args.partition)
    except ParameterError as e:  # no usable Slurm here: said last, with the rest
        return out + e.problems


class ExtractTask:
    """One task of the job (pickled by submitit): a torchrun rank's environment, then the
    extraction; requeued whole on Slurm's warning (the protocol resumes from finished shards)."""

    def __init__(self, args: Dict[str, Any]):
        self.args = dict(args)

    def __call__(self) -> str:
        import submitit
        import torch
        env = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False)
        if self.args["device"] == "cuda" and torch.cuda.device_count() < env.local_world_size:
            os.environ["LOCAL_RANK"] = "0"  # Slurm bound each task to its own GPU
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and self.args["device"] == "cpu":
            torch.set_num_threads(int(cpus))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = distributed.run_args(argparse.Namespace(**self.args))
        sys.stdout.write(out.getvalue())
        if rc:
            raise RuntimeError(f"rank {env.rank}: extract exited with status {rc}")
        return out.getvalue().strip()

    def checkpoint(self) -> Any:
        import submitit
        return submitit.helpers.DelayedSubmission(ExtractTask(self.args))


def _executor(args: argparse.Namespace, folder: Path):
    import submitit
    gpus = _value(args, "gpus_per_node")
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm",
                               slurm_max_num_timeout=int(_value(args, "max_requeue")))
    params: Dict[str, Any] = {
        "name": "unirepclip-extract", "nodes": int(_value(args, "nodes")),
        "tasks_per_node": int(gpus if args.device == "cuda" else args.tasks_per_node or 1),
        "cpus_per_task": int(_value(args, "cpus_per_task")),
        "timeout_min": int(_value(args, "time_min")),
        "slurm_signal_delay_s": int(_value(args, "signal_delay_s"))}
    if gpus:
        params["gpus_per_node"] = int(gpus)
    if args.mem_gb is not None:
        params["mem_gb"] = args.mem_gb
    for key in ("partition", "account"):
        if getattr(args, key) is not None:
            params[f"slurm_{key}"] = getattr(args, key)
    ex.update_parameters(**params)
    return ex, params


def submit(args: argparse.Namespace) -> int:
    """Check, submit, and (unless ``--detach``) wait for the job; returns the exit status."""
    problems = settings_problems(args)
    if problems:
        raise SystemExit("\n".join(f"unirepclip extract: error: {p}" for p in problems))
    import submitit
    task = {k: v for k, v in vars(args).items() if k not in SLURM_ARGS + ("executor",)}
    task["cache_dir"] = str(Path(args.cache_dir).resolve())
    folder = slurm_folder(args.cache_dir)
    ex, params = _executor(args, folder)
    job = ex.submit(ExtractTask(task))
    print(f"slurm: submitted job {job.job_id} ({params['nodes']} node(s) x "
          f"{params['tasks_per_node']} task(s)); its files and logs in {folder}",
          file=sys.stderr, flush=True)
    if args.detach:
        return 0
    try:
        results = job.results()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
        last = [line for line in str(e).splitlines() if line.strip()]
        print(f"unirepclip extract: error: Slurm job {job.job_id} did not complete "
              f"({last[-1].strip()[:300] if last else type(e).__name__}); see "
              f"{folder}/{job.job_id}_*_log.err; the same command again finishes it (finished "
              "shards are kept)", file=sys.stderr)
        return 1
    print(results[0])
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m unirepclip extract ...``: here (a plain process or a torchrun rank), or on
    Slurm with ``--executor slurm``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.executor == "slurm":
        return submit(args)
    given = [k for k in SLURM_ARGS if getattr(args, k) not in (None, False)]
    if given:
        raise SystemExit(f"unirepclip extract: error: --{given[0].replace('_', '-')}: a Slurm "
                         "setting, given without --executor slurm")
    return distributed.run_args(args)
