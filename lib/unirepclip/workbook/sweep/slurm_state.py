"""A Slurm sweep's page from its tasks' state files (see :mod:`unirepclip.workbook.sweep.slurm`):
read by whichever task changes state, the watching submitter and ``unirepclip status DIR``.

Rendering holds a short-lived lock file (created exclusively: no ``flock``), so renders follow one
another and the last one has read every state written before it began. A setting whose state
file still says queued or running while Slurm's accounting (``sacct``) says its task ended
(cancelled, killed, failed, out of memory, its node lost) is shown failed."""
from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

from unirepclip.workbook.report import now
from unirepclip.workbook.run.shared_fs import SharedLock, process_alive, read_states

__all__ = ["LOCK_NAME", "SLURM_DIR", "render", "render_lock", "save_spec", "slurm_active",
           "sacct_states", "FINAL_SLURM_STATES"]

SLURM_DIR = "slurm"                  # submitit's files
LOCK_NAME = ".sweep.slurm-lock"      # the sweep folder's lock while its array runs
_RENDER_LOCK = ".render.lock"
_SPEC = "sweep-spec.pickle"
#: Slurm states after which a task runs no more (a requeued one reads PENDING/REQUEUED).
FINAL_SLURM_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                      "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
_SHOWN = {"queued", "running", "ok", "failed"}


def save_spec(folder: Path, spec: Any) -> None:
    """Keep the sweep's spec (its comparison and reference) for the renders to come."""
    (folder / SLURM_DIR).mkdir(parents=True, exist_ok=True)
    with open(folder / SLURM_DIR / _SPEC, "wb") as f:
        pickle.dump(spec, f)


def _load_spec(folder: Path) -> Any:
    with open(folder / SLURM_DIR / _SPEC, "rb") as f:
        return pickle.load(f)


def sacct_states(job_id: str) -> Dict[str, str]:
    """Slurm's state of each task of array ``job_id``: ``"<job>_<index>"`` -> state (empty when
    sacct cannot answer)."""
    try:
        r = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", str(job_id)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in r.stdout.splitlines():
        jid, _, st = line.partition("|")
        if jid and st:
            out[jid.strip()] = st.split()[0].strip() if st.split() else st
    return out


def slurm_active(holder: Mapping[str, Any]) -> bool:
    """Whether a sweep lock's holder still runs: its array has a task that is not final (while it
    is being submitted, whether the submitting process lives)."""
    job = holder.get("job_id")
    if not job:
        return process_alive(holder)
    states = sacct_states(str(job))
    if not states:
        return True  # accounting does not answer: do not break somebody's lock
    return any(st not in FINAL_SLURM_STATES for st in states.values())


def _apply(doc: Dict[str, Any], sweep: Any, states: Dict[str, Dict[str, Any]]) -> None:
    job = (doc.get("slurm") or {}).get("job_id")
    tasks = (doc.get("slurm") or {}).get("tasks") or {}
    sub = (doc.get("slurm") or {}).get("submission")
    slurm = sacct_states(job) if job else {}
    for e in doc["settings"]:
        st = states.get(e["slug"])
        if st is None:
            continue
        told = slurm.get(str(tasks.get(e["slug"])))
        if sub is not None and st.get("submission") != sub:
            # written by a task of an earlier submission after this one was queued: not its
            # state; Slurm's says whether this one's task runs yet
            st = {"status": "running" if told == "RUNNING" else "queued"}
        status = st.get("status") if st.get("status") in _SHOWN else e["status"]
        if status in ("ok", "failed"):
            sweep.refresh(e["slug"])
        if status in ("queued", "running") and told in FINAL_SLURM_STATES:
            status = "failed"
            e["errors"] = [f"Slurm reports the task {told} without a final state from it; see "
                           f"logs/{e['slug']}.log; `run --resume` finishes it"]
        elif st.get("error"):
            e["errors"] = list(e.get("errors") or []) + [st["error"]]
        e["status"] = status
        e["slurm"] = {"task": tasks.get(e["slug"]), "job_id": st.get("job_id"),
                      "attempt": st.get("attempt"), "state": told, "updated": st.get("updated")}


def render(folder: Path, timeout_s: float = 60.0) -> Dict[str, Any]:
    """Re-render ``sweep.json`` and ``index.html`` from the state files; returns the document.
    The sweep is ``running`` while a setting is queued or running, then ``complete`` or
    ``failed``; once it is, the folder's Slurm lock is released."""
    from unirepclip.workbook.sweep.runner import SweepState
    folder = Path(folder)
    with render_lock(folder, timeout_s):
        doc = json.loads((folder / "sweep.json").read_text())
        sweep = SweepState(folder, doc, _load_spec(folder))
        _apply(doc, sweep, read_states(folder))
        pending = any(e["status"] in ("queued", "running") for e in doc["settings"])
        doc["status"] = "running" if pending else (
            "complete" if all(e["status"] == "ok" for e in doc["settings"]) else "failed")
        if not pending and not doc.get("finished"):
            doc["finished"] = now()
        sweep.write(with_figure=not pending)
    if not pending:
        _release_if_ours(folder, doc)
    return doc


@contextlib.contextmanager
def render_lock(folder: Path, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold the sweep page's lock (renders, and a submission's rewrite of ``sweep.json``, follow
    one another); a holder that keeps it past ``timeout_s`` is taken as hung and overridden
    (renders are idempotent)."""
    lock = SharedLock(Path(folder) / _RENDER_LOCK)
    end = time.monotonic() + timeout_s
    while lock.acquire({"render": True}) is not None:
        if time.monotonic() > end:
            lock.release()
            continue
        time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()


def _release_if_ours(folder: Path, doc: Mapping[str, Any]) -> None:
    lock = SharedLock(folder / LOCK_NAME)
    held: Optional[Dict[str, Any]] = lock.holder()
    job = (doc.get("slurm") or {}).get("job_id")
    if held and job and str(held.get("job_id")) == str(job):
        lock.release()
