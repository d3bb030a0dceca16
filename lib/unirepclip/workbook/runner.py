"""Run the workbook's notebooks with papermill and render them to ``reports/<profile>/``.

``python -m unirepclip run --profile demo -p batch_size=32`` (see :func:`run`):

1. finds ``notebooks/NN_*.ipynb`` (two digits, underscore, name), in order;
2. reads each notebook's cell tagged ``parameters`` with ``papermill.inspect_notebook``: the names,
   and the types from an annotation (``n_images: int = 64``), a ``# type: int`` comment, or else the
   type of the default literal;
3. resolves every notebook's parameters (later wins): the notebook's own defaults, the profile's
   ``common`` values, the profile's ``notebooks.<NN_name>`` values, ``-p key=value`` (every
   notebook that has ``key``), ``-p NN_name.key=value`` (that notebook only); the runner adds
   ``output_dir`` and ``results_path`` to notebooks that declare them (they are reserved);
4. validates all of it before any notebook starts and raises one :class:`ParameterError` listing
   every problem: a key that no notebook declares (with close names), a notebook entry for a
   notebook that does not exist, a value of the wrong type (notebook, parameter, expected, got, and
   where the value came from), a placeholder path (``/path/to/...``) still in place, a notebook
   without exactly one ``parameters`` cell, an assignment papermill cannot read;
5. executes each notebook with papermill in a fresh kernel (cwd ``notebooks/``, as in JupyterLab)
   into ``<out>/<NN_name>.ipynb`` and renders ``<NN_name>.html`` with nbconvert; a notebook that
   fails still gets both (papermill saves the partial notebook with the error), is marked failed,
   and the run goes on with the next one;
6. merges the notebooks' results files into ``results.json`` (a failed notebook contributes what it
   recorded before the error; the manifest and index say it failed) and writes ``manifest.json``
   and ``index.html`` (:mod:`unirepclip.report`). :func:`run` returns a :class:`RunResult`; the CLI
   exits non-zero when a notebook failed. With ``--only``, the other notebooks keep their last
   results and appear on the index marked "from an earlier run".

A run is a transaction on its report folder: it holds a lock (``filelock``) on
``<out>/.run.lock`` so a second run into the folder refuses (``RunLocked``, naming the holder's
command, pid and start time) or waits (``wait=True``, ``--wait``); the manifest and index are
written at the start with each notebook ``pending`` and rewritten as each ends; each notebook runs
into ``<out>/.partial/<NN_name>/`` and its outputs replace the old ones only once complete; its
kernel's connection file and IPC sockets live in a private temporary folder removed on every exit;
SIGINT/SIGTERM mark the run and the notebook ``interrupted`` (signal, time) and end its kernel.
``--resume`` keeps what :func:`_stale_reason` finds current. Each parameter's range (beyond its
type) is declared in :data:`RANGES` by name and checked with the types; relative paths resolve
against the caller's folder (``-p``) or the profile file's folder.

A notebook written for the runner has one cell tagged ``parameters`` whose defaults are the demo
profile's values, one ``name = value`` or ``name: type = value`` per line (a trailing comment is
its help), and declares the two reserved parameters when it records results or saves figures::

    seed = 0
    model_name = "UniRepLKNet-Demo"
    checkpoint = "demo"
    device = "cpu"
    n_images: int = 1000         # evaluation images
    output_dir = "../reports/lab"                # the runner passes reports/<profile>
    results_path = None  # type: Optional[str]   # the runner passes .../results/<NN_name>.json

then ``unirepclip.workbook.setup(...)`` in its first code cell, which configures
:mod:`unirepclip.workbook.results` and the figure style (:mod:`unirepclip.viz.style`).

Profiles are YAML files, ``lib/unirepclip/workbook/profiles/<name>.yaml`` or any path::

    description: one line shown by `python -m unirepclip run --list-profiles`
    extends: demo            # optional: start from another profile, then apply this one
    common:                  # given to every notebook that declares the name
      seed: 0
      device: cpu
    notebooks:               # per notebook (file stem), over `common`
      02_zeroshot:
        n_images: 200

Values are YAML; ``-p`` values are parsed as YAML scalars (``-p n=8`` is an int, ``-p x=0.5`` a
float, ``-p x=1e-3`` too, ``-p name='007'`` a string, ``-p path=`` null). Ints are accepted where a
float is declared (and become floats); nothing else is converted. A ``common`` key or a ``-p`` key
must be declared by at least one notebook.

The kernel is this interpreter's: :func:`ensure_kernel` registers the Jupyter kernelspec
``unirepclip`` in ``sys.prefix`` (pointing at ``sys.executable``) once, so a fresh clone whose only
Python is ``.venv`` runs as is, and JupyterLab offers the same kernel (``make lab``).
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from unirepclip.workbook import report as _report
from unirepclip.workbook import results as _results

__all__ = [
    "KERNEL_NAME", "RESERVED", "PROFILES_DIR", "ParameterError", "Parameter", "Notebook",
    "NotebookRun", "RunResult", "YamlLoader", "parse_value", "parse_override", "list_profiles",
    "load_profile", "discover_notebooks", "inspect_notebook", "select", "resolve_parameters",
    "ensure_kernel", "run", "Range", "RANGES", "parameter_range", "check_folder_name",
    "report_folder", "RunLocked", "RunInterrupted", "STATUSES", "folder_locked", "read_manifest",
    "source_sha256",
]

KERNEL_NAME = "unirepclip"
#: Parameters the runner sets itself; profiles and ``-p`` may not.
RESERVED = ("output_dir", "results_path")
PROFILES_DIR = Path(__file__).parent / "profiles"
NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+$")
PLACEHOLDER_PREFIX = "/path/to/"
PROFILE_KEYS = ("description", "extends", "common", "notebooks", "sweep")


class ParameterError(ValueError):
    """Bad profile or notebook parameters, found before any notebook runs. ``problems`` lists
    every one."""

    def __init__(self, problems: Sequence[str], context: str = ""):
        self.problems = list(problems)
        head = f"invalid parameters{' for ' + context if context else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


# -- values ---------------------------------------------------------------------------------------

class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a float (YAML 1.1 reads a string)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."))


def parse_value(text: str) -> Any:
    """A ``-p`` value: a YAML scalar (or flow list/map); empty text is None."""
    try:
        return yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError:
        return text  # e.g. an unbalanced quote: keep the text, the type check will judge it


def parse_override(item: str) -> Tuple[Optional[str], str, Any]:
    """``"key=value"`` or ``"NN_name.key=value"`` -> ``(notebook or None, key, value)``."""
    if "=" not in item:
        raise ParameterError([f"-p {item!r}: expected key=value"])
    key, _, text = item.partition("=")
    key = key.strip()
    scope = None
    if "." in key:
        scope, _, key = key.partition(".")
    if not key.isidentifier() or (scope is not None and not scope):
        raise ParameterError([f"-p {item!r}: {key!r} is not a parameter name"])
    return scope, key, parse_value(text)


# -- profiles -------------------------------------------------------------------------------------

def list_profiles() -> Dict[str, str]:
    """The shipped profiles: name -> description."""
    out = {}
    for p in sorted(PROFILES_DIR.glob("*.yaml")):
        doc = yaml.load(p.read_text(), Loader=YamlLoader) or {}
        out[p.stem] = str(doc.get("description", "")) if isinstance(doc, dict) else ""
    return out


def _profile_file(name_or_path: Union[str, os.PathLike]) -> Path:
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or "/" in s:
        path = Path(s)
    else:
        path = PROFILES_DIR / f"{s}.yaml"
    if not path.is_file():
        known = ", ".join(list_profiles()) or "none"
        raise ParameterError([f"profile {s!r} not found ({path}); shipped profiles: {known}"])
    return path


def load_profile(name_or_path: Union[str, os.PathLike], _seen: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """A profile with ``extends`` applied: ``{"name", "path", "description", "common", "notebooks",
    "sources", "sweep", "sweep_path"}`` where ``sources`` maps ``"common.key"`` / ``"NN_name.key"``
    to the file that set it (for error messages); ``sweep`` is the nearest profile's ``sweep:``
    section as written (None when none has one; :mod:`unirepclip.workbook.sweep` reads it) and
    ``sweep_path`` the file it came from."""
    path = _profile_file(name_or_path)
    if str(path.resolve()) in _seen:
        raise ParameterError([f"profile {path}: 'extends' loops ({' -> '.join(_seen)})"])
    try:
        doc = yaml.load(path.read_text(), Loader=YamlLoader)
    except yaml.YAMLError as e:
        raise ParameterError([f"profile {path}: not valid YAML: {e}"]) from None
    doc = {} if doc is None else doc
    problems = []
    if not isinstance(doc, dict):
        raise ParameterError([f"profile {path}: the top level must be a mapping"])
    for k in doc:
        if k not in PROFILE_KEYS:
            problems.append(f"profile {path}: unknown top-level key {k!r} "
                            f"(allowed: {', '.join(PROFILE_KEYS)})")
    common = doc.get("common") or {}
    notebooks = doc.get("notebooks") or {}
    if not isinstance(common, dict):
        problems.append(f"profile {path}: 'common' must be a mapping of parameter: value")
    if not isinstance(notebooks, dict) or not all(isinstance(v, dict) or v is None
                                                   for v in notebooks.values()):
        problems.append(f"profile {path}: 'notebooks' must map notebook names to mappings")
    if doc.get("sweep") is not None and not isinstance(doc.get("sweep"), dict):
        problems.append(f"profile {path}: 'sweep' must be a mapping (grid, cases, reference, ...)")
    if problems:
        raise ParameterError(problems)
    name = path.stem
    bad = check_folder_name(name)
    if bad:
        raise ParameterError([f"profile {path}: its name {name!r} (the file name less .yaml) "
                              f"becomes the report folder's name, and {bad}; rename the file"])
    if doc.get("extends"):
        base = load_profile(doc["extends"], _seen + (str(path.resolve()),))
    else:
        base = {"common": {}, "notebooks": {}, "sources": {}, "sweep": None, "sweep_path": None}
    merged_common = dict(base["common"])
    sources = dict(base["sources"])
    for k, v in common.items():
        merged_common[k] = v
        sources[f"common.{k}"] = str(path)
    merged_nbs = {nb: dict(v) for nb, v in base["notebooks"].items()}
    for nb, values in notebooks.items():
        merged_nbs.setdefault(str(nb), {}).update(values or {})
        for k in values or {}:
            sources[f"{nb}.{k}"] = str(path)
    # A sweep is one table: a profile's own section replaces its base's whole.
    sweep, sweep_path = base["sweep"], base["sweep_path"]
    if doc.get("sweep") is not None:
        sweep, sweep_path = doc["sweep"], path
    return {"name": name, "path": path, "description": str(doc.get("description", "")),
            "common": merged_common, "notebooks": merged_nbs, "sources": sources,
            "sweep": sweep, "sweep_path": sweep_path}


def check_folder_name(name: str) -> Optional[str]:
    """None if ``name`` can be one folder's name, else why not (empty, ``.``/``..``, a path
    separator or a NUL in it)."""
    if not name or not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} names no folder of its own"
    for sep in {"/", "\\", os.sep, os.altsep or "/", "\0"}:
        if sep in name:
            return f"it holds {sep!r}"
    return None


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


# -- notebooks ------------------------------------------------------------------------------------

_SIMPLE_TYPES: Dict[str, Tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
    "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,), "NoneType": (type(None),),
}
_GENERIC_RE = re.compile(r"^(?:typing\.)?(List|Dict|Tuple|Sequence|Mapping|list|dict|tuple)\s*\[.*\]$")


@dataclass
class Parameter:
    """A parameter declared in a notebook's ``parameters`` cell."""

    name: str
    type_name: Optional[str]  # "int", "Optional[str]", ...; None when nothing says
    default: str              # the default's source text
    help: str = ""

    def accepted(self) -> Optional[Tuple[Tuple[type, ...], bool]]:
        """(types, None allowed) or None when the type is unknown (then anything goes)."""
        t = (self.type_name or "").replace(" ", "")
        optional = False
        m = re.match(r"^(?:typing\.)?Optional\[(.*)\]$", t)
        if m:
            t, optional = m.group(1), True
        g = _GENERIC_RE.match(t)
        if g:
            t = g.group(1).lower()
            t = {"sequence": "list", "mapping": "dict"}.get(t, t)
        if t in ("", "None", "Any", "typing.Any"):
            return None
        if t not in _SIMPLE_TYPES:
            return None  # a type the runner cannot judge (a class, a Union): leave it to the notebook
        return _SIMPLE_TYPES[t], optional

    def check(self, value: Any) -> Optional[str]:
        """None if ``value`` fits, else "expected X, got Y"."""
        acc = self.accepted()
        if acc is None:
            return None
        types, optional = acc
        if value is None and (optional or type(None) in types):
            return None
        # bool is an int subclass in Python; a flag is never a count.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if ok:
            return None
        got = "null" if value is None else type(value).__name__
        return f"expected {self.type_name}, got {got} {value!r}"

    def coerce(self, value: Any) -> Any:
        acc = self.accepted()
        if acc and float in acc[0] and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if acc and list in acc[0] and isinstance(value, tuple):
            return list(value)
        return value


