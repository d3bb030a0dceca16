"""How notebooks record their results, machine-readably, for ``reports/<profile>/results.json``.

In a notebook, after the parameters cell::

    from unirepclip.workbook import results
    results.configure(output_dir, results_path)   # both are notebook parameters the runner sets
    ...
    results.record("zeroshot", {"acc1": acc1, "acc5": acc5, "tasks": {"shape": {...}}})
    results.record("zeroshot.tasks.colour.acc1", 0.93)      # a dotted name is a path of keys
    results.record(("zeroshot", "per_class", "St. Bernard"), 0.8)  # parts that hold dots
    results.record_many({"retrieval.image_to_text.r1": 0.41, "retrieval.text_to_image.r1": 0.38})
    results.headline("zeroshot.acc1", "zero-shot top-1 (shape)", fmt=".1%")

Results are nested JSON objects: ``record`` merges a value at a key path, nested dicts merge key by
key (a later value replaces an earlier leaf). Values are converted to plain JSON (numpy and torch
scalars and arrays become numbers and lists); NaN and infinities are refused with the key named,
since JSON has no spelling for them and a NaN metric is a bug to see, not to store.

Each notebook writes its own file (``results_path``, the runner uses
``<output_dir>/results/<notebook>.json``), rewritten atomically after every call so a notebook that
fails half-way still leaves what it measured::

    {"format": "unirepclip.results/1",
     "results":  {...nested results...},
     "headline": [{"key": "zeroshot.acc1" (or a list of parts), "label": "...", "fmt": ".1%"}],
     "figures":  [{"name": "...", "files": {"png": "figures/x.png", ...},
                   "headline": false, "caption": null}, ...]}

The runner deep-merges the ``results`` parts of all notebooks into ``results.json`` (notebook order)
and shows the headline numbers and figures on the index page. ``configure`` starts a fresh record
(and removes a stale file), so a rerun never carries old keys. Without ``configure`` (or with
``results_path=None``) results are kept in memory only, which is handy in a scratch session.
"""
from __future__ import annotations

import copy
import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from unirepclip.viz import style

__all__ = [
    "FORMAT", "Key", "configure", "output_dir", "results_path", "record", "record_many", "headline",
    "get", "current", "load", "merge", "flatten", "get_path", "to_jsonable",
]

FORMAT = "unirepclip.results/1"

PathLike = Union[str, os.PathLike]

_state: Dict[str, Any] = {
    "output_dir": None, "results_path": None, "results": {}, "headline": [], "figures": []}


def configure(output_dir: Optional[PathLike], results_path: Optional[PathLike] = None) -> None:
    """Start recording: figures go to ``<output_dir>/figures``, results to ``results_path``.

    Clears what was recorded before and deletes an existing ``results_path`` file (a rerun must not
    keep keys the new run no longer measures).
    """
    _state["output_dir"] = None if output_dir is None else Path(output_dir)
    _state["results_path"] = None if results_path is None else Path(results_path)
    _state["results"] = {}
    _state["headline"] = []
    _state["figures"] = []
    if _state["results_path"] is not None and _state["results_path"].exists():
        _state["results_path"].unlink()
    style.configure(_state["output_dir"], on_save=_register_figure)


def output_dir() -> Optional[Path]:
    """The report folder set by :func:`configure` (None if not configured)."""
    return _state["output_dir"]


def results_path() -> Optional[Path]:
    """The results file set by :func:`configure` (None if results stay in memory)."""
    return _state["results_path"]


Key = Union[str, Sequence[str]]


def _split(key: Key) -> List[str]:
    """A dotted name, or a sequence of parts (for keys that hold dots themselves, such as class
    names from data), as a list of parts."""
    if isinstance(key, (list, tuple)):
        if not key or not all(isinstance(p, str) and p for p in key):
            raise ValueError(f"result name {key!r} must be non-empty strings")
        return list(key)
    if not isinstance(key, str) or not key:
        raise ValueError(f"result name must be a non-empty string, got {key!r}")
    parts = key.split(".")
    if any(p == "" for p in parts):
        raise ValueError(f"result name {key!r} has an empty part (check the dots)")
    return parts


def _name(key: Key) -> str:
    return key if isinstance(key, str) else ".".join(key)


def to_jsonable(value: Any, key: str = "") -> Any:
    """``value`` as plain JSON data: numpy/torch scalars and arrays become numbers and lists,
    tuples become lists, mapping keys must be strings. Raises ``ValueError`` naming ``key`` for
    NaN/inf and for objects JSON cannot hold."""
    where = key or "<root>"
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"result {where!r} is {v}; JSON cannot hold NaN or infinity")
        return v
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"result {where!r} has a non-string key {k!r}")
            out[k] = to_jsonable(v, f"{key}.{k}" if key else k)
        return out
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays/scalars, torch tensors
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return to_jsonable(value.tolist(), key)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"result {where!r} has a {type(value).__name__}, which JSON cannot hold")


