"""The workbook's notebooks and the parameters each declares in its cell tagged ``parameters``
(read with ``papermill.inspect_notebook``; types from an annotation ``n_images: int = 64``, a
``# type: int`` comment, or else the default literal's type)."""
from __future__ import annotations

import ast
import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from unirepclip.workbook.params.values import ParameterError

__all__ = ["KERNEL_NAME", "NOTEBOOK_RE", "NotebookParameter", "Notebook", "discover_notebooks",
           "inspect_notebook", "inspect_notebooks", "select", "default_value",
           "default_notebooks_dir"]

KERNEL_NAME = "unirepclip"
NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+$")

_SIMPLE_TYPES: Dict[str, Tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
    "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,), "NoneType": (type(None),),
}
_GENERIC_RE = re.compile(
    r"^(?:typing\.)?(List|Dict|Tuple|Sequence|Mapping|list|dict|tuple)\s*\[.*\]$")
_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


@dataclasses.dataclass
class NotebookParameter:
    """A parameter as one notebook declares it: its type there, its default's source text, and
    the comment after it (its help)."""

    name: str
    type_name: Optional[str]  # "int", "Optional[str]", ...; None when nothing says
    default: str
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
            t = {"sequence": "list", "mapping": "dict"}.get(g.group(1).lower(), g.group(1).lower())
        if t in ("", "None", "Any", "typing.Any") or t not in _SIMPLE_TYPES:
            return None  # a class, a Union: the notebook's to judge, not the runner's
        return _SIMPLE_TYPES[t], optional

    def check(self, value: Any) -> Optional[str]:
        """None if ``value`` fits the declared type, else "expected X, got Y"."""
        acc = self.accepted()
        if acc is None:
            return None
        types, optional = acc
        if value is None and (optional or type(None) in types):
            return None
        # bool is an int subclass in Python; a flag is never a count.
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
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


def default_value(p: NotebookParameter) -> Any:
    """A parameter's default as a value when it is a literal, else its source text."""
    try:
        return ast.literal_eval(p.default)
    except _LITERAL_ERRORS:
        return p.default


@dataclasses.dataclass
class Notebook:
    """A notebook of the workbook: its name (file stem), path and declared parameters."""

    name: str
    path: Path
    parameters: Dict[str, NotebookParameter]
    problems: List[str] = dataclasses.field(default_factory=list)  # found while reading it


def default_notebooks_dir() -> Path:
    """``./notebooks`` when it exists, else the repository's (this package sits in ``lib/``)."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[4] / "notebooks"


def discover_notebooks(folder: Union[str, os.PathLike]) -> List[Path]:
    """``NN_name.ipynb`` files in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError([f"notebook folder {folder} does not exist"])
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_RE.match(p.stem))


def inspect_notebooks(folder: Union[str, os.PathLike]) -> List[Notebook]:
    """Every notebook of ``folder`` (:func:`discover_notebooks`), inspected."""
    paths = discover_notebooks(folder)
    if not paths:
        raise ParameterError([f"no notebooks named NN_name.ipynb in {folder}"])
    return [inspect_notebook(p) for p in paths]


def _literal_type(src: str) -> Optional[str]:
    try:
        v = ast.literal_eval(src)
    except _LITERAL_ERRORS:
        return None
    return "NoneType" if v is None else type(v).__name__


def _papermill_parameters(nb: Any, path: Path) -> Dict[str, Any]:
    """papermill's reading of the parameters cell (it needs the kernel's language in the
    metadata to pick its translator: a notebook without one is read through a copy with it)."""
    import nbformat
    import papermill

    if nb.metadata.get("kernelspec", {}).get("name") and nb.metadata.get(
            "language_info", {}).get("name"):
        return papermill.inspect_notebook(str(path))
    ks = nb.metadata.setdefault("kernelspec", {})
    ks.setdefault("name", KERNEL_NAME)
    ks.setdefault("language", "python")
    ks.setdefault("display_name", KERNEL_NAME)
    nb.metadata.setdefault("language_info", {})["name"] = "python"
    with tempfile.NamedTemporaryFile("w", suffix=".ipynb", delete=False) as f:
        nbformat.write(nb, f)
    try:
        return papermill.inspect_notebook(f.name)
    finally:
        os.unlink(f.name)


def _unread_assignments(source: str, params: Dict[str, Any], name: str) -> List[str]:
    """Assignments Python sees in the cell but papermill's line pattern misses (say
    ``x: str | None = None``): the runner would silently never set them."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"{name}: the parameters cell is not valid Python: {e}"]
    problems = []
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        problems += [f"{name}: papermill cannot read parameter {t!r} (line {node.lineno}); write "
                     "one `name = value` or `name: type = value` per line, with Optional[...] "
                     "rather than `X | None`" for t in targets if t not in params]
    return problems


def inspect_notebook(path: Union[str, os.PathLike]) -> Notebook:
    """Read a notebook's parameters (names, types, defaults) without running it."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    problems = ([] if len(cells) == 1 else
                [f"{path.name}: {len(cells)} cells tagged 'parameters' (exactly one needed)"])
    if not cells:
        return Notebook(path.stem, path, {}, problems)
    params = {}
    for name, p in _papermill_parameters(nb, path).items():
        t = p.get("inferred_type_name")
        t = None if t in (None, "None") else t
        params[name] = NotebookParameter(name, t or _literal_type(p.get("default", "")),
                                         p.get("default", ""), p.get("help", ""))
    problems += _unread_assignments(cells[0].source, params, path.name)
    return Notebook(path.stem, path, params, problems)


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