# -- ranges ---------------------------------------------------------------------------------------
# A parameter's range is declared here, by name, for every notebook that has the name (the
# workbook's parameters share one vocabulary); tests/test_runner_faults.py checks that every
# number or list a shipped notebook declares has an entry, so a new one cannot slip in unranged.

@dataclass(frozen=True)
class Range:
    """What values a parameter may take beyond its type: ints ``>= low`` (and ``<= high``), one
    of ``choices``, or (``items``) a non-empty list of such ints. ``path`` marks a file or folder
    parameter whose relative values resolve against where they were given; ``special`` are the
    values of a path parameter that name no file (``demo``, ``""``), ``path_suffix`` limits the
    path reading to values with that ending (a ``model_name`` is a path only as ``*.json``)."""

    low: Optional[int] = None
    high: Optional[int] = None
    choices: Optional[Tuple[str, ...]] = None
    items: bool = False
    path: bool = False
    special: Tuple[str, ...] = ("",)
    path_suffix: Optional[str] = None
    pattern: Optional[str] = None  # also accepted, besides ``choices`` (a regex, full match)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices) + (" (or cuda:N)" if self.pattern else "")
        what = "a non-empty list of ints" if self.items else "an int"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low} to {self.high}"
        if self.low is not None:
            return f"{what} >= {self.low}"
        return what

    def check(self, value: Any) -> Optional[str]:
        """None if ``value`` is in range, else what was expected and what came."""
        if value is None or self.path or self == UNRANGED:
            return None
        if self.choices is not None:
            if isinstance(value, str) and (value in self.choices or (
                    self.pattern and re.fullmatch(self.pattern, value))):
                return None
            return f"must be {self.describe()}, got {value!r}"
        values = value if self.items else [value]
        if self.items and (not isinstance(value, (list, tuple)) or not value):
            return f"must be {self.describe()}, got {value!r}"
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or (
                    self.low is not None and v < self.low) or (
                    self.high is not None and v > self.high):
                return f"must be {self.describe()}, got {value!r}"
        return None


