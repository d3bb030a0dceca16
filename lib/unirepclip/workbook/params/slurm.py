"""The ``slurm:`` section of a profile and the ``--partition`` ... flags: where and how a sweep's
settings run as one Slurm job array (``run --executor slurm``)::

    slurm:
      partition: gpu          # sbatch --partition (default: the cluster's default partition)
      account: myproject      # sbatch --account
      gpus_per_task: 1        # GPUs per setting (required > 0 when a setting's device is cuda)
      cpus_per_task: 8
      mem_gb: 32
      time_min: 240           # each attempt's time limit, in minutes
      max_requeue: 3          # how often a task that hit its time limit is requeued
      signal_delay_s: 120     # the warning before the time limit (checkpoint, then requeue)
      parallelism: 16         # at most this many settings at once (default: all)

A flag wins over the profile; every bad value is one line, before anything is submitted.
:func:`cluster_problems` checks what only the cluster can say (its commands, its partitions; a
cluster that cannot answer is one line raised); the sweeps and ``extract --executor slurm`` share
it."""
from __future__ import annotations

import shutil
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Tuple

from unirepclip.workbook.params.values import ParameterError

__all__ = ["SLURM_KEYS", "SLURM_DEFAULTS", "cluster_problems", "flag_problems", "slurm_problems",
           "slurm_settings"]

#: The client commands a submission and its watch use.
SLURM_COMMANDS = ("sbatch", "sinfo", "sacct", "scontrol")

#: key -> (kind, the smallest value allowed) for numbers; kind "str" for names.
SLURM_KEYS: Dict[str, Tuple[str, Optional[float]]] = {
    "partition": ("str", None), "account": ("str", None),
    "gpus_per_task": ("int", 0), "cpus_per_task": ("int", 1), "mem_gb": ("float", 0.001),
    "time_min": ("int", 1), "max_requeue": ("int", 0), "signal_delay_s": ("int", 1),
    "parallelism": ("int", 1),
}
SLURM_DEFAULTS: Dict[str, Any] = {"gpus_per_task": 0, "cpus_per_task": 1, "time_min": 60,
                                  "max_requeue": 3, "signal_delay_s": 90}


def _bad(key: str, value: Any) -> Optional[str]:
    kind, low = SLURM_KEYS[key]
    if kind == "str":
        return None if isinstance(value, str) and value.strip() else "must be a non-empty name"
    ok_type = (int,) if kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        return f"must be {'a whole number' if kind == 'int' else 'a number'}"
    if low is not None and value < low:
        return f"must be at least {low:g}" if kind == "int" else "must be above 0"
    return None


def slurm_problems(section: Any, where: str) -> List[str]:
    """Every problem of one ``slurm:`` mapping (``where`` names its file or the flags)."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return [f"{where}: 'slurm' must be a mapping of {', '.join(SLURM_KEYS)}"]
    out = []
    for k, v in section.items():
        if k not in SLURM_KEYS:
            out.append(f"{where}: slurm.{k}: unknown key (allowed: {', '.join(SLURM_KEYS)})")
        elif v is not None and _bad(k, v):
            out.append(f"{where}: slurm.{k} = {v!r}: {_bad(k, v)}")
    return out


def flag_problems(flags: Mapping[str, Any]) -> List[str]:
    """Every bad ``--partition`` ... flag (None: not given), named as typed."""
    return [f"--{k.replace('_', '-')} {v}: {_bad(k, v)}" for k, v in flags.items()
            if v is not None and k in SLURM_KEYS and _bad(k, v)]


def slurm_settings(profile_section: Optional[Mapping[str, Any]],
                   flags: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The defaults, then the profile's section, then the flags (None: not given)."""
    out = dict(SLURM_DEFAULTS)
    for layer in (profile_section or {}, flags or {}):
        out.update({k: v for k, v in layer.items() if v is not None})
    return out


def _sinfo_partitions(timeout_s: float) -> List[str]:
    """The cluster's partitions, as ``sinfo`` lists them; a ``sinfo`` that fails, cannot be run
    or does not answer within ``timeout_s`` seconds is a one-line :class:`ParameterError`."""
    why = None
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True,
                           timeout=timeout_s)
    except subprocess.TimeoutExpired:
        why = (f"`sinfo` did not answer within {timeout_s:g} s (is slurmctld reachable? "
               "`sinfo` by hand says)")
    except OSError as e:
        why = f"`sinfo` could not be run: {e.strerror or e} ({shutil.which('sinfo')})"
    else:
        if r.returncode != 0:
            said = " ".join(r.stderr.split())[:200] or f"exit status {r.returncode}"
            why = f"`sinfo` failed: {said}"
    if why is not None:
        raise ParameterError([f"--executor slurm: {why}"])
    return sorted({line.strip() for line in r.stdout.splitlines() if line.strip()})


def cluster_problems(partition: Optional[str], timeout_s: float = 60) -> List[str]:
    """What this machine's Slurm says against a submission's settings, one line each:
    ``partition`` (None: the cluster's default) unknown to it. What stops any submission is raised
    as a one-line :class:`ParameterError` instead: its commands missing from PATH, or ``sinfo``
    failing, not runnable, or silent for ``timeout_s`` seconds."""
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        raise ParameterError([f"--executor slurm: {', '.join(missing)} not found on PATH; run "
                              "from a Slurm login node (or pass --executor local)"])
    if partition is None:
        return []
    known = _sinfo_partitions(timeout_s)
    if partition not in known:
        return [f"slurm partition {partition!r}: no such partition on this cluster "
                f"(partitions: {', '.join(known) or 'none'})"]
    return []
