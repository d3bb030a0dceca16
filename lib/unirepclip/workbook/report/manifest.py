"""The run manifest: what ran, with what, where and when (``manifest.json`` in a report folder),
and the facts it records about the machine and the code."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from unirepclip.workbook import results as _results

__all__ = ["PACKAGES", "RunFacts", "now", "package_versions", "git_state", "gpus", "device_info",
           "build_manifest"]

#: Distributions whose versions the manifest records: shown name -> distribution name.
PACKAGES: Dict[str, str] = {
    "unirepclip": "unirepclip",
    "torch": "torch",
    "torchvision": "torchvision",
    "open_clip": "open_clip_torch",
    "timm": "timm",
    "captum": "captum",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "papermill": "papermill",
    "nbconvert": "nbconvert",
}


def now() -> str:
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def package_versions() -> Dict[str, Optional[str]]:
    """Python's and each :data:`PACKAGES` distribution's version (None where not installed).
    Read from the installed metadata, so nothing heavy is imported."""
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for shown, dist in PACKAGES.items():
        try:
            out[shown] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[shown] = None
    return out


def git_state(path: os.PathLike) -> Dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git work tree holding ``path``.
    Dirty means tracked changes or untracked files that git does not ignore (either could change
    what the notebooks compute)."""
    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> List[str]:
    # nvidia-smi rather than torch.cuda: the runner must not hold a CUDA context (GPU memory) while
    # the notebooks' kernels use the GPU.
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        r = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if r.returncode != 0:
        return []
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def device_info(requested: Iterable[Any] = ()) -> Dict[str, Any]:
    """The machine: requested device parameter(s), CPU model and count, GPUs, platform."""
    req = sorted({str(d) for d in requested if d is not None})
    return {
        "requested": req[0] if len(req) == 1 else (req or None),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus(),
        "platform": platform.platform(),
    }


@dataclasses.dataclass
class RunFacts:
    """What a run knows of itself when it writes its manifest. ``parameters``: per notebook,
    every parameter's value (the notebook's default unless the run set it); ``injected``: what
    this run passed to each notebook it ran; ``runs``: each notebook's record
    (:class:`~unirepclip.workbook.run.provenance.NotebookRun` as a dict); ``code``: git commit,
    dirty and the package's source sha256; ``setting``: slug and values when the folder is one
    setting of a sweep."""

    profile: Mapping[str, Any]
    command: Sequence[str]
    started: str
    finished: Optional[str] = None
    status: Optional[str] = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    parameters: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    injected: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    runs: Sequence[Mapping[str, Any]] = ()
    merged_results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    repo: Optional[os.PathLike] = None
    interrupted: Optional[Mapping[str, Any]] = None
    code: Optional[Mapping[str, Any]] = None
    setting: Optional[Mapping[str, Any]] = None


def _seed(parameters: Mapping[str, Mapping[str, Any]]) -> Any:
    """The ``seed`` parameter: one value, or per notebook where they differ."""
    seeds = {nb: p["seed"] for nb, p in parameters.items() if "seed" in p}
    if not seeds:
        return None
    distinct = {json.dumps(v) for v in seeds.values()}
    return next(iter(seeds.values())) if len(distinct) == 1 else dict(seeds)


def _run_checkpoint(f: RunFacts) -> Dict[str, Any]:
    """This run's checkpoint: its own notebooks speak for it (the others were carried over from
    earlier runs): their records, else the ``checkpoint`` parameter and the results' digest."""
    own = [r for r in f.runs if not r.get("earlier")] or list(f.runs)
    own_params = [f.parameters[r["name"]] for r in own if r.get("name") in f.parameters] or list(
        f.parameters.values())

    def first(*names: str) -> Any:
        return next((p[n] for p in own_params for n in names if p.get(n) is not None), None)

    path, sha, modified = first("checkpoint"), None, None
    for r in own:
        ck = r.get("checkpoint") or {}
        if ck.get("path") is not None or ck.get("sha256") is not None:
            path, sha, modified = ck.get("path"), ck.get("sha256"), ck.get("modified")
            break
    if sha is None:
        try:
            sha = _results.get_path(f.merged_results, "checkpoint.sha256")
        except KeyError:
            sha = None
    return {"sha256": sha, "path": path, "model": first("model_name", "model"),
            **({"modified": modified} if modified else {})}


def _checkpoints(f: RunFacts) -> List[Dict[str, Any]]:
    """Every distinct checkpoint in the folder with the notebooks that used it."""
    out: List[Dict[str, Any]] = []
    for r in f.runs:
        ck = r.get("checkpoint") or {}
        p = f.parameters.get(r.get("name"), {})
        entry = {"path": ck.get("path", p.get("checkpoint")), "sha256": ck.get("sha256"),
                 "model": r.get("model_name") or p.get("model_name") or p.get("model")}
        if entry["path"] is None and entry["sha256"] is None:
            continue
        same = next((c for c in out if all(c[k] == entry[k] for k in entry)), None)
        if same:
            same["notebooks"].append(r.get("name"))
        else:
            out.append({**entry, "notebooks": [r.get("name")]})
    return out


def _duration(started: str, finished: Optional[str]) -> Optional[float]:
    try:
        t0 = _dt.datetime.fromisoformat(started)
        t1 = _dt.datetime.fromisoformat(finished or "")
    except (ValueError, TypeError):
        return None
    return round((t1 - t0).total_seconds(), 1)


def build_manifest(f: RunFacts) -> Dict[str, Any]:
    """The run manifest. Keys: ``profile`` (name, file), ``command``, ``started``/``finished``
    (ISO 8601) and ``duration_s``, ``parameters``, ``injected``, ``overrides`` (from ``-p``),
    ``seed``, ``git`` (commit, dirty), ``source_sha256``, ``versions`` (:func:`package_versions`),
    ``device`` (:func:`device_info`), ``checkpoint`` (this run's path, sha256 and model, and
    ``modified`` when a ``"demo"`` file is not the one recorded),
    ``checkpoints`` (every distinct one with its notebooks), ``status`` (``running``,
    ``complete``, ``failed``, ``interrupted``), ``interrupted`` (signal and time, or why),
    ``notebooks`` (each one's record) and ``setting`` for a sweep's setting."""
    code = f.code or {}
    return {
        "format": "unirepclip.manifest/1",
        "status": f.status,
        "interrupted": dict(f.interrupted) if f.interrupted else None,
        "profile": {"name": f.profile.get("name"), "file": str(f.profile.get("path") or "")},
        "command": list(f.command),
        "started": f.started,
        "finished": f.finished,
        "duration_s": _duration(f.started, f.finished),
        "seed": _seed(f.parameters),
        "git": ({k: code[k] for k in ("commit", "dirty")} if code
                else git_state(f.repo or Path.cwd())),
        "source_sha256": code.get("source_sha256"),
        "versions": package_versions(),
        "device": device_info(p.get("device") for p in f.parameters.values()),
        "checkpoint": _run_checkpoint(f),
        "checkpoints": _checkpoints(f),
        "overrides": dict(f.overrides),
        "parameters": {nb: dict(p) for nb, p in f.parameters.items()},
        "injected": {nb: dict(p) for nb, p in f.injected.items()},
        "notebooks": [dict(r) for r in f.runs],
        **({"setting": dict(f.setting)} if f.setting else {}),
    }