COUNT = Range(low=0)      # how many (0 means none, or all where the notebook says so)
SIZE = Range(low=1)       # a size, a batch, a number of steps: at least one
SIZES = Range(low=1, items=True)
CHECKPOINT = Range(path=True, special=("", "demo"))
UNRANGED = Range()        # declared on purpose: any value of the type


def _precisions() -> Tuple[str, ...]:
    from unirepclip.utils import PRECISIONS  # one vocabulary, shared with the notebooks' code
    return tuple(PRECISIONS)


#: Parameter name -> :class:`Range` (``device`` and ``precision`` are filled in on first use).
RANGES: Dict[str, Range] = {
    "seed": COUNT, "batch_size": SIZE, "num_workers": COUNT, "num_threads": COUNT,
    "n_jobs": SIZE,
    # 01_checkpoint
    "mac_resolutions": SIZES, "n_samples": COUNT, "n_timing_images": SIZE, "timing_repeats": SIZE,
    "n_templates": COUNT,
    # 02_zeroshot
    "n_images": COUNT, "n_mistakes": COUNT, "sweep_sizes": SIZES, "n_sweep": SIZE,
    # 03_erf
    "n_erf_images": SIZE, "erf_batch_size": SIZE, "resolutions": SIZES,
    "stages": Range(low=0, high=3, items=True), "n_reparam_images": SIZE,
    # 04_attribution
    "n_attr_images": SIZE, "n_grid_images": COUNT, "n_check_images": COUNT,
    "n_random_images": COUNT, "n_photos": COUNT, "attr_batch_size": SIZE,
    "internal_batch_size": SIZE, "ig_steps": SIZE, "randomization_ig_steps": SIZE,
    "nt_samples": SIZE, "occlusion_window": SIZE, "occlusion_stride": SIZE,
    "gradcam_stage": UNRANGED,  # its meaning is another notebook section's to define
    # 05_linear_probe
    "pixel_size": COUNT, "max_iter": SIZE, "knn_k": SIZE, "shots": SIZES, "n_train": COUNT,
    "n_val": COUNT, "n_test": COUNT, "n_kshot_seeds": SIZE,
    "extra_datasets": UNRANGED, "zeroshot_datasets": UNRANGED, "kshot_spaces": UNRANGED,
    # 06_explore
    "top_k": SIZE, "query_index": COUNT, "erf_stage": Range(low=0, high=3), "erf_resolution": SIZE,
    # files and folders (relative values resolve against the caller's or the profile's folder)
    "checkpoint": CHECKPOINT, "control_checkpoint": CHECKPOINT,
    "model_name": Range(path=True, path_suffix=".json"),
    "data_dir": Range(path=True),
    "captions_file": Range(path=True, special=("", "mscoco_captions", "flickr30k")),
    "classnames_file": Range(path=True, special=("", "imagenet")), "cache_dir": Range(path=True),
}


def parameter_range(name: str) -> Optional[Range]:
    """The declared :class:`Range` of a parameter name, or None."""
    if name == "device":
        return Range(choices=("cpu", "cuda", "auto"), pattern=r"cuda:\d+")
    if name == "precision":
        return Range(choices=_precisions())
    return RANGES.get(name)


def _finite(value: Any) -> bool:
    """False for a NaN or infinity anywhere in ``value`` (strict JSON has no spelling for them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _range_problem(name: str, value: Any) -> Optional[str]:
    if not _finite(value):
        return f"must be a finite number, got {value!r}"
    rng = parameter_range(name)
    return rng.check(value) if rng is not None else None


def _resolve_path(rng: Optional[Range], value: Any, base: Path) -> Any:
    """A relative path value made absolute against ``base`` (where it was written)."""
    if rng is None or not rng.path or not isinstance(value, str) or value in rng.special:
        return value
    if rng.path_suffix and not value.endswith(rng.path_suffix):
        return value
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) or value.startswith("~"):
        return os.path.expanduser(value)  # hf-hub:..., a URL, or ~user: not relative to a folder
    if os.path.isabs(value) or value.startswith(PLACEHOLDER_PREFIX):
        return value
    return str((base / value).resolve())


@dataclass
class Notebook:
    """A notebook of the workbook: its name (file stem), path and declared parameters."""

    name: str
    path: Path
    parameters: Dict[str, Parameter]
    problems: List[str] = field(default_factory=list)  # found while reading it


def discover_notebooks(folder: Union[str, os.PathLike]) -> List[Path]:
    """``NN_name.ipynb`` files in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist")
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_RE.match(p.stem))


def _literal_type(src: str) -> Optional[str]:
    try:
        v = ast.literal_eval(src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return "NoneType" if v is None else type(v).__name__


_INSPECTED: Dict[Tuple[str, int, int], Notebook] = {}


def inspect_notebook(path: Union[str, os.PathLike]) -> Notebook:
    """Read a notebook's parameters (names, types, defaults) without running it. Remembered per
    file version (path, size, mtime): a sweep validates every setting against the same files."""
    path = Path(path)
    try:
        st = path.stat()
        key: Optional[Tuple[str, int, int]] = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _INSPECTED:
        hit = _INSPECTED[key]
        return Notebook(hit.name, hit.path, dict(hit.parameters), list(hit.problems))
    nb_info = _inspect_notebook(path)
    if key is not None:
        _INSPECTED[key] = nb_info
    return Notebook(nb_info.name, nb_info.path, dict(nb_info.parameters), list(nb_info.problems))


def _inspect_notebook(path: Path) -> Notebook:
    import nbformat
    import papermill

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    problems = []
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        problems.append(f"{path.name}: {len(cells)} cells tagged 'parameters' (exactly one needed)")
    if not cells:
        return Notebook(path.stem, path, {}, problems)
    # papermill needs the kernel's language in the metadata to pick its translator.
    if not nb.metadata.get("kernelspec", {}).get("name") or not nb.metadata.get(
            "language_info", {}).get("name"):
        nb.metadata.setdefault("kernelspec", {})
        nb.metadata["kernelspec"].setdefault("name", KERNEL_NAME)
        nb.metadata["kernelspec"].setdefault("language", "python")
        nb.metadata["kernelspec"].setdefault("display_name", KERNEL_NAME)
        nb.metadata.setdefault("language_info", {})["name"] = "python"
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".ipynb", delete=False) as f:
            nbformat.write(nb, f)
            tmp = f.name
        try:
            found = papermill.inspect_notebook(tmp)
        finally:
            os.unlink(tmp)
    else:
        found = papermill.inspect_notebook(str(path))
    params = {}
    for name, p in found.items():
        t = p.get("inferred_type_name")
        t = None if t in (None, "None") else t
        if t is None:
            t = _literal_type(p.get("default", ""))
        params[name] = Parameter(name, t, p.get("default", ""), p.get("help", ""))
    # Cross-check with Python's own parser: an assignment papermill's line pattern misses
    # (say `x: str | None = None`) would silently never be set by the runner.
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as e:
        problems.append(f"{path.name}: the parameters cell is not valid Python: {e}")
    else:
        for node in tree.body:
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            for t in targets:
                if t not in params:
                    problems.append(
                        f"{path.name}: papermill cannot read parameter {t!r} (line {node.lineno}); "
                        "write one `name = value` or `name: type = value` per line, "
                        "with Optional[...] rather than `X | None`")
    return Notebook(path.stem, path, params, problems)


