"""environment.yml and pyproject.toml name the same dependencies.

The rule (so conda users and pip users get the same project):

* environment.yml's dependencies hold a ``python`` pin that pyproject's ``requires-python``
  allows, ``pip``, and one ``pip:`` section;
* the pip section installs the project itself, editable: ``-e .`` or ``-e .[extras]``, with extras
  that pyproject defines;
* the set of package names in environment.yml (the pip section plus any conda packages other
  than python and pip; conda's ``pytorch`` counts as ``torch``; names compared in PEP 503 normal
  form) equals the set of names in pyproject's ``dependencies`` (test-only tools come through the
  extras of ``-e .[test]``, but may also be named if pyproject lists them in an extra);
* where environment.yml gives a version specifier, it is pyproject's.

And pyproject declares what the project imports: every top-level import in ``lib/``, the
notebooks' code cells and ``benchmarks/`` (the standard library and the package aside) comes from a
distribution in ``dependencies`` (the tests' imports may also come from the ``test`` extra); each
declared dependency is imported somewhere or named in ``NOT_IMPORTED`` with its reason; and the
package data globs ship every data file under ``lib/unirepclip`` and match at least one.
"""
import ast
import fnmatch
import json
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}
# Declared, never imported: the reason each is needed anyway.
NOT_IMPORTED = {
    "jupyterlab": "`make lab` opens the notebooks in it",
    "jupyterlab-widgets": "JupyterLab's extension that draws the explorer's ipywidgets (notebook 06)",
    "pytest-xdist": "a pytest plugin: `make test` runs the suite on every core with -n auto",
}
_CONDA_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(.*)$")


def _pyproject(path=REPO / "pyproject.toml"):
    project = tomllib.loads(path.read_text())["project"]
    deps = {canonicalize_name(Requirement(d).name): Requirement(d) for d in project["dependencies"]}
    extras = {name: {canonicalize_name(Requirement(d).name) for d in reqs}
              for name, reqs in project.get("optional-dependencies", {}).items()}
    return project, deps, extras


def _conda_name_version(item: str):
    m = _CONDA_SPEC.match(item.strip())
    name, rest = m.group(1), m.group(2).strip()
    name = CONDA_TO_PYPI.get(name, name)
    return canonicalize_name(name), rest.lstrip("=").strip() or None


def check_environment(env: dict, requires_python: str, deps: dict, extras: dict) -> list:
    """Problems with ``env`` (parsed environment.yml) under the module's rule; [] when it holds."""
    problems = []
    conda, pip_sections = [], []
    for item in env.get("dependencies") or []:
        if isinstance(item, dict) and "pip" in item:
            pip_sections.append(item["pip"] or [])
        elif isinstance(item, str):
            conda.append(item)
        else:
            problems.append(f"unexpected dependency entry {item!r}")
    names = {}
    python = [c for c in conda if _conda_name_version(c)[0] == "python"]
    if len(python) != 1 or not _conda_name_version(python[0])[1]:
        problems.append(f"need one pinned python, found {python}")
    else:
        version = _conda_name_version(python[0])[1].rstrip(".*")
        if Version(version) not in SpecifierSet(requires_python):
            problems.append(f"python {version} is not allowed by requires-python {requires_python}")
    if not any(_conda_name_version(c)[0] == "pip" for c in conda):
        problems.append("conda dependencies lack pip")
    for c in conda:
        name, _ = _conda_name_version(c)
        if name not in ("python", "pip"):
            names[name] = None  # conda specs use conda's syntax: only the name is compared
    if len(pip_sections) != 1:
        problems.append(f"need exactly one pip section, found {len(pip_sections)}")
    editable = []
    for line in pip_sections[0] if pip_sections else []:
        line = str(line).strip()
        if line.startswith("-e") or line.startswith("--editable"):
            editable.append(line)
            m = re.match(r"^(?:-e|--editable)\s+\.(?:\[([^\]]*)\])?$", line)
            if not m:
                problems.append(f"pip: {line!r} is not `-e .` or `-e .[extras]`")
            else:
                for extra in filter(None, (m.group(1) or "").split(",")):
                    if extra.strip() not in extras:
                        problems.append(f"pip: extra {extra.strip()!r} is not in pyproject")
            continue
        req = Requirement(line)
        names[canonicalize_name(req.name)] = req
    if len(editable) != 1:
        problems.append(f"the pip section must install the project once (-e .), found {editable}")
    allowed_extra = set().union(*extras.values()) if extras else set()
    for name in sorted(set(deps) - set(names)):
        problems.append(f"{name}: in pyproject.toml, missing from environment.yml")
    for name in sorted(set(names) - set(deps) - allowed_extra):
        problems.append(f"{name}: in environment.yml, not a pyproject.toml dependency")
    for name, req in names.items():
        if req is not None and req.specifier and name in deps and req.specifier != deps[name].specifier:
            problems.append(f"{name}: environment.yml says {req.specifier}, "
                            f"pyproject.toml {deps[name].specifier}")
    return problems


