"""A report folder on a cluster's shared file system (NFS, Lustre), written by tasks on other
machines long after the submitting shell is gone, without ``flock`` (unreliable there):

* each task writes its own state file, ``states/<slug>.json``, atomically (a temporary file in the
  same folder, flushed, then renamed over the old one: a reader sees the old or the new file,
  never half of one), so no two writers share a file and nothing needs a lock to update a state;
* the folder's lock is a file created with ``O_CREAT | O_EXCL`` (atomic on NFS v3+ and Lustre)
  that names its holder; a holder that is gone (its Slurm job ended, or its process on this host
  died) is broken by renaming the file away, which only one contender can do."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

__all__ = ["STATES_DIR", "SharedLock", "process_alive", "write_json_atomic",
           "write_state", "read_state", "read_states"]

STATES_DIR = "states"


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path``: a uniquely named temporary file beside it, fsynced, then
    renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {e.strerror or e}") from None


def write_state(folder: Path, slug: str, **fields: Any) -> Dict[str, Any]:
    """Replace setting ``slug``'s state file with ``fields`` plus who wrote it and when."""
    doc = {"slug": slug, **fields, "host": socket.gethostname(), "pid": os.getpid(),
           "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (Path(folder) / STATES_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / STATES_DIR / f"{slug}.json", doc)
    return doc


def read_state(folder: Path, slug: str) -> Optional[Dict[str, Any]]:
    """Setting ``slug``'s state file (None when there is none, or it cannot be read)."""
    try:
        doc = json.loads((Path(folder) / STATES_DIR / f"{slug}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_states(folder: Path) -> Dict[str, Dict[str, Any]]:
    """Every readable state file of ``folder``: slug -> state."""
    out: Dict[str, Dict[str, Any]] = {}
    for p in sorted((Path(folder) / STATES_DIR).glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("slug"):
            out[str(doc["slug"])] = doc
    return out


class SharedLock:
    """A lock file for a folder on a shared file system, without ``flock``: :meth:`acquire`
    creates it exclusively with ``holder`` inside, or returns the living holder that has it;
    ``alive(holder)`` says whether a recorded holder still runs (default: its pid, when it ran on
    this host; a holder elsewhere is taken as alive)."""

    def __init__(self, path: Path, alive: Optional[Callable[[Mapping[str, Any]], bool]] = None):
        self.path = Path(path)
        self.alive = alive or process_alive

    def holder(self) -> Optional[Dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written this instant, or garbled: held by somebody
        return doc if isinstance(doc, dict) else {}

    def acquire(self, holder: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """None when this caller now holds the lock; else the holder that does."""
        doc = {**holder, "host": socket.gethostname(), "pid": os.getpid(),
               "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self.holder()
                if held is None:
                    continue  # released meanwhile
                if not held or self.alive(held):
                    return held
                self._break()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            return None
        return self.holder() or {}

    def update(self, **fields: Any) -> None:
        """Add ``fields`` (e.g. the Slurm job id once known) to the holder this process wrote."""
        write_json_atomic(self.path, {**(self.holder() or {}), **fields})

    def _break(self) -> None:
        stale = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.rename(self.path, stale)  # one contender wins the rename; the others retry
            stale.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def process_alive(holder: Mapping[str, Any]) -> bool:
    """Whether a holder's process lives (one on another host is taken as alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid") or 0), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True