def _default_value(p: Parameter) -> Any:
    """A parameter's default as a value when it is a literal, else its source text."""
    try:
        return ast.literal_eval(p.default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return p.default


def select(notebooks: Sequence[Notebook], only: Optional[Sequence[str]]) -> List[Notebook]:
    """The notebooks ``--only`` names (by file stem, number ``02`` or name ``zeroshot``)."""
    if not only:
        return list(notebooks)
    chosen = []
    for want in only:
        hits = [nb for nb in notebooks
                if want in (nb.name, nb.name[:2], nb.name[3:], nb.path.name)]
        if len(hits) != 1:
            names = ", ".join(nb.name for nb in notebooks) or "none"
            why = "matches no notebook" if not hits else "is ambiguous"
            raise ParameterError([f"--only {want!r} {why} (notebooks: {names})"])
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return [nb for nb in notebooks if nb in chosen]  # keep the workbook's order


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_fields(value: Any, fields: Mapping[str, Any]) -> Any:
    """``value`` with each ``{name}`` whose name is in ``fields`` replaced by that value (strings
    only; other braces stay): ``data_dir: /data/{dataset}`` follows a swept ``dataset``, as
    CLIP_benchmark's ``--dataset_root`` does."""
    if not isinstance(value, str) or "{" not in value:
        return value
    return _FIELD_RE.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields
                         else m.group(0), value)


def _key_problem(label: str, scope: Optional[str], k: str, declared: Sequence[str],
                 by_name: Mapping[str, "Notebook"]) -> Optional[str]:
    """Why ``scope.k`` (no ``scope``: every notebook that has ``k``) names no notebook parameter,
    as one problem line starting with ``label``; None when it names one."""
    if not scope:
        return None if k in declared else (f"{label}: no notebook has a parameter {k!r}"
                                           + _unknown(k, declared))
    if scope not in by_name:
        return f"{label}: no notebook {scope!r}" + _unknown(scope, list(by_name))
    if k not in by_name[scope].parameters:
        return (f"{label}: {scope} has no parameter {k!r}"
                + _unknown(k, list(by_name[scope].parameters)))
    return None


def resolve_parameters(notebooks: Sequence[Notebook], profile: Mapping[str, Any],
                       overrides: Sequence[str] = (),
                       selected: Optional[Sequence[Notebook]] = None,
                       check_placeholders: bool = True,
                       setting: Optional[Mapping[str, Any]] = None,
                       setting_sources: Optional[Mapping[str, str]] = None
                       ) -> Dict[str, Dict[str, Any]]:
    """Every selected notebook's parameters from the profile and ``-p`` overrides, validated
    (see the module docstring). Returns ``{notebook: {name: value}}`` holding the values the
    profile or ``-p`` set (the notebook's own defaults apply to the rest); raises
    :class:`ParameterError` listing every problem. ``check_placeholders=False`` lets
    ``/path/to/...`` values through (to check a profile's shape before a user fills it in).

    ``setting`` is one setting of a sweep (:mod:`unirepclip.workbook.sweep`): ``{"key": value,
    "NN_name.key": value}``, over the profile and under nothing (a key also given by ``-p`` is a
    problem: one of the two would be silently lost); ``setting_sources`` says where each key was
    written (``--sweep``, else a profile file, against whose folder relative paths resolve).
    String values of every layer may name a setting's scalar keys as ``{key}`` fields."""
    selected = list(notebooks) if selected is None else list(selected)
    by_name = {nb.name: nb for nb in notebooks}
    declared = sorted({p for nb in notebooks for p in nb.parameters})
    problems: List[str] = []
    for nb in notebooks:
        problems.extend(nb.problems)
    sources = profile.get("sources", {})
    pfile = str(profile.get("path", profile.get("name", "profile")))

    common = dict(profile.get("common", {}))
    for k in common:
        where = sources.get(f"common.{k}", pfile)
        if k in RESERVED:
            problems.append(f"{where}: common.{k} is set by the runner and cannot be given")
        elif k not in declared:
            problems.append(f"{where}: common.{k}: no notebook has a parameter {k!r}"
                            + _unknown(k, declared))
    per_nb = {}
    for nb_name, values in profile.get("notebooks", {}).items():
        if nb_name not in by_name:
            problems.append(f"{pfile}: notebooks.{nb_name}: no notebook {nb_name}.ipynb"
                            + _unknown(nb_name, list(by_name)))
            continue
        for k in values:
            where = sources.get(f"{nb_name}.{k}", pfile)
            if k in RESERVED:
                problems.append(f"{where}: notebooks.{nb_name}.{k} is set by the runner")
            elif k not in by_name[nb_name].parameters:
                problems.append(f"{where}: notebooks.{nb_name}.{k}: {nb_name} has no parameter {k!r}"
                                + _unknown(k, list(by_name[nb_name].parameters)))
        per_nb[nb_name] = dict(values)

    cli_all: Dict[str, Any] = {}
    cli_nb: Dict[str, Dict[str, Any]] = {}
    for item in overrides:
        try:
            scope, k, v = parse_override(item)
        except ParameterError as e:
            problems.extend(e.problems)
            continue
        if k in RESERVED:
            problems.append(f"-p {k}: set by the runner (use --output-dir)")
            continue
        bad = _key_problem(f"-p {k}" if scope is None else f"-p {scope}.{k}", scope, k, declared,
                           by_name)
        if bad:
            problems.append(bad)
        if scope is None:
            cli_all[k] = v
        elif bad is None:
            cli_nb.setdefault(scope, {})[k] = v

    sw_all: Dict[str, Any] = {}
    sw_nb: Dict[str, Dict[str, Any]] = {}
    sw_src: Dict[str, str] = {}
    for item, v in (setting or {}).items():
        where = (setting_sources or {}).get(item, "--sweep")
        label = f"--sweep {item}" if where == "--sweep" else f"{where}: sweep {item}"
        scope, _, k = item.rpartition(".")
        if k in RESERVED:
            problems.append(f"{label}: set by the runner and cannot be swept")
        else:
            bad = _key_problem(label, scope, k, declared, by_name)
            given = (k in cli_all or any(k in d for d in cli_nb.values())) if not scope else \
                (k in cli_all or k in cli_nb.get(scope, {}))
            if bad:
                problems.append(bad)
            elif given:
                problems.append(f"{label}: -p {k} is given too; a swept parameter takes its values "
                                "from the sweep only")
            if not scope:
                sw_all[k] = v
            elif bad is None and not given:
                sw_nb.setdefault(scope, {})[k] = v
        sw_src[item] = label

    resolved: Dict[str, Dict[str, Any]] = {}
    for nb in selected:
        values: Dict[str, Tuple[Any, str]] = {}
        for k, v in common.items():
            values[k] = (v, sources.get(f"common.{k}", pfile))
        for k, v in per_nb.get(nb.name, {}).items():
            values[k] = (v, sources.get(f"{nb.name}.{k}", pfile))
        for k, v in sw_all.items():
            values[k] = (v, sw_src[k])
        for k, v in sw_nb.get(nb.name, {}).items():
            values[k] = (v, sw_src[f"{nb.name}.{k}"])
        fields = {k: v for k, (v, _) in values.items()
                  if (k in sw_all or k in sw_nb.get(nb.name, {}))
                  and isinstance(v, (str, int, float)) and not isinstance(v, bool)}
        for k, v in cli_all.items():
            values[k] = (v, f"-p {k}")
        for k, v in cli_nb.get(nb.name, {}).items():
            values[k] = (v, f"-p {nb.name}.{k}")
        out = {}
        for k, (v, src) in values.items():
            p = nb.parameters.get(k)
            if p is None or k in RESERVED:
                continue  # a common/-p key another notebook declares
            v = expand_fields(v, fields)
            msg = p.check(v)
            if msg:
                problems.append(f"{nb.name}: parameter {k!r} {msg} (from {src})")
                continue
            if check_placeholders and isinstance(v, str) and v.startswith(PLACEHOLDER_PREFIX):
                problems.append(f"{nb.name}: parameter {k!r} is still the placeholder {v!r} "
                                f"(from {src}); edit the profile or pass -p {k}=...")
                continue
            msg = _range_problem(k, v)
            if msg:
                problems.append(f"{nb.name}: parameter {k!r} {msg} (from {src})")
                continue
            # -p and --sweep paths are the caller's (the shell's folder), a profile's its file's.
            if src.startswith(("-p ", "--sweep ")):
                base = Path.cwd()
            else:
                base = Path(src.split(": sweep ")[0]).parent
            out[k] = _resolve_path(parameter_range(k), p.coerce(v), base)
        for k, p in nb.parameters.items():  # the notebook's own defaults, where literal
            if k in values or k in RESERVED:
                continue
            try:
                default = ast.literal_eval(p.default)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            msg = _range_problem(k, default)
            if msg:
                problems.append(f"{nb.name}: parameter {k!r} {msg} (the notebook's default)")
        resolved[nb.name] = out
    if problems:
        # De-duplicate, keeping order (a bad -p value shows once per notebook that has it).
        raise ParameterError(list(dict.fromkeys(problems)), f"profile {profile.get('name')!r}")
    return resolved