def test_environment_yml_names_the_pyproject_dependencies():
    env_file = REPO / "environment.yml"
    assert env_file.is_file(), "environment.yml is missing"
    project, deps, extras = _pyproject()
    env = yaml.safe_load(env_file.read_text())
    assert check_environment(env, project["requires-python"], deps, extras) == []
    assert "test" in extras and {"pytest", "selenium"} <= extras["test"]


@pytest.fixture()
def good():
    project, deps, extras = _pyproject()
    pip = [str(r) for r in deps.values()] + ["-e .[test]"]
    return {"dependencies": ["python=3.11", "pip", {"pip": pip}]}, project, deps, extras


def test_the_rule_catches_drift(good):
    env, project, deps, extras = good
    req = project["requires-python"]
    assert check_environment(env, req, deps, extras) == []
    pip = env["dependencies"][2]["pip"]

    dropped = {"dependencies": ["python=3.11", "pip", {"pip": [p for p in pip if "timm" not in p]}]}
    assert check_environment(dropped, req, deps, extras) == [
        "timm: in pyproject.toml, missing from environment.yml"]

    added = {"dependencies": ["python=3.11", "pip", "pandas", {"pip": pip}]}
    assert check_environment(added, req, deps, extras) == [
        "pandas: in environment.yml, not a pyproject.toml dependency"]

    respelled = [("Open-Clip-Torch" + p[len("open_clip_torch"):]) if p.startswith("open_clip_torch")
                 else p for p in pip]
    assert check_environment({"dependencies": ["python=3.11", "pip", {"pip": respelled}]},
                             req, deps, extras) == []  # PEP 503: the same name

    pinned = [("numpy==1.0" if p.startswith("numpy") else p) for p in pip]
    problems = check_environment({"dependencies": ["python=3.11", "pip", {"pip": pinned}]},
                                 req, deps, extras)
    assert len(problems) == 1 and problems[0].startswith("numpy: environment.yml says ==1.0")

    conda_torch = {"dependencies": ["python=3.11", "pip", "pytorch>=2.2",
                                    {"pip": [p for p in pip if not p.startswith("torch>")]}]}
    assert check_environment(conda_torch, req, deps, extras) == []

    no_project = {"dependencies": ["python=3.11", "pip", {"pip": pip[:-1]}]}
    assert any("-e ." in p for p in check_environment(no_project, req, deps, extras))
    old_python = {"dependencies": ["python=3.8", "pip", {"pip": pip}]}
    assert any("requires-python" in p for p in check_environment(old_python, req, deps, extras))


# --- what the project imports -------------------------------------------------------------------

