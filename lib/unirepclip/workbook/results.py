"""How notebooks record their results, machine-readably, for ``reports/<profile>/results.json``.

A notebook's first cell opens a :class:`Recorder` (``workbook.setup`` does it and hands it back as
``lm.results``; the runner sets ``output_dir`` and ``results_path`` as notebook parameters)::

    lm = workbook.setup(..., output_dir=output_dir, results_path=results_path)
    ...
    lm.results.record("zeroshot", {"acc1": acc1, "acc5": acc5, "tasks": {"shape": {...}}})
    lm.results.record("zeroshot.tasks.colour.acc1", 0.93)      # a dotted name is a path of keys
    lm.results.record(("zeroshot", "per_class", "St. Bernard"), 0.8)  # parts that hold dots
    lm.results.record_many({"retrieval.image_to_text.r1": 0.41, "retrieval.text_to_image.r1": 0.38})
    lm.results.headline("zeroshot.acc1", "zero-shot top-1 (shape)", fmt=".1%")
    lm.results.save_figure(fig, "02_zeroshot_confusion", headline=True, caption="...")

Without the model stack, ``Recorder(output_dir, results_path)`` opens one directly; it is also a
context manager, and ``close()`` ends it (a later call is refused, naming the file).

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
and shows the headline numbers and figures on the index page. Opening a recorder starts a fresh
record (and removes a stale file), so a rerun never carries old keys. With ``results_path=None``
results are kept in memory only, which is handy in a scratch session.

The module's functions (:func:`to_jsonable`, :func:`merge`, :func:`get_path`, :func:`flatten`,
:func:`dump_json`, :func:`load`) are pure helpers the runner and the report pages share.
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
    "FORMAT", "Key", "Recorder", "SavedFiles", "dump_json", "load", "merge", "flatten", "get_path",
    "to_jsonable", "NOTEBOOK_OUTPUT_DIR", "session_output_dir",
]

FORMAT = "unirepclip.results/1"

PathLike = Union[str, os.PathLike]

#: The ``output_dir`` every notebook's parameters cell declares. Only a notebook run by hand passes
#: it (the runner injects its report folder, an absolute path): relative to the kernel's folder,
#: ``notebooks/``, it would put a report folder beside the notebooks.
NOTEBOOK_OUTPUT_DIR = "reports/demo"


def session_output_dir(output_dir: Optional[PathLike]) -> Optional[Path]:
    """The folder a notebook's recorder writes to: ``output_dir`` as given, except the notebooks'
    own default (:data:`NOTEBOOK_OUTPUT_DIR`, a notebook run by hand): then a new temporary
    folder, so an interactive session never writes beside the notebooks nor into the batch run's
    report (``make reports`` writes that one)."""
    if output_dir is None or os.fspath(output_dir) != NOTEBOOK_OUTPUT_DIR:
        return None if output_dir is None else Path(output_dir)
    return Path(tempfile.mkdtemp(prefix="unirepclip-session-"))

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


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a reader (or a full disk) never leaves half a file
    in its place; an ``OSError`` names ``path`` (a full disk's does not by itself). The file gets
    the permissions the process umask gives."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp makes the file 0600; a report file is as readable as any other file written
        # here (the process umask decides).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def dump_json(doc: Any, path: PathLike) -> None:
    """Write ``doc`` as strict, indented JSON to ``path`` atomically (NaN and infinity are
    refused; see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n")


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


def _figure_entry(name: str, paths: Iterable[Path], root: Path, headline: bool,
                  caption: Optional[str]) -> Dict[str, Any]:
    """A figure's line in the results file, its files relative to the report folder (if inside)."""
    files = {}
    for p in paths:
        p = Path(p)
        try:
            rel = p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            rel = str(p)
        files[p.suffix.lstrip(".")] = rel
    return {"name": name, "files": files, "headline": bool(headline), "caption": caption}


class SavedFiles(List[Path]):
    """The paths :meth:`Recorder.save_figure` wrote: a list, which a notebook does not display
    when a cell ends with the call (IPython asks ``_ipython_display_`` and shows nothing). A
    report must not print them: they name the run's temporary folder, gone once it completes,
    and the results file lists the figure's files already."""

    def _ipython_display_(self) -> None:
        return None


class Recorder:
    """One notebook's record: its results, headline marks and saved figures.

    ``output_dir`` is the report folder (figures go to ``<output_dir>/figures``; None: figures
    cannot be saved); ``results_path`` the file rewritten after every call (None: in memory only). Opening
    removes an existing ``results_path`` file: a rerun must not keep keys it no longer measures.
    """

    def __init__(self, output_dir: Optional[PathLike] = None,
                 results_path: Optional[PathLike] = None) -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.results_path = None if results_path in (None, "") else Path(results_path)
        self._results: Dict[str, Any] = {}
        self._headline: List[Dict[str, Any]] = []
        self._figures: List[Dict[str, Any]] = []
        self.closed = False
        if self.results_path is not None and self.results_path.exists():
            self.results_path.unlink()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Recorder({self.results_path or 'in memory'}, {state})"

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the record; what was recorded stays in the file, a later call is refused."""
        self.closed = True

    def record(self, name: Key, value: Any) -> Any:
        """Record ``value`` at the key path ``name`` (``"a.b.c"``, or ``("a", "b.c")`` when a part
        holds a dot); dict values merge into what is there. Returns the JSON form of ``value``."""
        self._check_open()
        data = to_jsonable(value, _name(name))
        merge(self._results, _nest(name, data))
        self._write()
        return data

    def record_many(self, values: Mapping[str, Any]) -> None:
        """Record several results at once, each key a (possibly dotted) name; a bad value records
        nothing."""
        self._check_open()
        if not isinstance(values, Mapping):
            raise TypeError("record_many expects a mapping of name -> value, got "
                            f"{type(values).__name__}")
        staged: Dict[str, Any] = {}
        for k, v in values.items():  # convert all first, so a bad value records nothing
            merge(staged, _nest(k, to_jsonable(v, k)))
        merge(self._results, staged)
        self._write()

    def get(self, name: Key) -> Any:
        """A value recorded so far, by dotted name or sequence of parts."""
        return get_path(self._results, name)

    def current(self) -> Dict[str, Any]:
        """A copy of everything recorded so far (the ``results`` part of the file)."""
        return copy.deepcopy(self._results)

    def headline(self, name: Key, label: Optional[str] = None, fmt: Optional[str] = None) -> None:
        """Mark the recorded result ``name`` as a headline number for the index page.

        ``label`` is the text shown (default: the name); ``fmt`` a format spec such as ``".1%"``
        (default: ``.4g`` for floats). The result must already be recorded.
        """
        self._check_open()
        value = self.get(name)
        if fmt is not None:
            try:
                format(value, fmt)
            except (ValueError, TypeError) as e:
                raise ValueError(f"headline {_name(name)!r}: format {fmt!r} does not apply to "
                                 f"{value!r}: {e}") from None
        key = name if isinstance(name, str) else list(name)
        entry = {"key": key, "label": label if label is not None else _name(name), "fmt": fmt}
        self._headline = [h for h in self._headline if h["key"] != key] + [entry]
        self._write()

    def save_figure(self, fig: Any, name: str, formats: Iterable[str] = style.FORMATS, *,
                    dpi: Optional[float] = None, headline: bool = False,
                    caption: Optional[str] = None) -> SavedFiles:
        """Save ``fig`` with :func:`unirepclip.viz.style.save` into ``<output_dir>/figures`` and
        list it in the results file; ``headline=True`` puts a thumbnail on the index page, with
        ``caption`` under it (required: the index has no other words for it). Returns the paths
        written (:class:`SavedFiles`: a cell ending in this call shows nothing)."""
        self._check_open()
        if self.output_dir is None:
            raise RuntimeError(f"save_figure {name!r}: this recorder has no output_dir; open it "
                               "with one (workbook.setup(output_dir=...), the runner passes it)")
        if headline and not (isinstance(caption, str) and caption.strip()):
            raise ValueError(f"save_figure {name!r}: a headline figure needs a caption (the index "
                             "shows it under the thumbnail, where the file name would be)")
        paths = style.save(fig, name, self.output_dir, formats, dpi=dpi)
        entry = _figure_entry(name, paths, self.output_dir, headline, caption)
        self._figures = [f for f in self._figures if f["name"] != name] + [entry]
        self._write()
        return SavedFiles(paths)

    def document(self) -> Dict[str, Any]:
        """The results file's content as it stands (a copy)."""
        return copy.deepcopy({"format": FORMAT, "results": self._results,
                              "headline": self._headline, "figures": self._figures})

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"results recorder {self.results_path or '(in memory)'} is closed")

    def _write(self) -> None:
        if self.results_path is not None:
            dump_json(self.document(), self.results_path)