# -- kernel ---------------------------------------------------------------------------------------

def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Register (once) a Jupyter kernelspec ``name`` for this interpreter in ``sys.prefix`` and
    check that Jupyter finds it pointing at ``sys.executable``; return ``name``."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def ours(spec) -> bool:
        # The same bin folder as this interpreter (not symlinks resolved: every venv's python
        # resolves to the same base interpreter); a bare "python" is replaced by sys.executable
        # when jupyter_client starts the kernel.
        exe = spec.argv[0] if spec.argv else ""
        if exe in ("python", "python3"):
            return True
        here = os.path.dirname(os.path.abspath(sys.executable))
        return os.path.isabs(exe) and os.path.dirname(os.path.abspath(exe)) == here

    ksm = KernelSpecManager()
    try:
        if ours(ksm.get_kernel_spec(name)):
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install
    display = f"Python ({name}: {Path(sys.prefix).name})"
    try:
        install(kernel_name=name, display_name=display, prefix=sys.prefix)
    except OSError:  # a read-only prefix (system Python): the user's Jupyter folder
        install(kernel_name=name, display_name=display, user=True)
    spec = KernelSpecManager().get_kernel_spec(name)
    if not ours(spec):
        raise RuntimeError(
            f"Jupyter kernel {name!r} resolves to {spec.argv[0]} ({spec.resource_dir}), not this "
            f"interpreter {sys.executable}; remove that kernelspec "
            f"(`jupyter kernelspec remove {name}`) or pass --kernel")
    return name


# -- running --------------------------------------------------------------------------------------

#: A notebook's status in the manifest: ``pending`` (this run will run it), ``running``, ``ok``,
#: ``failed``, ``interrupted`` (stopped by a signal, or its run died), ``not run``.
STATUSES = ("pending", "running", "ok", "failed", "interrupted", "not run")
LOCK_FILE = ".run.lock"        # held (filelock) for as long as a run writes the folder
HOLDER_FILE = ".run-holder.json"  # who holds it: command, pid, start time
PARTIAL_DIR = ".partial"       # a notebook's new outputs, until they are complete
SWEEP_FILE = "sweep.json"      # in <output-dir>/<profile>/ when that folder is a sweep's


class RunLocked(RuntimeError):
    """Another run holds the report folder (see :func:`run`'s ``wait``)."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the runner; ``signal`` is its name."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name


@dataclass
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


@dataclass
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


def default_notebooks_dir() -> Path:
    """``./notebooks`` when it exists, else the repository's (this package sits in ``lib/``)."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "notebooks"


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# -- provenance -----------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def source_sha256(root: Optional[Path] = None) -> str:
    """sha256 over the package's files (relative names and contents, ``__pycache__`` aside): what
    the notebooks' code was, with or without git."""
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(_sha256(p).encode() + b"\0")
    return h.hexdigest()


def _checkpoint_record(params: Mapping[str, Any], cache: Dict[str, Optional[str]]) -> Dict[str, Any]:
    """``{"path", "sha256"}`` of a notebook's ``checkpoint``; sha256 where it is a file (the
    shipped ``demo`` weights are part of the package source hash)."""
    path = params.get("checkpoint")
    sha = None
    if isinstance(path, str) and path and os.path.isfile(path):
        if path not in cache:
            cache[path] = _sha256(Path(path))
        sha = cache[path]
    return {"path": path, "sha256": sha}


def _stale_reason(prev: Mapping[str, Any], now: Mapping[str, Any], out: Path) -> Optional[str]:
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


# -- the folder: lock, state ----------------------------------------------------------------------

def _lock(out: Path):
    from filelock import FileLock
    return FileLock(str(out / LOCK_FILE))


def _holder(out: Path) -> str:
    try:
        h = json.loads((out / HOLDER_FILE).read_text())
        return (f"pid {h.get('pid')}, started {h.get('started')}: "
                f"{' '.join(map(str, h.get('command') or []))}")
    except (OSError, ValueError, AttributeError):
        return "its details are not recorded yet"