def _optional(tree: ast.AST) -> set:
    """ids of imports under a ``try`` that catches ImportError: optional by construction."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def top_level_imports(source: str) -> set:
    """Top-level names of the absolute imports in ``source`` (module level and in functions)."""
    tree = ast.parse(source)
    skip = _optional(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, IPython's ``%magic`` and ``!shell`` lines left out."""
    cells = json.loads(path.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines() + [""]
             if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def project_imports(kind: str) -> dict:
    """``{top-level import: [files]}`` outside the standard library and the package itself."""
    if kind == "tests":
        sources = {p: p.read_text() for p in sorted((REPO / "tests").rglob("*.py"))}
    else:
        sources = {p: p.read_text() for d in ("lib", "benchmarks")
                   for p in sorted((REPO / d).rglob("*.py"))}
        sources.update({p: notebook_code(p) for p in sorted((REPO / "notebooks").glob("*.ipynb"))})
    # the project's own modules: the package, and the shared helpers the benchmarks import from tests/
    local = {"unirepclip"} | {p.stem for d in ("tests", "benchmarks") for p in (REPO / d).glob("*.py")}
    out: dict = {}
    for path, text in sources.items():
        for name in top_level_imports(text):
            if name not in sys.stdlib_module_names and name not in local:
                out.setdefault(name, []).append(str(path.relative_to(REPO)))
    return out


def undeclared(imports: dict, declared: set, distributions: dict) -> list:
    """Problems: an import no declared distribution provides, or no installed one."""
    problems = []
    for name, files in sorted(imports.items()):
        dists = {canonicalize_name(d) for d in distributions.get(name, [])}
        if not dists:
            problems.append(f"{name} (imported in {files[0]}): no installed distribution provides it")
        elif not dists & declared:
            problems.append(f"{name} (imported in {files[0]}): its distribution "
                            f"{' or '.join(sorted(dists))} is not declared in pyproject.toml")
    return problems


def test_every_import_is_declared():
    _, deps, extras = _pyproject()
    distributions = packages_distributions()
    assert undeclared(project_imports("project"), set(deps), distributions) == []
    assert undeclared(project_imports("tests"), set(deps) | extras["test"], distributions) == []


def test_every_declared_dependency_is_used():
    _, deps, extras = _pyproject()
    distributions = packages_distributions()
    provided = {canonicalize_name(d)
                for kind in ("project", "tests") for name in project_imports(kind)
                for d in distributions.get(name, [])}
    unused = sorted((set(deps) | extras["test"]) - provided - set(NOT_IMPORTED))
    assert unused == [], f"declared but never imported (or add to NOT_IMPORTED with why): {unused}"
    assert set(NOT_IMPORTED) <= set(deps) | extras["test"], \
        "NOT_IMPORTED names a package pyproject does not declare"


def test_the_import_check_catches_an_undeclared_import():
    source = ("import numpy as np\nfrom scipy.special import softmax\nimport os.path\n"
              "from . import sibling\n"
              "try:\n    import tomli\nexcept ImportError:\n    tomli = None\n"
              "def f():\n    import PIL.Image\n")
    names = top_level_imports(source)
    assert names == {"numpy", "scipy", "os", "PIL"}  # function level counted; optional skipped
    dists = {"numpy": ["numpy"], "scipy": ["scipy"], "PIL": ["Pillow"]}
    imports = {n: ["x.py"] for n in names - {"os"}}
    assert undeclared(imports, {"numpy", "scipy", "pillow"}, dists) == []
    assert undeclared(imports, {"numpy", "pillow"}, dists) == [
        "scipy (imported in x.py): its distribution scipy is not declared in pyproject.toml"]
    assert undeclared({"nothere": ["y.py"]}, set(), dists) == [
        "nothere (imported in y.py): no installed distribution provides it"]


def test_notebook_code_drops_magics_and_keeps_every_code_cell(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": ["%matplotlib inline\n", "import numpy"]},
        {"cell_type": "markdown", "source": ["import pandas"]},
        {"cell_type": "code", "source": ["!pip list\n", "from threadpoolctl import x"]}]}))
    assert top_level_imports(notebook_code(nb)) == {"numpy", "threadpoolctl"}


# --- what the wheel ships -----------------------------------------------------------------------

def _data_files() -> list:
    pkg = REPO / "lib" / "unirepclip"
    return sorted(p for p in pkg.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts)


def test_package_data_ships_every_data_file_and_no_glob_is_stale():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    lib = REPO / "lib"
    files = _data_files()
    assert files, "no data files found under lib/unirepclip"

    def matches(path: Path, package: str, pattern: str) -> bool:
        pkg_dir = lib.joinpath(*package.split("."))
        return pkg_dir in path.parents and fnmatch.fnmatch(
            path.relative_to(pkg_dir).as_posix(), pattern)

    unshipped = [str(f.relative_to(REPO)) for f in files
                 if not any(matches(f, pkg, g) for pkg, gs in globs.items() for g in gs)]
    assert unshipped == [], f"pyproject's package-data leaves these out of the wheel: {unshipped}"
    stale = [f"{pkg}: {g}" for pkg, gs in globs.items() for g in gs
             if not any(matches(f, pkg, g) for f in files)]
    assert stale == [], f"package-data globs that match nothing: {stale}"
