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

then ``unirepclip.results.configure(output_dir, results_path)`` and ``figures.use_style()`` in its
first code cell (see :mod:`unirepclip.results` and :mod:`unirepclip.figures`).

Profiles are YAML files, ``lib/unirepclip/profiles/<name>.yaml`` or any path::

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
import json
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
    "ensure_kernel", "run",
]

KERNEL_NAME = "unirepclip"
#: Parameters the runner sets itself; profiles and ``-p`` may not.
RESERVED = ("output_dir", "results_path")
PROFILES_DIR = Path(__file__).parent / "profiles"
NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+$")
PLACEHOLDER_PREFIX = "/path/to/"
PROFILE_KEYS = ("description", "extends", "common", "notebooks")


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
    "sources"}`` where ``sources`` maps ``"common.key"`` / ``"NN_name.key"`` to the file that set
    it (for error messages)."""
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
    if problems:
        raise ParameterError(problems)
    name = path.stem
    if doc.get("extends"):
        base = load_profile(doc["extends"], _seen + (str(path.resolve()),))
    else:
        base = {"common": {}, "notebooks": {}, "sources": {}}
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
    return {"name": name, "path": path, "description": str(doc.get("description", "")),
            "common": merged_common, "notebooks": merged_nbs, "sources": sources}


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


def inspect_notebook(path: Union[str, os.PathLike]) -> Notebook:
    """Read a notebook's parameters (names, types, defaults) without running it."""
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


def resolve_parameters(notebooks: Sequence[Notebook], profile: Mapping[str, Any],
                       overrides: Sequence[str] = (),
                       selected: Optional[Sequence[Notebook]] = None,
                       check_placeholders: bool = True) -> Dict[str, Dict[str, Any]]:
    """Every selected notebook's parameters from the profile and ``-p`` overrides, validated
    (see the module docstring). Returns ``{notebook: {name: value}}`` holding the values the
    profile or ``-p`` set (the notebook's own defaults apply to the rest); raises
    :class:`ParameterError` listing every problem. ``check_placeholders=False`` lets
    ``/path/to/...`` values through (to check a profile's shape before a user fills it in)."""
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
        elif scope is None:
            if k not in declared:
                problems.append(f"-p {k}: no notebook has a parameter {k!r}" + _unknown(k, declared))
            cli_all[k] = v
        elif scope not in by_name:
            problems.append(f"-p {scope}.{k}: no notebook {scope!r}" + _unknown(scope, list(by_name)))
        elif k not in by_name[scope].parameters:
            problems.append(f"-p {scope}.{k}: {scope} has no parameter {k!r}"
                            + _unknown(k, list(by_name[scope].parameters)))
        else:
            cli_nb.setdefault(scope, {})[k] = v

    resolved: Dict[str, Dict[str, Any]] = {}
    for nb in selected:
        values: Dict[str, Tuple[Any, str]] = {}
        for k, v in common.items():
            values[k] = (v, sources.get(f"common.{k}", pfile))
        for k, v in per_nb.get(nb.name, {}).items():
            values[k] = (v, sources.get(f"{nb.name}.{k}", pfile))
        for k, v in cli_all.items():
            values[k] = (v, f"-p {k}")
        for k, v in cli_nb.get(nb.name, {}).items():
            values[k] = (v, f"-p {nb.name}.{k}")
        out = {}
        for k, (v, src) in values.items():
            p = nb.parameters.get(k)
            if p is None or k in RESERVED:
                continue  # a common/-p key another notebook declares
            msg = p.check(v)
            if msg:
                problems.append(f"{nb.name}: parameter {k!r} {msg} (from {src})")
                continue
            if check_placeholders and isinstance(v, str) and v.startswith(PLACEHOLDER_PREFIX):
                problems.append(f"{nb.name}: parameter {k!r} is still the placeholder {v!r} "
                                f"(from {src}); edit the profile or pass -p {k}=...")
                continue
            out[k] = p.coerce(v)
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