def folder_locked(out: Union[str, os.PathLike]) -> bool:
    """True while a run holds the report folder ``out``."""
    from filelock import Timeout
    out = Path(out)
    if not (out / LOCK_FILE).exists():
        return False
    lock = _lock(out)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _mark_dead(m: Dict[str, Any], why: str, at: Optional[str]) -> Dict[str, Any]:
    m["status"] = "interrupted"
    m.setdefault("interrupted", {"signal": None, "at": at, "reason": why})
    for r in m.get("notebooks", []):
        if r.get("status") == "running":
            r["status"] = "interrupted"
        elif r.get("status") == "pending":
            r["status"] = "not run"
    return m


def read_manifest(folder: Union[str, os.PathLike]) -> Optional[Dict[str, Any]]:
    """A report folder's ``manifest.json`` (None if there is none or it is unreadable); one left
    ``running`` by a process that no longer holds the folder's lock (killed, power lost) reads
    as ``interrupted``."""
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    if m.get("status") == "running" and not folder_locked(folder):
        _mark_dead(m, "the process that ran it stopped without finishing (it no longer holds "
                      "the folder's lock)", None)
    return m


# -- one notebook ---------------------------------------------------------------------------------

def _error_notebook(path: Path, message: str):
    """The notebook at ``path`` with an error cell on top, for a run that papermill could not
    finish itself (a kernel that did not start or died)."""
    import nbformat
    doc = nbformat.read(str(path), as_version=4)
    cell = nbformat.v4.new_markdown_cell(
        '<span id="papermill-error-cell"></span>\n\n## This notebook did not run\n\n```\n'
        + message.replace("```", "'''") + "\n```")
    doc.cells.insert(0, cell)
    return doc


_KERNELS: List[Any] = []  # the kernel managers of this process's runs, until their kernel ends
_KM_CLASS: List[type] = []


def _kernel_manager_class() -> type:
    """jupyter_client's kernel manager, remembering each kernel it starts: when a signal stops
    the run inside papermill, nobody else shuts that kernel down."""
    if not _KM_CLASS:
        from jupyter_client.manager import AsyncKernelManager

        class RunKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd, **kw):
                await super()._async_launch_kernel(kernel_cmd, **kw)
                _KERNELS.append(self)

        _KM_CLASS.append(RunKernelManager)
    return _KM_CLASS[0]


def _stop_kernels(grace_s: float = 3.0) -> None:
    """End the kernels still running (SIGTERM to each kernel's own process group, then SIGKILL)."""
    import signal
    procs = []
    for km in _KERNELS:
        prov = getattr(km, "provisioner", None)
        proc = getattr(prov, "process", None)
        if proc is None or proc.poll() is not None:
            continue
        pgid = getattr(prov, "pgid", None)
        procs.append((proc, pgid if pgid and pgid != os.getpgrp() else None))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc, pgid in procs:
            try:
                if pgid:
                    os.killpg(pgid, sig)
                elif proc.poll() is None:
                    proc.send_signal(sig)
            except OSError:
                pass
        deadline = time.time() + grace_s
        for proc, _ in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()))
            except Exception:  # still alive: the next signal
                pass
        if all(proc.poll() is not None for proc, _ in procs):
            break
    _KERNELS.clear()


# The kernel's sockets are <runtime>/kernel-ipc-<port>. Linux allows 107 bytes of socket path,
# macOS 103; the longest name is kernel-ipc-65535.
_IPC_NAME = "kernel-ipc"
_SOCKET_PATH_MAX = 103


def _fits_a_socket(folder: Path) -> bool:
    return len(os.fsencode(folder / f"{_IPC_NAME}-65535")) <= _SOCKET_PATH_MAX


def _private_runtime_dir() -> Path:
    """A new folder only this user can enter, for one run's kernel connection files and sockets:
    under the temporary folder, or under /tmp where that one's path is too long for a socket
    (a deep TMPDIR, a test's tmp_path)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="unirepclip-run-"))
    if os.name == "posix" and not _fits_a_socket(folder) and os.path.isdir("/tmp"):
        short = Path(tempfile.mkdtemp(prefix="urc-", dir="/tmp"))
        folder.rmdir()
        folder = short
    return folder


def _execute(nb: Notebook, params: Dict[str, Any], out_ipynb: Path, kernel: str,
             progress: bool, cell_timeout: Optional[int],
             runtime_dir: Optional[Path] = None) -> Optional[str]:
    """Run one notebook with papermill; return None on success or a one-line error. The kernel's
    connection file and IPC sockets go to ``runtime_dir`` (private to this run)."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    # IPC sockets (files only this user can open) rather than localhost TCP, where the kernel
    # warns about unencrypted traffic; Windows has no IPC transport. Without a folder of their
    # own the sockets are ./kernel-ipc-N in the kernel's cwd, shared by every run from there.
    # A socket's path must fit AF_UNIX's sun_path: where even a short folder would not, TCP.
    transport = "ipc" if os.name == "posix" else "tcp"
    if runtime_dir is not None and transport == "ipc" and not _fits_a_socket(runtime_dir):
        transport = "tcp"
    km: Dict[str, Any] = {"transport": transport}
    if runtime_dir is not None:
        km["connection_file"] = str(runtime_dir / f"kernel-{nb.name}.json")
        if transport == "ipc":
            km["ip"] = str(runtime_dir / _IPC_NAME)
    # The kernel inherits this environment. tqdm.auto warns in every kernel without ipywidgets
    # and then draws text bars, which is what a static report wants: drop the warning there.
    saved = {k: os.environ.get(k) for k in ("PYTHONWARNINGS", "JUPYTER_RUNTIME_DIR")}
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [saved["PYTHONWARNINGS"],
                                                          "ignore:IProgress not found"]))
    if runtime_dir is not None:
        os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime_dir)
    try:
        papermill.execute_notebook(
            str(nb.path), str(out_ipynb), parameters=params, kernel_name=kernel,
            language="python", cwd=str(nb.path.parent), progress_bar=progress, log_output=False,
            execution_timeout=cell_timeout, config=Config({"KernelManager": km}),
            kernel_manager_class=_kernel_manager_class())
        return None
    except PapermillExecutionError as e:
        first = str(e.evalue).strip().splitlines()
        return f"{e.ename}: {first[0] if first else ''} (cell In [{e.exec_count}])"
    except Exception as e:  # a kernel that died or never started: still leave a report
        msg = f"{type(e).__name__}: {e}".strip()
        partial = out_ipynb if out_ipynb.exists() else nb.path  # papermill may have saved some
        nbformat.write(_error_notebook(partial, msg), str(out_ipynb))
        return msg.splitlines()[0]
    finally:
        _KERNELS[:] = [k for k in _KERNELS if getattr(getattr(getattr(
            k, "provisioner", None), "process", None), "poll", lambda: 0)() is None]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _figure_files(results_file: Path) -> List[str]:
    try:
        return [rel for f in _results.load(results_file).get("figures", [])
                for rel in f.get("files", {}).values()]
    except (OSError, ValueError):
        return []


def _commit(out: Path, stage: Path, name: str) -> None:
    """Move a notebook's complete new outputs from ``stage`` into ``out``, replacing its old ones
    (figures the old results listed, its results file, ipynb and HTML)."""
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


