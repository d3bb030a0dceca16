"""The order in which a run executes its notebooks: one after another, or ``jobs`` at once
(``--jobs N`` on a plain run: each notebook in its own kernel, on its own share of the cores;
the notebooks of the workbook are independent, and each writes its own staging folder).

Either way a notebook runs into ``<out>/.partial/<NN_name>/``, is rendered there, and its outputs
replace the old ones in one critical section (:meth:`~unirepclip.workbook.run.signals.SignalGuard.
atomic` when sequential; a lock when parallel, where the main thread alone takes signals: it stops
every kernel, waits for the workers, and the notebooks they were running read ``interrupted``)."""
from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional

from unirepclip.workbook.params import Notebook
from unirepclip.workbook.report import export_html, now
from unirepclip.workbook.run import folder as _folder
from unirepclip.workbook.run.signals import RunInterrupted, SignalGuard

__all__ = ["run_one", "run_sequential", "run_parallel"]


def _log(state: Any, msg: str) -> None:
    if not state.options.quiet:  # one write: lines from two workers must not interleave
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def _staged(params: Dict[str, Any], stage: Path, name: str) -> Dict[str, Any]:
    staged = dict(params)
    if "output_dir" in staged:
        staged["output_dir"] = str(stage)
    if "results_path" in staged:
        staged["results_path"] = str(stage / "results" / f"{name}.json")
    return staged


def _keep_earlier(state: Any, rec: Any, previous: Dict[str, Dict[str, Any]]) -> None:
    """A stopped notebook shows its earlier run's outputs, if any, and says so."""
    rec.status, rec.finished = "interrupted", now()
    old = previous.get(rec.name)
    if old and old.get("html") and (state.plan.out / old["html"]).is_file():
        rec.kept = (f"the outputs shown are the earlier run's ({old.get('status')}, "
                    f"finished {old.get('finished')})")
        rec.html, rec.ipynb = old.get("html"), old.get("ipynb")


def _render(state: Any, nb: Notebook, out_ipynb: Path, stage: Path,
            error: Optional[str]) -> tuple:
    """The executed notebook's HTML in the staging folder; a report that cannot be rendered is
    a failure of the notebook, not a crash of the run."""
    try:
        if out_ipynb.exists():
            _folder.unstage_paths(out_ipynb, stage, state.plan.out)
        export_html(out_ipynb, stage / f"{nb.name}.html", hide_code=state.options.hide_code)
        return error, f"{nb.name}.html"
    except Exception as e:
        return error or f"HTML export failed: {type(e).__name__}: {e}", None


def run_one(state: Any, nb: Notebook, engine: Any, critical: Callable[[], ContextManager],
            previous: Dict[str, Dict[str, Any]], stopped: Callable[[], bool] = lambda: False
            ) -> None:
    """Run one notebook into its staging folder, render it, and move its outputs into place
    inside ``critical()``; ``stopped()`` true when it returns means the run was interrupted
    meanwhile (its kernel ended): nothing is moved."""
    out, rec = state.plan.out, state.runs[nb.name]
    stage = out / _folder.PARTIAL_DIR / nb.name
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "results").mkdir(parents=True)
    with critical():
        rec.status, rec.started = "running", now()
        state.write()
    t0 = time.perf_counter()
    out_ipynb = stage / f"{nb.name}.ipynb"
    try:
        error = engine.execute(nb, _staged(state.plan.injected[nb.name], stage, nb.name),
                               out_ipynb)
        error, html_name = _render(state, nb, out_ipynb, stage, error)
    except RunInterrupted:
        rec.duration_s = round(time.perf_counter() - t0, 2)
        _keep_earlier(state, rec, previous)
        raise
    with critical():
        rec.duration_s = round(time.perf_counter() - t0, 2)
        if stopped():
            _keep_earlier(state, rec, previous)
            return
        has_ipynb = out_ipynb.exists()
        _folder.commit_outputs(out, stage, nb.name)
        rec.status, rec.finished, rec.error = "failed" if error else "ok", now(), error
        rec.html, rec.ipynb = html_name, f"{nb.name}.ipynb" if has_ipynb else None
        state.write()
    shutil.rmtree(stage, ignore_errors=True)


def _done(state: Any, nb: Notebook, i: int, n: int) -> None:
    rec = state.runs[nb.name]
    if rec.status != "interrupted":
        _log(state, f"[{i}/{n}] {nb.name}: {rec.status} ({rec.duration_s:.1f} s)"
             + (f": {rec.error}" if rec.error else ""))


def run_sequential(state: Any, todo: List[Notebook], engine: Any, guard: SignalGuard,
                   previous: Dict[str, Dict[str, Any]]) -> None:
    """The notebooks one after another; a signal stops the run at once (RunInterrupted)."""
    for i, nb in enumerate(todo, 1):
        _log(state, f"[{i}/{len(todo)}] {nb.name} ...")
        run_one(state, nb, engine, guard.atomic, previous)
        _done(state, nb, i, len(todo))


@contextlib.contextmanager
def _quiet_papermill() -> Iterator[None]:
    """papermill's log (which nbclient writes to) off for the block; as it was after."""
    log = logging.getLogger("papermill")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def run_parallel(state: Any, todo: List[Notebook], engine: Any,
                 previous: Dict[str, Dict[str, Any]]) -> None:
    """The notebooks ``state.options.jobs`` at a time, in threads (the kernels are processes).
    A signal reaches the main thread, which ends every kernel, waits for the workers and
    raises :class:`RunInterrupted`."""
    from concurrent.futures import ThreadPoolExecutor

    lock, stop = threading.Lock(), threading.Event()
    order = {nb.name: i for i, nb in enumerate(todo, 1)}

    def work(nb: Notebook) -> None:
        if stop.is_set():
            return
        _log(state, f"[{order[nb.name]}/{len(todo)}] {nb.name} ...")
        run_one(state, nb, engine, lambda: lock, previous, stop.is_set)
        _done(state, nb, order[nb.name], len(todo))

    pool = ThreadPoolExecutor(max_workers=state.options.jobs, thread_name_prefix="notebook")
    futures = [pool.submit(work, nb) for nb in todo]
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.1)
        for f in futures:
            f.result()  # a worker's exception (a full disk) ends the run as a sequential one would
    except RunInterrupted:
        stop.set()
        with _quiet_papermill():  # a kernel ended under papermill: its log line is no news
            engine.stop_kernels()
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

