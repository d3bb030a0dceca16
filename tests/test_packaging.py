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
"""
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}
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