def merge(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``update`` into ``base`` in place (dicts merge key by key, anything else replaces)
    and return ``base``."""
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v) if isinstance(v, (dict, list)) else v
    return base


def _nest(key: Key, value: Any) -> Dict[str, Any]:
    parts = _split(key)
    out: Dict[str, Any] = {}
    node = out
    for p in parts[:-1]:
        node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return out


def record(name: Key, value: Any) -> Any:
    """Record ``value`` at the key path ``name`` (``"a.b.c"``, or ``("a", "b.c")`` when a part
    holds a dot); dict values merge into what is there. Returns the JSON form of ``value``."""
    data = to_jsonable(value, _name(name))
    merge(_state["results"], _nest(name, data))
    _write()
    return data


def record_many(values: Mapping[str, Any]) -> None:
    """Record several results at once: each key is a (possibly dotted) name, see :func:`record`."""
    if not isinstance(values, Mapping):
        raise TypeError("record_many expects a mapping of name -> value, got "
                        f"{type(values).__name__}")
    staged: Dict[str, Any] = {}
    for k, v in values.items():  # convert all first, so a bad value records nothing
        merge(staged, _nest(k, to_jsonable(v, k)))
    merge(_state["results"], staged)
    _write()


def get_path(data: Mapping[str, Any], key: Key) -> Any:
    """The value at the key path ``key`` (dotted, or a sequence of parts) in nested ``data``
    (``KeyError`` naming the first missing part)."""
    node: Any = data
    done = []
    for p in _split(key):
        if not isinstance(node, Mapping) or p not in node:
            at = ".".join(done) or "<root>"
            raise KeyError(f"no result {_name(key)!r}: {at!r} has no key {p!r}")
        node = node[p]
        done.append(p)
    return node


def get(name: Key) -> Any:
    """A value recorded by this notebook, by dotted name or sequence of parts."""
    return get_path(_state["results"], name)


def current() -> Dict[str, Any]:
    """A copy of everything recorded so far in this notebook (the ``results`` part)."""
    return copy.deepcopy(_state["results"])


def headline(name: Key, label: Optional[str] = None, fmt: Optional[str] = None) -> None:
    """Mark the recorded result ``name`` as a headline number for the index page.

    ``label`` is the text shown (default: the name); ``fmt`` a format spec such as ``".1%"`` or
    ``".3f"`` (default: ``.4g`` for floats). The result must already be recorded.
    """
    value = get(name)
    if fmt is not None:
        try:
            format(value, fmt)
        except (ValueError, TypeError) as e:
            raise ValueError(f"headline {_name(name)!r}: format {fmt!r} does not apply to "
                             f"{value!r}: {e}") from None
    key = name if isinstance(name, str) else list(name)
    entry = {"key": key, "label": label if label is not None else _name(name), "fmt": fmt}
    _state["headline"] = [h for h in _state["headline"] if h["key"] != key] + [entry]
    _write()


def _register_figure(name: str, paths: Iterable[Path], root: Path, headline: bool,
                     caption: Optional[str]) -> None:
    """Called by :func:`unirepclip.viz.style.save`: list the files (relative to the report folder
    when they are inside it)."""
    files = {}
    for p in paths:
        p = Path(p)
        try:
            rel = p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            rel = str(p)
        files[p.suffix.lstrip(".")] = rel
    entry = {"name": name, "files": files, "headline": bool(headline), "caption": caption}
    _state["figures"] = [f for f in _state["figures"] if f["name"] != name] + [entry]
    _write()


def _write() -> None:
    path = _state["results_path"]
    if path is None:
        return
    doc = {"format": FORMAT, "results": _state["results"], "headline": _state["headline"],
           "figures": _state["figures"]}
    dump_json(doc, path)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def dump_json(doc: Any, path: PathLike) -> None:
    """Write ``doc`` as strict, indented JSON to ``path`` atomically (a reader never sees half a
    file; NaN and infinity are refused), with the permissions the process umask gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; a report file is as readable as any other file written
        # here (the process umask decides, as for the HTML).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, allow_nan=False, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: PathLike) -> Dict[str, Any]:
    """Read a notebook's results file; raises ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a unirepclip results file (format {FORMAT!r} expected)")
    doc.setdefault("results", {})
    doc.setdefault("headline", [])
    doc.setdefault("figures", [])
    return doc


def flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested results as ``{"a.b.c": leaf}`` (lists are leaves)."""
    out: Dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