def _unstage_paths(ipynb: Path, stage: Path, out: Path) -> None:
    """The executed notebook names the final folder, not the staging one, in its injected
    parameters (what a reader can rerun)."""
    import nbformat
    doc = nbformat.read(str(ipynb), as_version=4)
    for cell in doc.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace(str(stage), str(out))
    nbformat.write(doc, str(ipynb))


# -- the run --------------------------------------------------------------------------------------

class _Folder:
    """The report folder's manifest, index and results.json, rewritten as the run goes."""

    def __init__(self, out: Path, prof: Dict[str, Any], cli_overrides: Dict[str, Any],
                 notebooks: Sequence[Notebook], nb_dir: Path, command: List[str], started: str,
                 code: Dict[str, Any]):
        self.out, self.prof, self.cli_overrides = out, prof, cli_overrides
        self.notebooks, self.nb_dir, self.command, self.started = notebooks, nb_dir, command, started
        self.code = code
        self.runs: Dict[str, NotebookRun] = {}
        self.injected: Dict[str, Dict[str, Any]] = {}
        self.status = "running"
        self.interrupted: Optional[Dict[str, Any]] = None
        self.manifest: Dict[str, Any] = {}
        self.merged: Dict[str, Any] = {}
        self.setting: Optional[Dict[str, Any]] = None  # the sweep setting this folder is

    def write(self, quiet: bool = True) -> None:
        runs = [self.runs[nb.name] for nb in self.notebooks if nb.name in self.runs]
        docs: Dict[str, Optional[Dict[str, Any]]] = {}
        merged: Dict[str, Any] = {}
        for r in runs:
            f = self.out / "results" / f"{r.name}.json"
            docs[r.name] = None
            if f.exists():
                try:
                    docs[r.name] = _results.load(f)
                except ValueError as e:
                    _log(f"warning: {e}", quiet)
                    continue
                _results.merge(merged, docs[r.name]["results"])
            if r.checkpoint is not None and r.checkpoint.get("sha256") is None and docs[r.name]:
                try:  # the notebook's own record, where the runner could not hash a file
                    r.checkpoint["sha256"] = _results.get_path(docs[r.name]["results"],
                                                               "checkpoint.sha256")
                except KeyError:
                    pass
        _results.dump_json(merged, self.out / "results.json")
        self.manifest = _report.build_manifest(
            profile=self.prof, overrides=self.cli_overrides,
            parameters={r.name: r.parameters or {} for r in runs},
            injected=self.injected, runs=[asdict(r) for r in runs], merged_results=merged,
            repo=self.nb_dir, started=self.started,
            finished=None if self.status == "running" else _report.now(),
            command=self.command, status=self.status, interrupted=self.interrupted,
            code=self.code, setting=self.setting)
        _report.write_index(self.out, self.manifest, docs)
        self.merged = merged


_guard: Dict[str, Any] = {"depth": 0, "pending": None}


class _Atomic:
    """A block a signal must not cut in two (moving outputs into place, writing the index): a
    SIGINT/SIGTERM that comes meanwhile is raised when the block ends."""

    def __enter__(self) -> None:
        _guard["depth"] += 1

    def __exit__(self, *exc: Any) -> None:
        _guard["depth"] -= 1
        if _guard["depth"] == 0 and _guard["pending"] and exc[0] is None:
            name, _guard["pending"] = _guard["pending"], None
            raise RunInterrupted(name)


def _install_handlers() -> Dict[int, Any]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}  # signals reach only the main thread; a run from a thread cannot catch them

    def stop(signum, frame):
        name = signal.Signals(signum).name
        if _guard["depth"]:
            _guard["pending"] = name
            return
        raise RunInterrupted(name)

    _guard.update(depth=0, pending=None)

    saved = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        saved[s] = signal.signal(s, stop)
    return saved


def _restore_handlers(saved: Dict[int, Any]) -> None:
    import signal
    for s, h in saved.items():
        signal.signal(s, h)