@dataclass
class NotebookRun:
    """One notebook's outcome. ``html``/``ipynb`` are file names in the report folder."""

    name: str
    status: str  # "ok", "failed" or "not run"
    duration_s: Optional[float]
    started: Optional[str] = None
    finished: Optional[str] = None
    error: Optional[str] = None
    html: Optional[str] = None
    ipynb: Optional[str] = None
    earlier: bool = False  # carried over from an earlier run (not selected by --only)


@dataclass
class RunResult:
    """What :func:`run` did: the report folder, each notebook's outcome and the manifest."""

    profile: str
    output_dir: Path
    notebooks: List[NotebookRun]
    manifest: Dict[str, Any]
    results: Dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when no notebook of this run failed."""
        return all(r.status != "failed" for r in self.notebooks if not r.earlier)

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


def _clean_previous(out: Path, name: str) -> None:
    """Remove what an earlier run of ``name`` left, so a failure now never shows old results."""
    res = out / "results" / f"{name}.json"
    if res.exists():
        try:
            for f in _results.load(res).get("figures", []):
                for rel in f.get("files", {}).values():
                    p = out / rel
                    if p.is_file() and p.resolve().is_relative_to(out.resolve()):
                        p.unlink()
        except ValueError:
            pass
        res.unlink()
    for suffix in (".ipynb", ".html"):
        (out / f"{name}{suffix}").unlink(missing_ok=True)


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


def _execute(nb: Notebook, params: Dict[str, Any], out_ipynb: Path, kernel: str,
             progress: bool, cell_timeout: Optional[int]) -> Optional[str]:
    """Run one notebook with papermill; return None on success or a one-line error."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    # IPC sockets (files only this user can open) rather than localhost TCP, where the kernel
    # warns about unencrypted traffic; Windows has no IPC transport.
    transport = "ipc" if os.name == "posix" else "tcp"
    # The kernel inherits this environment. tqdm.auto warns in every kernel without ipywidgets
    # and then draws text bars, which is what a static report wants: drop the warning there.
    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [saved, "ignore:IProgress not found"]))
    try:
        papermill.execute_notebook(
            str(nb.path), str(out_ipynb), parameters=params, kernel_name=kernel,
            language="python", cwd=str(nb.path.parent), progress_bar=progress, log_output=False,
            execution_timeout=cell_timeout,
            config=Config({"KernelManager": {"transport": transport}}))
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
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved


