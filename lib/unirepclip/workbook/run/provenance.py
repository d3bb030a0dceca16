"""What a notebook ran with (parameters, checkpoint digest, notebook file, code) and whether an
earlier run's record of it can stand for a run now (``--resume``)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from unirepclip.models.pretrained import MODEL_NAME, demo_checkpoint_path, demo_sha256

__all__ = ["NotebookRun", "STATUSES", "file_sha256", "source_sha256", "checkpoint_record",
           "stale_reason"]

#: A notebook's status in the manifest: ``pending`` (this run will run it), ``running``, ``ok``,
#: ``failed``, ``interrupted`` (stopped by a signal, or its run died), ``not run``.
STATUSES = ("pending", "running", "ok", "failed", "interrupted", "not run")


@dataclasses.dataclass
class NotebookRun:
    """One notebook's outcome and provenance. ``html``/``ipynb`` are file names in the report
    folder; ``parameters`` every parameter's value (reserved ones aside); ``checkpoint`` its path
    and sha256; ``code`` the git state and package source hash it ran with."""

    name: str
    status: str  # one of STATUSES
    duration_s: Optional[float]
    started: Optional[str] = None
    finished: Optional[str] = None
    error: Optional[str] = None
    html: Optional[str] = None
    ipynb: Optional[str] = None
    earlier: bool = False  # carried over from an earlier run (not run by this one)
    kept: Optional[str] = None  # why --resume kept it, or what the outputs shown are
    rerun_because: Optional[str] = None  # why --resume ran it again
    parameters: Optional[Dict[str, Any]] = None
    checkpoint: Optional[Dict[str, Any]] = None
    model_name: Optional[str] = None
    seed: Any = None
    notebook_sha256: Optional[str] = None
    code: Optional[Dict[str, Any]] = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **changes: Any) -> "NotebookRun":
        """An earlier manifest's entry as a record of this run (with ``changes``)."""
        fields = {k: record.get(k) for k in cls.__dataclass_fields__}
        fields.update(changes)
        return cls(**fields)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def source_sha256(root: Optional[Path] = None) -> str:
    """sha256 over the package's files (relative names and contents, ``__pycache__`` aside): what
    the notebooks' code was, with or without git."""
    root = Path(__file__).resolve().parents[2] if root is None else Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(file_sha256(p).encode() + b"\0")
    return h.hexdigest()


def checkpoint_record(params: Mapping[str, Any], cache: Dict[str, Optional[str]]
                      ) -> Dict[str, Any]:
    """``{"path", "sha256"}`` of a notebook's ``checkpoint``: the file's sha256 where it is a
    file, and for ``"demo"`` that of the shipped checkpoint of the notebook's ``model_name``,
    with ``"modified"`` added when that file's digest is not the one recorded beside it (loading
    it is then refused; the record says why)."""
    path, recorded = params.get("checkpoint"), None
    file = path if isinstance(path, str) and path and os.path.isfile(path) else None
    if path == "demo":  # what the loader reads for "demo", whatever is in the working folder
        model = str(params.get("model_name") or MODEL_NAME)
        try:
            file, recorded = str(demo_checkpoint_path(model)), demo_sha256(model)
        except (OSError, ValueError):  # no such demo model, its file or its record is gone
            file = None
    if file is None:
        return {"path": path, "sha256": None}
    if file not in cache:
        cache[file] = file_sha256(Path(file))
    record = {"path": path, "sha256": cache[file]}
    if recorded is not None and recorded != cache[file]:
        record["modified"] = f"not the shipped demo checkpoint, whose sha256 is {recorded}"
    return record


def stale_reason(prev: Mapping[str, Any], now: Mapping[str, Any], out: Path) -> Optional[str]:
    """Why an earlier run's record of a notebook cannot stand for a run now (None: it can)."""
    if prev.get("status") != "ok":
        return f"it was {prev.get('status') or 'not recorded'}"
    for f in (prev.get("html"), prev.get("ipynb"), f"results/{prev.get('name')}.json"):
        if not f or not (out / f).is_file():
            return f"its output {f or '(none)'} is missing"
    if prev.get("parameters") != now["parameters"]:
        a, b = prev.get("parameters") or {}, now["parameters"]
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return "other parameters (" + ", ".join(diff) + ")"
    if (prev.get("checkpoint") or {}).get("sha256") != now["checkpoint"]["sha256"]:
        return "another checkpoint sha256"
    if prev.get("notebook_sha256") != now["notebook_sha256"]:
        return "the notebook file changed"
    pc, nc = prev.get("code") or {}, now["code"]
    if pc.get("source_sha256") != nc["source_sha256"] or pc.get("commit") != nc["commit"]:
        return "other code (git commit or package source)"
    return None
