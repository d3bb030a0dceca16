"""Running a sweep: every setting's notebooks into ``<output-dir>/<profile>/<slug>/`` through the
same runner and report-folder code as a plain run, then the sweep's own page and ``sweep.json``
(rewritten as settings start and end). Settings run one after another in this process, or
``jobs`` at once, each in its own ``python -m unirepclip run`` process (log in
``logs/<slug>.log``), pinned to its own GPU with ``CUDA_VISIBLE_DEVICES`` when its device is CUDA,
else given ``num_threads`` = the CPU count / jobs unless the sweep or ``-p`` sets it."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from unirepclip.workbook.params import ParameterError, inspect_notebooks, load_profile
from unirepclip.workbook.report import gpus, now, write_sweep_index
from unirepclip.workbook.run import folder as _folder
from unirepclip.workbook.run.engine import ensure_kernel
from unirepclip.workbook.run.options import RunOptions
from unirepclip.workbook.run.runner import run
from unirepclip.workbook.run.signals import RunInterrupted, SignalGuard
from unirepclip.workbook.sweep.compare import (comparison, figure, key_id, matches,
                                               paired_tests, read_setting,
                                               setting_status)
from unirepclip.workbook.sweep.spec import SweepSpec, build_spec

__all__ = ["FORMAT", "LOCK_FILE", "SETTING_STATUSES", "SweepResult", "run_sweep"]

FORMAT = "unirepclip.sweep/1"
LOCK_FILE = ".sweep.lock"
#: A setting's status on the sweep's page (``ok``: every notebook it ran or kept is ok).
SETTING_STATUSES = ("pending", "running", "ok", "failed", "interrupted", "not run")


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` did: the sweep's folder, its ``sweep.json`` document, and the signal
    that stopped it (None when it finished)."""

    folder: Path
    doc: Dict[str, Any]
    interrupted: Optional[str] = None

    @property
    def index(self) -> Path:
        return self.folder / "index.html"

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(s["status"] == "ok" for s in self.doc["settings"])

    @property
    def failed(self) -> List[str]:
        return [s["slug"] for s in self.doc["settings"] if s["status"] == "failed"]


class SweepState:
    """The sweep's ``sweep.json`` and index page, rewritten as settings start and end."""

    def __init__(self, folder: Path, doc: Dict[str, Any], spec: SweepSpec):
        self.folder, self.doc, self.spec = folder, doc, spec
        self.lock = threading.Lock()

    def setting(self, slug: str) -> Dict[str, Any]:
        return next(s for s in self.doc["settings"] if s["slug"] == slug)

    def refresh(self, slug: str) -> None:
        """Read a finished (or stopped) setting's folder into its entry."""
        entry = self.setting(slug)
        merged, heads, manifest = read_setting(self.folder / slug)
        entry["status"] = setting_status(manifest) if manifest else entry["status"]
        entry["results"], entry["headline"] = merged, heads
        nbs = (manifest or {}).get("notebooks", [])
        entry["notebooks"] = {r.get("name"): r.get("status") for r in nbs}
        entry["kept"] = [r.get("name") for r in nbs
                         if str(r.get("kept") or "").startswith("kept by --resume")]
        entry["errors"] = [f"{r.get('name')}: {r.get('error')}" for r in nbs if r.get("error")]
        entry["duration_s"] = (manifest or {}).get("duration_s")
        entry["finished"] = (manifest or {}).get("finished")
        entry["index"] = (f"{slug}/index.html" if (self.folder / slug / "index.html").is_file()
                          else None)

    def _columns(self) -> List[Dict[str, Any]]:
        if self.spec.compare is not None:
            return self.spec.compare
        columns, seen = [], set()  # the notebooks' headlines, in order of first appearance
        for e in self.doc["settings"]:
            for h in e.get("headline") or []:
                if key_id(h["key"]) not in seen:
                    seen.add(key_id(h["key"]))
                    columns.append({"key": h["key"], "label": h.get("label"), "fmt": h.get("fmt")})
        return columns

    def write(self, with_figure: bool = False) -> None:
        """Rewrite ``sweep.json`` and the index; ``with_figure`` redraws the comparison figure."""
        with self.lock:
            s = self.doc
            s["comparison"] = comparison(s["settings"], self._columns(), self.spec.reference)
            if self.spec.reference:
                s["reference"] = {k: self.spec.reference[k] for k in ("label", "unit")}
            if with_figure:
                try:
                    s["figure"] = figure(self.folder, s["comparison"], self.spec.reference)
                    s["paired"] = paired_tests(self.folder, s["settings"], self._columns())
                    s.pop("figure_error", None)
                except Exception as e:  # a failed figure is a note on the page, not a lost sweep
                    s["figure"], s["figure_error"] = None, f"{type(e).__name__}: {e}"
            write_sweep_index(self.folder, s)


def _check(options: RunOptions, spec: SweepSpec, prof: Dict[str, Any], folder: Path,
           notebooks: list) -> Dict[str, Any]:
    """Every setting resolved before the first runs: one report of every problem. Returns each
    setting's dry-run manifest."""
    problems: List[str] = []
    dry: Dict[str, Any] = {}
    sub = options.replace(profile=prof["path"], output_dir=folder, dry_run=True)
    for s in spec.settings:
        try:
            dry[s.slug] = run(sub, notebooks=notebooks, setting=s, profile=prof).manifest
        except ParameterError as e:
            problems.extend(p for p in e.problems if p not in problems)
    for s in spec.settings if spec.reference else ():
        entry = {"name": s.name, "values": s.values}
        keys = [key_id(r["key"]) for r in spec.reference["rows"] if matches(r["match"], entry)]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            problems.append(f"setting {s.slug}: more than one reference row for {dup}")
    if problems:
        raise ParameterError(problems, f"the sweep of profile {prof['name']!r}")
    return dry


