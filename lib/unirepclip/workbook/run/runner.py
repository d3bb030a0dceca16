"""Run the workbook's notebooks into ``<output-dir>/<profile>/`` (:func:`run`).

1. finds ``notebooks/NN_*.ipynb`` and reads each one's parameters cell
   (:mod:`unirepclip.workbook.params.notebooks`);
2. resolves and checks every notebook's parameters before any notebook starts
   (:mod:`unirepclip.workbook.params.resolve`); the runner adds ``output_dir`` and
   ``results_path`` to notebooks that declare them;
3. executes each notebook with the engine (papermill, a fresh kernel) into the folder's
   ``.partial/<NN_name>/`` and renders its HTML; a notebook that fails still gets both, is marked
   failed, and the run goes on; its outputs replace the old ones only once complete;
4. merges the notebooks' results into ``results.json`` and writes ``manifest.json`` and
   ``index.html`` at the start (each notebook ``pending``) and as each notebook ends.

A run is a transaction on its report folder (:mod:`.folder`): a lock, a private kernel folder,
signals that mark the run ``interrupted`` (:mod:`.signals`), ``--resume`` that keeps what is
current (:mod:`.provenance`). Any other exception (a full disk) also ends the run as failed, with
the manifest and index saying so, before it propagates."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from unirepclip.workbook import results as _results
from unirepclip.workbook.params import (RESERVED, Notebook, ParameterError, Request,
                                        default_value, inspect_notebooks, load_profile,
                                        overrides_dict, resolve_parameters, select)
from unirepclip.workbook.report import RunFacts, build_manifest, git_state, now, write_index
from unirepclip.workbook.run import folder as _folder
from unirepclip.workbook.run.engine import PapermillEngine
from unirepclip.workbook.run.options import RunOptions
from unirepclip.workbook.run.provenance import (NotebookRun, checkpoint_record, file_sha256,
                                                source_sha256, stale_reason)
from unirepclip.workbook.run.schedule import run_parallel, run_sequential
from unirepclip.workbook.run.signals import RunInterrupted, SignalGuard

__all__ = ["Plan", "RunResult", "plan", "run"]


@dataclasses.dataclass
class RunResult:
    """What :func:`run` did: the report folder, each notebook's outcome and the manifest.
    ``interrupted`` names the signal that stopped the run (None when it finished)."""

    profile: str
    output_dir: Path
    notebooks: List[NotebookRun]
    manifest: Dict[str, Any]
    results: Dict[str, Any]
    interrupted: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when no notebook of this run failed and the run was not interrupted."""
        return self.interrupted is None and all(
            r.status not in ("failed", "interrupted") for r in self.notebooks if not r.earlier)

    @property
    def index(self) -> Path:
        return self.output_dir / "index.html"


@dataclasses.dataclass
class Plan:
    """A run, checked and ready: the profile, every notebook and the chosen ones, the report
    folder, and each chosen notebook's parameters (``injected``: what the engine passes, the
    reserved ones included; ``effective``: every value it runs with, its defaults included).
    ``setting`` is the sweep setting (slug and values) this run is, if any."""

    profile: Dict[str, Any]
    notebooks: List[Notebook]
    chosen: List[Notebook]
    out: Path
    injected: Dict[str, Dict[str, Any]]
    effective: Dict[str, Dict[str, Any]]
    setting: Optional[Dict[str, Any]] = None


def plan(options: RunOptions, notebooks: Optional[List[Notebook]] = None,
         setting: Optional[Any] = None, profile: Optional[Dict[str, Any]] = None) -> Plan:
    """Everything :func:`run` checks before it runs (``--dry-run`` stops here). ``notebooks``:
    already inspected (a sweep inspects once for all its settings); ``setting``: one sweep
    setting (``slug``, ``values``, ``sources``) whose folder is ``<output-dir>/<slug>``;
    ``profile``: ``options.profile`` already loaded (a profile file is read once per command)."""
    prof = profile if profile is not None else load_profile(options.profile)
    notebooks = notebooks if notebooks is not None else inspect_notebooks(options.notebooks_path)
    chosen = select(notebooks, options.only)
    request = Request(options.overrides, setting.values if setting else None,
                      setting.sources if setting else None)
    params = resolve_parameters(notebooks, prof, request, chosen)
    out = _folder.report_folder(options.output_root, setting.slug if setting else prof["name"])
    if setting is None and (out / _folder.SWEEP_FILE).exists():
        raise ParameterError([f"report folder {out} holds a sweep ({out / _folder.SWEEP_FILE}); "
                              "run the sweep again (--sweep or the profile's sweep:) or choose "
                              "another --output-dir"])
    injected, effective = {}, {}
    for nb in chosen:
        reserved = {"output_dir": str(out),
                    "results_path": str(out / "results" / f"{nb.name}.json")}
        injected[nb.name] = {**params[nb.name],
                             **{k: v for k, v in reserved.items() if k in nb.parameters}}
        effective[nb.name] = {**{k: default_value(v) for k, v in nb.parameters.items()
                                 if k not in RESERVED}, **params[nb.name]}
    return Plan(prof, notebooks, chosen, out, injected, effective,
                {"slug": setting.slug, "values": dict(setting.values)} if setting else None)


