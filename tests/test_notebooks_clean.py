"""The notebooks as committed: no outputs, one parameters cell the runner can read, demo defaults.

Every ``notebooks/*.ipynb`` that git tracks is checked in the form git holds (the index, i.e. what
a commit stores; the working tree only when there is no git checkout):

* no outputs and no execution counts in any code cell, no papermill ``injected-parameters`` cell
  (an executed copy from ``reports/`` committed by mistake);
* exactly one cell tagged ``parameters``, every assignment in it readable by papermill, and
  ``output_dir`` and ``results_path`` among them (each notebook records results);
* the parameter defaults equal the ``demo`` profile's values, so a notebook opened in JupyterLab
  runs the embedded default as it is;
* every shipped profile resolves against the notebooks (no unknown names, no wrong types;
  ``/path/to/`` placeholders allowed).

With no notebooks committed yet these checks hold trivially; they bite as soon as one is.
"""
import ast
import subprocess
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from unirepclip.workbook import params
from unirepclip.workbook import run as wrun

REPO = Path(__file__).resolve().parents[1]


def committed_notebooks():
    """[(path relative to the repo, text as git stores it)] of notebooks/*.ipynb."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", "notebooks/*.ipynb"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [(p.relative_to(REPO).as_posix(), p.read_text())
                for p in sorted((REPO / "notebooks").glob("*.ipynb"))]
    out = []
    for rel in sorted(filter(None, listed.split("\0"))):
        text = subprocess.run(["git", "-C", str(REPO), "show", f":{rel}"], capture_output=True,
                              text=True, check=True).stdout
        out.append((rel, text))
    return out


def notebook_problems(name, nb, tmp_dir: Path):
    """Problems with one notebook (a NotebookNode) as committed; [] when clean."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{name}: cell {i} has outputs (clear them before committing)")
        if cell.get("execution_count") is not None:
            problems.append(f"{name}: cell {i} has an execution count")
        if "injected-parameters" in cell.metadata.get("tags", []):
            problems.append(f"{name}: cell {i} is papermill's injected-parameters (an executed copy)")
    path = tmp_dir / Path(name).name
    nbformat.write(nb, path)
    inspected = params.inspect_notebook(path)
    problems.extend(inspected.problems)
    for reserved in params.RESERVED:
        if inspected.parameters and reserved not in inspected.parameters:
            problems.append(f"{name}: the parameters cell lacks {reserved!r}")
    return problems, inspected


def _literal(src):
    try:
        return ast.literal_eval(src)
    except (ValueError, SyntaxError):
        return src


def test_committed_notebooks_are_clean_and_match_the_demo_profile(tmp_path):
    found = committed_notebooks()
    problems, inspected = [], []
    for rel, text in found:
        nb = nbformat.reads(text, as_version=4)
        p, nb_info = notebook_problems(rel, nb, tmp_path)
        problems.extend(p)
        inspected.append(nb_info)
    demo = params.load_profile("demo")
    for nb in inspected:
        wanted = {**demo["common"], **demo["notebooks"].get(nb.name, {})}
        for key, param in nb.parameters.items():
            if key in wanted and _literal(param.default) != wanted[key]:
                problems.append(f"{nb.name}: default {key} = {param.default} but the demo profile "
                                f"says {wanted[key]!r}")
    if inspected:
        for profile in params.list_profiles():
            try:
                params.resolve_parameters(inspected, params.load_profile(profile),
                                          params.Request(check_placeholders=False))
            except params.ParameterError as e:
                problems.append(f"profile {profile}: {e}")
    assert problems == []


def test_the_checks_catch_a_dirty_notebook(tmp_path):
    cell = new_code_cell("seed = 3\nbatch_size = 'big'\nx: str | None = None")
    cell.metadata["tags"] = ["parameters"]
    ran = new_code_cell("print(1)", execution_count=4)
    ran.outputs = [new_output("stream", name="stdout", text="1\n")]
    injected = new_code_cell("seed = 1")
    injected.metadata["tags"] = ["injected-parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# t"), cell, ran, injected])
    problems, info = notebook_problems("notebooks/09_dirty.ipynb", nb, tmp_path)
    text = "\n".join(problems)
    assert "cell 2 has outputs" in text and "cell 2 has an execution count" in text
    assert "cell 3 is papermill's injected-parameters" in text
    assert "cannot read parameter 'x'" in text
    assert "lacks 'output_dir'" in text and "lacks 'results_path'" in text
    # ...and a profile value of the wrong type for it is reported the runner's way.
    try:
        params.resolve_parameters([info], {"name": "demo", "common": {"seed": "zero"},
                                           "notebooks": {}}, params.Request(check_placeholders=False))
    except params.ParameterError as e:
        assert "09_dirty: parameter 'seed' expected int, got str 'zero'" in str(e)
    else:
        raise AssertionError("a wrong type went through")