def _gpu_ids(options: RunOptions, dry: Dict[str, Any]) -> List[str]:
    import os
    if options.jobs <= 1:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = ([g for g in visible.split(",") if g.strip()] if visible is not None
           else [str(i) for i in range(len(gpus()))])
    wants_gpu = any("cuda" in str(p.get("device")) for m in dry.values()
                    for p in m["parameters"].values())
    if wants_gpu and len(ids) < options.jobs:
        raise ParameterError([f"--jobs {options.jobs}: each CUDA setting runs on its own GPU, and "
                              f"{len(ids)} are visible; pass --jobs {max(1, len(ids))} or fewer"])
    return ids


def _document(options: RunOptions, spec: SweepSpec, prof: Dict[str, Any],
              dry: Dict[str, Any]) -> Dict[str, Any]:
    settings = [{"slug": s.slug, "name": s.name, "values": s.values, "status": "pending",
                 "results": None, "headline": [], "notebooks": {}, "kept": [], "errors": [],
                 "duration_s": None, "finished": None, "index": None,
                 "parameters": dry[s.slug]["parameters"]} for s in spec.settings]
    return {"format": FORMAT, "status": "running",
            "profile": {"name": prof["name"], "file": str(prof["path"])},
            "command": options.full_command, "started": now(), "finished": None,
            "jobs": int(options.jobs), "axes": spec.axes, "only": options.only,
            "overrides": list(options.overrides), "figure": None, "settings": settings}


def _acquire(folder: Path, options: RunOptions):
    from filelock import Timeout
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "manifest.json").exists() and not (folder / _folder.SWEEP_FILE).exists():
        raise ParameterError([f"report folder {folder} holds a plain run's report "
                              f"({folder / 'manifest.json'}); a sweep writes its settings' "
                              "folders and its own index there: choose another --output-dir"])
    lock = _folder.folder_lock(folder, LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not options.wait:
            raise _folder.RunLocked(f"sweep folder {folder} is in use by another sweep; pass "
                                    "--wait to wait for it, or choose another --output-dir"
                                    ) from None
        lock.acquire()
    return lock


def _serial(state: SweepState, options: RunOptions, notebooks: list,
            prof: Dict[str, Any]) -> Optional[str]:
    """The settings one after another in this process; the signal that stopped them, if any."""
    for i, s in enumerate(state.spec.settings, 1):
        state.setting(s.slug)["status"] = "running"
        state.write()
        if not options.quiet:
            import sys
            print(f"setting [{i}/{len(state.spec.settings)}] {s.slug} ...", file=sys.stderr,
                  flush=True)
        res = run(options, notebooks=notebooks, setting=s, profile=prof)
        state.refresh(s.slug)
        state.write(with_figure=True)
        if res.interrupted:
            return res.interrupted
    return None


def _finish(state: SweepState, interrupted: Optional[str]) -> None:
    doc = state.doc
    for e in doc["settings"]:
        if e["status"] == "pending":
            e["status"] = "not run"
        elif e["status"] == "running":
            state.refresh(e["slug"])
            if e["status"] == "running":
                e["status"] = "interrupted"
    doc["finished"] = now()
    doc["status"] = ("interrupted" if interrupted else "failed" if any(
        e["status"] != "ok" for e in doc["settings"]) else "complete")
    if interrupted:
        doc["interrupted"] = {"signal": interrupted, "at": doc["finished"]}
    state.write(with_figure=True)


def run_sweep(options: RunOptions = RunOptions(),
              profile: Optional[Dict[str, Any]] = None) -> SweepResult:
    """Run every setting of ``options.profile``'s sweep with ``options.sweep`` applied into
    ``<output-dir>/<profile>/<slug>/`` and write the sweep's ``sweep.json`` and ``index.html``.
    Raises :class:`ParameterError` before anything runs when the sweep or a setting's parameters
    are bad (or there is no sweep), and ``RunLocked`` when another sweep holds the folder;
    ``dry_run`` checks and returns the settings' parameters in ``doc["settings"]``."""
    from unirepclip.workbook.sweep.parallel import run_parallel
    prof = profile if profile is not None else load_profile(options.profile)
    spec = build_spec(prof, options.sweep)
    if spec is None:
        raise ParameterError([f"profile {prof['name']!r} has no sweep: section and no --sweep "
                              "flag was given"])
    options = options.replace(profile=prof["path"], only=list(options.only or spec.only or [])
                              or None)
    folder = _folder.report_folder(options.output_root, prof["name"])
    notebooks = inspect_notebooks(options.notebooks_path)
    dry = _check(options, spec, prof, folder, notebooks)
    gpu_ids = _gpu_ids(options, dry)
    doc = _document(options, spec, prof, dry)
    if options.executor == "slurm":  # the settings as one Slurm job array
        from unirepclip.workbook.sweep.slurm import run_on_slurm
        return run_on_slurm(SweepState(folder, doc, spec), options, dry, prof)
    if options.dry_run:
        doc["status"] = "dry run"
        return SweepResult(folder, doc)
    lock = _acquire(folder, options)
    state = SweepState(folder, doc, spec)
    options = options.replace(output_dir=folder, kernel=options.kernel or ensure_kernel())
    interrupted: Optional[str] = None
    guard = SignalGuard()
    try:
        state.write()
        guard.open()
        interrupted = (_serial(state, options, notebooks, prof) if options.jobs == 1 else
                       run_parallel(state, options, dry, gpu_ids))
    except RunInterrupted as e:
        interrupted = e.signal
    finally:
        guard.close()
        _finish(state, interrupted)
        lock.release()
    return SweepResult(folder, doc, interrupted)
