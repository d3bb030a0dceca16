"""The one parameter vocabulary (issue 22): each parameter declared once, by the layer that gives
it meaning (its ``params.py``), and composed by the workbook. A parameter or a dataset added by
its owner alone is checked by the runner with no change to the workbook."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from unirepclip.data import registry
from unirepclip.vocab import SIZE, Param
from unirepclip.workbook import params

REPO = Path(__file__).resolve().parents[1]


def test_every_parameter_of_a_shipped_notebook_is_declared_once_with_its_type():
    vocab = params.vocabulary()
    problems = []
    for nb in params.inspect_notebooks(REPO / "notebooks"):
        for name, p in nb.parameters.items():
            if name not in vocab:
                problems.append(f"{nb.name}.{name}: declared by no layer")
            elif (p.type_name or "").replace(" ", "") != vocab[name].type.replace(" ", ""):
                problems.append(f"{nb.name}.{name}: {p.type_name} here, {vocab[name].type} in "
                                f"{vocab[name].owner}")
    assert problems == []
    assert vocab["precision"].owner == "unirepclip.models.params"
    assert vocab["dataset"].owner == "unirepclip.data.params"
    assert vocab["stages"].owner == "unirepclip.analysis.params"


def test_a_name_two_layers_declare_is_refused(monkeypatch):
    from unirepclip.eval import params as eval_params
    monkeypatch.setattr(eval_params, "PARAMETERS",
                        eval_params.PARAMETERS + (Param("seed", "int", "again"),))
    with pytest.raises(ValueError, match="'seed' is declared by both unirepclip.vocab and "
                                         "unirepclip.eval.params"):
        params.vocabulary()


def _notebook(folder: Path, source: str) -> list:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, str(folder / "01_new.ipynb"))
    return params.inspect_notebooks(folder)


def _resolve(nbs, *overrides):
    return params.resolve_parameters(nbs, {"name": "t", "common": {}, "notebooks": {}},
                                     params.Request(tuple(overrides)))


def test_a_parameter_added_by_its_owner_alone_is_checked(tmp_path, monkeypatch):
    from unirepclip.eval import params as eval_params
    nbs = _notebook(tmp_path, "n_widgets: int = 3\ndataset = 'synthetic'")
    assert _resolve(nbs, "n_widgets=0")["01_new"]["n_widgets"] == 0  # undeclared: any int
    monkeypatch.setattr(eval_params, "PARAMETERS", eval_params.PARAMETERS + (
        Param("n_widgets", "int", "widgets per image", SIZE),))
    with pytest.raises(params.ParameterError, match="'n_widgets' must be an int >= 1, got 0"):
        _resolve(nbs, "n_widgets=0")
    assert _resolve(nbs, "n_widgets=2")["01_new"]["n_widgets"] == 2


def test_a_dataset_added_by_the_data_layer_alone_is_a_name_everywhere(tmp_path, monkeypatch):
    nbs = _notebook(tmp_path, "dataset = 'synthetic'\ncaptions_file = ''")
    with pytest.raises(params.ParameterError) as e:
        _resolve(nbs, "dataset=tiny_pairs", "captions_file=tiny_pairs")
    assert "'dataset' must be one of" in str(e.value)
    assert "'captions_file' names no file" in str(e.value)  # read as a path, and not there
    spec = registry.DatasetSpec("tiny_pairs", "folder", lambda a: None, ("test",),
                                "captioned squares", ("retrieval",), layout="pairs.json",
                                captions=lambda base: [])
    monkeypatch.setitem(registry.DATASETS, "tiny_pairs", spec)  # the only change anywhere
    got = _resolve(nbs, "dataset=tiny_pairs", "captions_file=tiny_pairs")["01_new"]
    assert got == {"dataset": "tiny_pairs", "captions_file": "tiny_pairs"}  # names, not paths


def test_checking_parameters_loads_no_model_stack():
    code = ("import sys; from unirepclip.workbook import params as P; "
            f"nbs = P.inspect_notebooks({str(REPO / 'notebooks')!r}); "
            "P.resolve_parameters(nbs, P.load_profile('demo'), P.Request(('stages=[0,1]',)));"
            "heavy = [m for m in ('torch', 'open_clip', 'timm') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
