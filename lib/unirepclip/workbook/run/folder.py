"""The report folder: its lock, who holds it, its state as a reader sees it, and moving a notebook's
complete outputs into place.

A run holds ``<out>/.run.lock`` (``filelock``) for as long as it writes the folder; a second run
refuses (:class:`RunLocked`, naming the holder's command, pid and start time) or waits. A manifest
that says ``running`` while nobody holds the lock belongs to a run that died (``kill -9``, power
lost): :func:`read_manifest` reads it as ``interrupted`` and rewrites the manifest and index to
say so, so the page and the API never disagree."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from unirepclip.workbook import results as _results
from unirepclip.workbook.params import ParameterError, check_folder_name
from unirepclip.workbook.report import write_index

__all__ = ["LOCK_FILE", "HOLDER_FILE", "PARTIAL_DIR", "SWEEP_FILE", "RunLocked", "report_folder",
           "folder_lock", "holder", "folder_locked", "mark_dead", "read_manifest", "read_docs",
           "commit_outputs", "unstage_paths"]

LOCK_FILE = ".run.lock"           # held (filelock) for as long as a run writes the folder
HOLDER_FILE = ".run-holder.json"  # who holds it: command, pid, start time
PARTIAL_DIR = ".partial"          # a notebook's new outputs, until they are complete
SWEEP_FILE = "sweep.json"         # in <output-dir>/<profile>/ when that folder is a sweep's
_DIED = "the process that ran it stopped without finishing (it no longer holds the folder's lock)"


class RunLocked(RuntimeError):
    """Another run holds the report folder (see :class:`~unirepclip.workbook.run.RunOptions`'s
    ``wait``)."""


def report_folder(root: Union[str, os.PathLike], name: str) -> Path:
    """``<root>/<name>``, resolved, checked to lie strictly inside ``root`` (a symlink or a name
    that climbs out is a :class:`ParameterError`)."""
    bad = check_folder_name(name)
    if bad:
        raise ParameterError([f"report folder name {name!r}: {bad}"])
    root_r = Path(root).resolve()
    out = (root_r / name).resolve()
    if out == root_r or not out.is_relative_to(root_r):
        raise ParameterError([f"report folder {root_r / name} resolves to {out}, outside "
                              f"--output-dir {root_r}"])
    return out


def folder_lock(out: Path, name: str = LOCK_FILE):
    from filelock import FileLock
    return FileLock(str(out / name))


def holder(out: Path) -> str:
    """Who holds the folder, as one phrase."""
    try:
        h = json.loads((out / HOLDER_FILE).read_text())
        return (f"pid {h.get('pid')}, started {h.get('started')}: "
                f"{' '.join(map(str, h.get('command') or []))}")
    except (OSError, ValueError, AttributeError):
        return "its details are not recorded yet"


def folder_locked(out: Union[str, os.PathLike], name: str = LOCK_FILE) -> bool:
    """True while a run holds the report folder ``out``."""
    from filelock import Timeout
    out = Path(out)
    if not (out / name).exists():
        return False
    lock = folder_lock(out, name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def mark_dead(m: Dict[str, Any], why: str, at: Optional[str]) -> Dict[str, Any]:
    """A manifest whose run stopped without saying so, marked: the run interrupted, its running
    notebook interrupted, its pending ones not run."""
    m["status"] = "interrupted"
    m.setdefault("interrupted", {"signal": None, "at": at, "reason": why})
    for r in m.get("notebooks", []):
        if r.get("status") == "running":
            r["status"] = "interrupted"
        elif r.get("status") == "pending":
            r["status"] = "not run"
    return m


def read_docs(folder: Path, names: List[str]) -> Dict[str, Optional[Dict[str, Any]]]:
    """Each notebook's own results file (None where it is missing or unreadable)."""
    docs: Dict[str, Optional[Dict[str, Any]]] = {}
    for name in names:
        try:
            docs[name] = _results.load(folder / "results" / f"{name}.json")
        except (OSError, ValueError):
            docs[name] = None
    return docs


def _repair(folder: Path, m: Dict[str, Any]) -> None:
    """Rewrite a dead run's manifest and index as interrupted, holding the lock meanwhile (a run
    that starts now wins, and writes its own)."""
    from filelock import Timeout
    lock = folder_lock(folder)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return
    try:
        names = [r.get("name") for r in m.get("notebooks", []) if isinstance(r, dict)]
        write_index(folder, m, read_docs(folder, names))
    except OSError:
        pass  # a read-only copy of the folder: the reader still gets the right state
    finally:
        lock.release()


def read_manifest(folder: Union[str, os.PathLike]) -> Optional[Dict[str, Any]]:
    """A report folder's ``manifest.json`` (None if there is none or it is unreadable); one left
    ``running`` by a process that no longer holds the folder's lock reads as ``interrupted``, and
    its manifest and index are rewritten to say so."""
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    if m.get("status") == "running" and not folder_locked(folder):
        mark_dead(m, _DIED, None)
        _repair(folder, m)
    return m


def _figure_files(results_file: Path) -> List[str]:
    try:
        return [rel for f in _results.load(results_file).get("figures", [])
                for rel in f.get("files", {}).values()]
    except (OSError, ValueError):
        return []


def commit_outputs(out: Path, stage: Path, name: str) -> None:
    """Move a notebook's complete new outputs from ``stage`` into ``out``, replacing its old ones
    (figures the old results listed, its per-item outcomes ``items/<name>.npz``, its results
    file, ipynb and HTML)."""
    old = out / "results" / f"{name}.json"
    new_figs = set(_figure_files(stage / "results" / f"{name}.json"))
    for rel in _figure_files(old):
        p = out / rel
        if rel not in new_figs and p.is_file() and p.resolve().is_relative_to(out.resolve()):
            p.unlink()
    for rel in sorted(new_figs):
        src = stage / rel
        if src.is_file() and src.resolve().is_relative_to(stage.resolve()):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, out / rel)
    items = stage / "items" / f"{name}.npz"  # per-item outcomes, for paired tests (issue 25)
    if items.is_file():
        (out / "items").mkdir(exist_ok=True)
        os.replace(items, out / "items" / f"{name}.npz")
    else:
        (out / "items" / f"{name}.npz").unlink(missing_ok=True)
    staged = stage / "results" / f"{name}.json"
    if staged.is_file():
        os.replace(staged, old)
    else:
        old.unlink(missing_ok=True)
    for suffix in (".ipynb", ".html"):
        src = stage / f"{name}{suffix}"
        if src.is_file():
            os.replace(src, out / f"{name}{suffix}")
        else:
            (out / f"{name}{suffix}").unlink(missing_ok=True)


def unstage_paths(ipynb: Path, stage: Path, out: Path) -> None:
    """The executed notebook names the final folder, not the staging one, in its injected
    parameters (what a reader can rerun)."""
    import nbformat
    doc = nbformat.read(str(ipynb), as_version=4)
    for cell in doc.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace(str(stage), str(out))
    nbformat.write(doc, str(ipynb))