def run(profile: Union[str, os.PathLike] = "demo", overrides: Sequence[str] = (),
        only: Optional[Sequence[str]] = None, output_dir: Optional[Union[str, os.PathLike]] = None,
        notebooks_dir: Optional[Union[str, os.PathLike]] = None, hide_code: bool = False,
        kernel: Optional[str] = None, progress: bool = True, cell_timeout: Optional[int] = None,
        dry_run: bool = False, quiet: bool = False,
        command: Optional[Sequence[str]] = None) -> RunResult:
    """Run the notebooks into ``<output_dir>/<profile>/`` (see the module docstring).

    ``output_dir`` defaults to ``reports/`` beside ``notebooks_dir`` (itself
    :func:`default_notebooks_dir`); ``only`` picks notebooks; ``hide_code`` renders HTML without code
    cells; ``kernel`` names a Jupyter kernel instead of this interpreter's; ``cell_timeout``
    (seconds) bounds each cell; ``dry_run`` validates and returns without running anything.
    Raises :class:`ParameterError` before any work for bad parameters.
    """
    t_start = _report.now()
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    paths = discover_notebooks(nb_dir)
    if not paths:
        raise ParameterError([f"no notebooks named NN_name.ipynb in {nb_dir}"])
    prof = load_profile(profile)
    notebooks = [inspect_notebook(p) for p in paths]
    chosen = select(notebooks, only)
    params = resolve_parameters(notebooks, prof, overrides, chosen)
    out = Path(output_dir) if output_dir is not None else nb_dir.parent / "reports"
    out = (out / prof["name"]).resolve()

    injected: Dict[str, Dict[str, Any]] = {}
    effective: Dict[str, Dict[str, Any]] = {}
    for nb in chosen:
        p = dict(params[nb.name])
        if "output_dir" in nb.parameters:
            p["output_dir"] = str(out)
        if "results_path" in nb.parameters:
            p["results_path"] = str(out / "results" / f"{nb.name}.json")
        injected[nb.name] = p
        effective[nb.name] = {**{k: _default_value(v) for k, v in nb.parameters.items()}, **p}
    cli_overrides = {}
    for item in overrides:
        scope, k, v = parse_override(item)
        cli_overrides[f"{scope}.{k}" if scope else k] = v
    if dry_run:
        return RunResult(prof["name"], out, [NotebookRun(nb.name, "not run", None)
                                             for nb in chosen],
                         {"parameters": effective, "injected": injected}, {})

    kernel = kernel or ensure_kernel()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    runs: List[NotebookRun] = []
    for i, nb in enumerate(chosen, 1):
        _clean_previous(out, nb.name)
        _log(f"[{i}/{len(chosen)}] {nb.name} ...", quiet)
        started, t0 = _report.now(), time.perf_counter()
        out_ipynb = out / f"{nb.name}.ipynb"
        error = _execute(nb, injected[nb.name], out_ipynb, kernel, progress, cell_timeout)
        duration = round(time.perf_counter() - t0, 2)
        html_name = None
        try:
            _report.export_html(out_ipynb, out / f"{nb.name}.html", hide_code=hide_code)
            html_name = f"{nb.name}.html"
        except Exception as e:  # a report we cannot render is a failure of the run, not a crash
            error = error or f"HTML export failed: {type(e).__name__}: {e}"
        run_ = NotebookRun(nb.name, "failed" if error else "ok", duration, started, _report.now(),
                           error, html_name, out_ipynb.name if out_ipynb.exists() else None)
        runs.append(run_)
        _log(f"[{i}/{len(chosen)}] {nb.name}: {run_.status} ({duration:.1f} s)"
             + (f": {error}" if error else ""), quiet)

    # Notebooks not selected this time keep their last outcome on the index (marked as earlier).
    try:
        prev = json.loads((out / "manifest.json").read_text())
        previous = {r["name"]: r for r in prev["notebooks"]}
        prev_params = dict(prev.get("parameters", {}))
    except (OSError, ValueError, KeyError, TypeError):
        previous, prev_params = {}, {}
    ran = {r.name: r for r in runs}
    all_runs: List[NotebookRun] = []
    for nb in notebooks:
        if nb.name in ran:
            all_runs.append(ran[nb.name])
        elif nb.name in previous:
            fields = {k: previous[nb.name].get(k) for k in NotebookRun.__dataclass_fields__}
            fields["earlier"] = True
            all_runs.append(NotebookRun(**fields))
            if nb.name in prev_params:
                effective[nb.name] = prev_params[nb.name]

    docs: Dict[str, Optional[Dict[str, Any]]] = {}
    merged: Dict[str, Any] = {}
    for r in all_runs:
        f = out / "results" / f"{r.name}.json"
        docs[r.name] = None
        if f.exists():
            try:
                docs[r.name] = _results.load(f)
            except ValueError as e:
                _log(f"warning: {e}", quiet)
                continue
            _results.merge(merged, docs[r.name]["results"])
    _results.dump_json(merged, out / "results.json")
    manifest = _report.build_manifest(
        profile=prof, overrides=cli_overrides,
        parameters={r.name: effective.get(r.name, {}) for r in all_runs},
        injected={r.name: injected.get(r.name, {}) for r in runs},
        runs=[asdict(r) for r in all_runs], merged_results=merged, repo=nb_dir,
        started=t_start, finished=_report.now(),
        command=list(command) if command is not None else [sys.executable, *sys.argv])
    _report.write_index(out, manifest, docs)
    return RunResult(prof["name"], out, all_runs, manifest, merged)