def run(profile: Union[str, os.PathLike] = "demo", overrides: Sequence[str] = (),
        only: Optional[Sequence[str]] = None, output_dir: Optional[Union[str, os.PathLike]] = None,
        notebooks_dir: Optional[Union[str, os.PathLike]] = None, hide_code: bool = False,
        kernel: Optional[str] = None, progress: bool = True, cell_timeout: Optional[int] = None,
        dry_run: bool = False, quiet: bool = False,
        command: Optional[Sequence[str]] = None, wait: bool = False,
        resume: bool = False, setting: Optional[Mapping[str, Any]] = None,
        setting_sources: Optional[Mapping[str, str]] = None,
        folder_name: Optional[str] = None) -> RunResult:
    """Run the notebooks into ``<output_dir>/<profile>/`` (see the module docstring).

    ``output_dir`` defaults to ``reports/`` beside ``notebooks_dir`` (itself
    :func:`default_notebooks_dir`); ``only`` picks notebooks; ``hide_code`` renders HTML without code
    cells; ``kernel`` names a Jupyter kernel instead of this interpreter's; ``cell_timeout``
    (seconds) bounds each cell; ``dry_run`` validates and returns without running anything.
    ``wait`` waits for another run that holds the folder instead of raising :class:`RunLocked`;
    ``resume`` keeps each selected notebook whose outputs in the folder were made, complete, with
    the same parameters, checkpoint, notebook file and code, and runs the rest.
    Raises :class:`ParameterError` before any work for bad parameters. SIGINT/SIGTERM stop the
    run: the manifest and index say ``interrupted`` (signal, time), the result's ``interrupted``
    names the signal.

    One setting of a sweep (:func:`unirepclip.workbook.sweep.run_sweep`) passes ``setting`` and
    ``setting_sources`` (see :func:`resolve_parameters`) and ``folder_name`` (its slug): the report
    folder is then ``<output_dir>/<folder_name>`` and the manifest records the setting. A plain run
    refuses a folder that holds a sweep (its ``sweep.json``): their index pages would overwrite
    each other.
    """
    t_start = _report.now()
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    paths = discover_notebooks(nb_dir)
    if not paths:
        raise ParameterError([f"no notebooks named NN_name.ipynb in {nb_dir}"])
    prof = load_profile(profile)
    notebooks = [inspect_notebook(p) for p in paths]
    chosen = select(notebooks, only)
    params = resolve_parameters(notebooks, prof, overrides, chosen, setting=setting,
                                setting_sources=setting_sources)
    root = Path(output_dir) if output_dir is not None else nb_dir.parent / "reports"
    out = report_folder(root, folder_name if folder_name is not None else prof["name"])
    if folder_name is None and (out / SWEEP_FILE).exists():
        raise ParameterError([f"report folder {out} holds a sweep ({out / SWEEP_FILE}); run the "
                              "sweep again (--sweep or the profile's sweep:) or choose another "
                              "--output-dir"])

    injected: Dict[str, Dict[str, Any]] = {}
    effective: Dict[str, Dict[str, Any]] = {}
    for nb in chosen:
        p = dict(params[nb.name])
        if "output_dir" in nb.parameters:
            p["output_dir"] = str(out)
        if "results_path" in nb.parameters:
            p["results_path"] = str(out / "results" / f"{nb.name}.json")
        injected[nb.name] = p
        effective[nb.name] = {**{k: _default_value(v) for k, v in nb.parameters.items()
                                 if k not in RESERVED}, **params[nb.name]}
    cli_overrides = {}
    for item in overrides:
        scope, k, v = parse_override(item)
        cli_overrides[f"{scope}.{k}" if scope else k] = v
    if dry_run:
        return RunResult(prof["name"], out, [NotebookRun(nb.name, "not run", None)
                                             for nb in chosen],
                         {"parameters": effective, "injected": injected}, {})

    import shutil
    from filelock import Timeout

    command = list(command) if command is not None else [sys.executable, *sys.argv]
    kernel = kernel or ensure_kernel()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder(out)
        if not wait:
            raise RunLocked(f"report folder {out} is in use by another run ({holder}); "
                            "pass --wait to wait for it, or choose another --output-dir") from None
        _log(f"waiting for the run that holds {out} ({holder}) ...", quiet)
        lock.acquire()
    saved_handlers: Dict[int, Any] = {}
    runtime: Optional[Path] = None
    folder: Optional[_Folder] = None
    try:
        _results.dump_json({"pid": os.getpid(), "command": command, "started": t_start},
                           out / HOLDER_FILE)
        saved_handlers = _install_handlers()
        runtime = _private_runtime_dir()
        (out / "results").mkdir(exist_ok=True)
        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)  # a dead run's unfinished outputs

        # We hold the lock: a manifest still saying "running" is a run that died.
        prev = read_manifest(out) or {}
        if prev.get("status") == "running":
            _mark_dead(prev, "the process that ran it stopped without finishing", None)
        previous = {r.get("name"): r for r in prev.get("notebooks", []) if isinstance(r, dict)}
        code = {**_report.git_state(nb_dir), "source_sha256": source_sha256()}
        folder = _Folder(out, prof, cli_overrides, notebooks, nb_dir, command, t_start, code)
        if setting is not None:
            folder.setting = {"slug": folder_name, "values": dict(setting)}

        sha_cache: Dict[str, Optional[str]] = {}
        todo: List[Notebook] = []
        for nb in chosen:
            rec = NotebookRun(
                nb.name, "pending", None, parameters=effective[nb.name],
                checkpoint=_checkpoint_record(effective[nb.name], sha_cache),
                model_name=effective[nb.name].get("model_name"),
                seed=effective[nb.name].get("seed"), notebook_sha256=_sha256(nb.path), code=code)
            old = previous.get(nb.name)
            why = _stale_reason(old, asdict(rec), out) if (resume and old) else "not resumed"
            if resume and old and why is None:
                fields = {k: old.get(k) for k in NotebookRun.__dataclass_fields__}
                fields.update(earlier=True, kept="kept by --resume: same parameters, checkpoint, "
                                                 "notebook and code; outputs complete")
                folder.runs[nb.name] = NotebookRun(**fields)
                _log(f"{nb.name}: kept (--resume)", quiet)
                continue
            if resume and old:
                rec.rerun_because = why
                _log(f"{nb.name}: rerun (--resume): {why}", quiet)
            todo.append(nb)
            folder.runs[nb.name] = rec
            folder.injected[nb.name] = injected[nb.name]
        for nb in notebooks:  # the others keep their last record, marked as earlier
            if nb.name not in folder.runs and nb.name in previous:
                fields = {k: previous[nb.name].get(k) for k in NotebookRun.__dataclass_fields__}
                fields["earlier"] = True
                folder.runs[nb.name] = NotebookRun(**fields)
        with _Atomic():
            folder.write(quiet)

        for i, nb in enumerate(todo, 1):
            rec = folder.runs[nb.name]
            stage = out / PARTIAL_DIR / nb.name
            shutil.rmtree(stage, ignore_errors=True)
            (stage / "results").mkdir(parents=True)
            staged = dict(injected[nb.name])
            if "output_dir" in staged:
                staged["output_dir"] = str(stage)
            if "results_path" in staged:
                staged["results_path"] = str(stage / "results" / f"{nb.name}.json")
            _log(f"[{i}/{len(todo)}] {nb.name} ...", quiet)
            rec.status, rec.started = "running", _report.now()
            with _Atomic():
                folder.write(quiet)
            t0 = time.perf_counter()
            try:
                out_ipynb = stage / f"{nb.name}.ipynb"
                error = _execute(nb, staged, out_ipynb, kernel, progress, cell_timeout, runtime)
                html_name = None
                try:
                    if out_ipynb.exists():
                        _unstage_paths(out_ipynb, stage, out)
                    _report.export_html(out_ipynb, stage / f"{nb.name}.html", hide_code=hide_code)
                    html_name = f"{nb.name}.html"
                except Exception as e:  # a report we cannot render is a failure, not a crash
                    error = error or f"HTML export failed: {type(e).__name__}: {e}"
                has_ipynb = out_ipynb.exists()
            except RunInterrupted:
                rec.status, rec.finished = "interrupted", _report.now()
                rec.duration_s = round(time.perf_counter() - t0, 2)
                old = previous.get(nb.name)
                if old and old.get("html") and (out / old["html"]).is_file():
                    rec.kept = (f"the outputs shown are the earlier run's "
                                f"({old.get('status')}, finished {old.get('finished')})")
                    rec.html, rec.ipynb = old.get("html"), old.get("ipynb")
                raise
            with _Atomic():
                _commit(out, stage, nb.name)
                rec.duration_s = round(time.perf_counter() - t0, 2)
                rec.status = "failed" if error else "ok"
                rec.finished, rec.error = _report.now(), error
                rec.html, rec.ipynb = html_name, f"{nb.name}.ipynb" if has_ipynb else None
                folder.write(quiet)
            shutil.rmtree(stage, ignore_errors=True)
            _log(f"[{i}/{len(todo)}] {nb.name}: {rec.status} ({rec.duration_s:.1f} s)"
                 + (f": {error}" if error else ""), quiet)
        failed = any(folder.runs[nb.name].status == "failed" for nb in todo)
        folder.status = "failed" if failed else "complete"
        with _Atomic():
            folder.write(quiet)
        return RunResult(prof["name"], out, list(folder.runs[nb.name] for nb in notebooks
                                                 if nb.name in folder.runs),
                         folder.manifest, folder.merged)
    except RunInterrupted as e:
        _restore_handlers(saved_handlers)
        saved_handlers = {}
        if folder is None:
            raise
        folder.status = "interrupted"
        folder.interrupted = {"signal": e.signal, "at": _report.now()}
        for r in folder.runs.values():
            if r.status in ("pending", "running"):
                r.status = "not run" if r.status == "pending" else "interrupted"
        folder.write(quiet)
        _log(f"interrupted by {e.signal}: {out / 'index.html'} says so; "
             "`run --resume` completes it", quiet)
        return RunResult(prof["name"], out, list(folder.runs[nb.name] for nb in notebooks
                                                 if nb.name in folder.runs),
                         folder.manifest, folder.merged, interrupted=e.signal)
    finally:
        _restore_handlers(saved_handlers)
        _stop_kernels()
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
        (out / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()