class _State:
    """The report folder's manifest, index and results.json, rewritten as the run goes."""

    def __init__(self, p: Plan, options: RunOptions, code: Dict[str, Any]):
        self.plan, self.options, self.code = p, options, code
        self.started = now()
        self.runs: Dict[str, NotebookRun] = {}
        self.injected: Dict[str, Dict[str, Any]] = {}
        self.status = "running"
        self.interrupted: Optional[Dict[str, Any]] = None
        self.manifest: Dict[str, Any] = {}
        self.merged: Dict[str, Any] = {}

    def ordered(self) -> List[NotebookRun]:
        return [self.runs[nb.name] for nb in self.plan.notebooks if nb.name in self.runs]

    def write(self) -> None:
        out, runs = self.plan.out, self.ordered()
        docs = _folder.read_docs(out, [r.name for r in runs])
        merged: Dict[str, Any] = {}
        for r in runs:
            doc = docs[r.name]
            if doc is None:
                continue
            _results.merge(merged, doc["results"])
            if r.checkpoint is not None and r.checkpoint.get("sha256") is None:
                try:  # the notebook's own record, where the runner could not hash a file
                    r.checkpoint["sha256"] = _results.get_path(doc["results"], "checkpoint.sha256")
                except KeyError:
                    pass
        _results.dump_json(merged, out / "results.json")
        self.manifest = build_manifest(RunFacts(
            profile=self.plan.profile, command=self.options.full_command, started=self.started,
            finished=None if self.status == "running" else now(), status=self.status,
            overrides=overrides_dict(self.options.overrides),
            parameters={r.name: r.parameters or {} for r in runs}, injected=self.injected,
            runs=[dataclasses.asdict(r) for r in runs], merged_results=merged,
            repo=self.options.notebooks_path, interrupted=self.interrupted, code=self.code,
            setting=self.plan.setting))
        write_index(out, self.manifest, docs)
        self.merged = merged

    def result(self, interrupted: Optional[str] = None) -> RunResult:
        return RunResult(self.plan.profile["name"], self.plan.out, self.ordered(), self.manifest,
                         self.merged, interrupted)


def _log(msg: str, options: RunOptions) -> None:
    if not options.quiet:
        import sys
        print(msg, file=sys.stderr, flush=True)


def _records(state: _State, previous: Dict[str, Dict[str, Any]]) -> List[Notebook]:
    """Each chosen notebook's record (kept by ``--resume``, or to run: returned), and the last
    record of the others, marked as earlier."""
    p, resume = state.plan, state.options.resume
    sha_cache: Dict[str, Optional[str]] = {}
    todo = []
    for nb in p.chosen:
        eff = p.effective[nb.name]
        rec = NotebookRun(nb.name, "pending", None, parameters=eff,
                          checkpoint=checkpoint_record(eff, sha_cache),
                          model_name=eff.get("model_name"), seed=eff.get("seed"),
                          notebook_sha256=file_sha256(nb.path), code=state.code)
        old = previous.get(nb.name)
        why = stale_reason(old, dataclasses.asdict(rec), p.out) if (resume and old) else None
        if resume and old and why is None:
            state.runs[nb.name] = NotebookRun.from_record(
                old, earlier=True, kept="kept by --resume: same parameters, checkpoint, "
                                        "notebook and code; outputs complete")
            _log(f"{nb.name}: kept (--resume)", state.options)
            continue
        if why:
            rec.rerun_because = why
            _log(f"{nb.name}: rerun (--resume): {why}", state.options)
        todo.append(nb)
        state.runs[nb.name] = rec
        state.injected[nb.name] = p.injected[nb.name]
    for nb in p.notebooks:
        if nb.name not in state.runs and nb.name in previous:
            state.runs[nb.name] = NotebookRun.from_record(previous[nb.name], earlier=True)
    return todo


def _end(state: _State, status: str, interrupted: Optional[Dict[str, Any]] = None) -> None:
    """The run's last word in its manifest and index."""
    state.status, state.interrupted = status, interrupted
    for r in state.runs.values():
        if r.status in ("pending", "running") and status != "complete":
            r.status = "not run" if r.status == "pending" else status
    state.write()


def _acquire(out: Path, options: RunOptions):
    from filelock import Timeout
    out.mkdir(parents=True, exist_ok=True)
    lock = _folder.folder_lock(out)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = _folder.holder(out)
        if not options.wait:
            raise _folder.RunLocked(f"report folder {out} is in use by another run ({who}); pass "
                                    "--wait to wait for it, or choose another --output-dir"
                                    ) from None
        _log(f"waiting for the run that holds {out} ({who}) ...", options)
        lock.acquire()
    return lock


def _previous(out: Path) -> Dict[str, Dict[str, Any]]:
    """The folder's last manifest's records (we hold the lock: "running" is a run that died)."""
    prev = _folder.read_manifest(out) or {}
    if prev.get("status") == "running":
        _folder.mark_dead(prev, "the process that ran it stopped without finishing", None)
    return {r.get("name"): r for r in prev.get("notebooks", []) if isinstance(r, dict)}


def _execute_plan(state: _State, engine: Any, guard: SignalGuard) -> RunResult:
    out, options = state.plan.out, state.options
    shutil.rmtree(out / _folder.PARTIAL_DIR, ignore_errors=True)  # a dead run's unfinished outputs
    (out / "results").mkdir(exist_ok=True)
    previous = _previous(out)
    todo = _records(state, previous)
    with guard.atomic():
        state.write()
    try:
        if options.jobs > 1 and len(todo) > 1:
            run_parallel(state, todo, engine, previous)
        else:
            run_sequential(state, todo, engine, guard, previous)
    except RunInterrupted as e:
        guard.close()
        _end(state, "interrupted", {"signal": e.signal, "at": now()})
        _log(f"interrupted by {e.signal}: {out / 'index.html'} says so; `run --resume` "
             "completes it", options)
        return state.result(e.signal)
    except BaseException as e:  # a full disk, a bug: the folder still tells the truth
        why = (f"{type(e).__name__}: {e}".splitlines() or [""])[0]
        for r in state.runs.values():
            if r.status == "running":
                r.error = f"the run stopped: {why}"
        try:
            _end(state, "failed")
        except Exception:
            pass  # the folder cannot be written (the disk is full): the exception says why
        raise
    failed = any(state.runs[nb.name].status == "failed" for nb in todo)
    _end(state, "failed" if failed else "complete")
    return state.result()


def run(options: RunOptions = RunOptions(), *, notebooks: Optional[List[Notebook]] = None,
        setting: Optional[Any] = None, profile: Optional[Dict[str, Any]] = None) -> RunResult:
    """Run ``options.profile``'s notebooks (see the module docstring) and return what happened.

    Raises :class:`ParameterError` before any work for bad parameters, and
    :class:`~unirepclip.workbook.run.folder.RunLocked` when another run holds the folder. A
    plain run refuses a folder that holds a sweep. ``notebooks`` and ``setting``: see
    :func:`plan`."""
    p = plan(options, notebooks, setting, profile)
    if options.dry_run:
        return RunResult(p.profile["name"], p.out,
                         [NotebookRun(nb.name, "not run", None) for nb in p.chosen],
                         {"parameters": p.effective, "injected": p.injected}, {})
    engine = options.engine or PapermillEngine(options.kernel, options.progress,
                                               options.cell_timeout)
    lock = _acquire(p.out, options)
    guard = SignalGuard()
    try:
        _results.dump_json({"pid": os.getpid(), "command": options.full_command,
                            "started": now()}, p.out / _folder.HOLDER_FILE)
        guard.open()
        engine.open()
        code = {**git_state(options.notebooks_path), "source_sha256": source_sha256()}
        return _execute_plan(_State(p, options, code), engine, guard)
    finally:
        guard.close()
        engine.close()
        shutil.rmtree(p.out / _folder.PARTIAL_DIR, ignore_errors=True)
        (p.out / _folder.HOLDER_FILE).unlink(missing_ok=True)
        lock.release()
