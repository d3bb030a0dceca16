"""The runner (unirepclip.workbook.run, .params) and the `run` CLI: profiles, parameter validation, a run of tiny notebooks."""
import types
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from unirepclip.workbook import params
from unirepclip.workbook import run as wrun
from unirepclip.cli import main

DATA = Path(__file__).parent / "data"
NOTEBOOKS = DATA / "notebooks"
PROFILE = DATA / "toy_profile.yaml"
EVIL = "<img src=x onerror=alert(1)>"


# -- values and profiles --------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("8", 8), ("-3", -3), ("0.5", 0.5), ("1e-3", 1e-3), ("2.5E+2", 250.0), ("true", True),
    ("cuda", "cuda"), ("'007'", "007"), ("", None), ("null", None), ("[224, 256]", [224, 256]),
    ("/data/x.pt", "/data/x.pt"), ("a=b", "a=b")])
def test_parse_value_yaml_scalars(text, value):
    got = params.parse_value(text)
    assert got == value and type(got) is type(value)


def test_parse_override():
    assert params.parse_override("batch_size=8") == (None, "batch_size", 8)
    assert params.parse_override("02_zeroshot.n=1") == ("02_zeroshot", "n", 1)
    assert params.parse_override("path=a=b") == (None, "path", "a=b")
    for bad in ("novalue", "1x=2", "a-b=1", ".x=1"):
        with pytest.raises(params.ParameterError, match="-p"):
            params.parse_override(bad)


def test_shipped_profiles_load_and_ci_only_shrinks_demo():
    assert {"demo", "ci", "imagenet-l"} <= set(params.list_profiles())
    demo, ci = params.load_profile("demo"), params.load_profile("ci")
    assert set(ci["common"]) == set(demo["common"])
    changed = {k for k in demo["common"] if ci["common"][k] != demo["common"][k]}
    assert changed, "ci must shrink something"
    for k in changed:  # sizes and counts only, never a switch: the same code paths run
        a, b = demo["common"][k], ci["common"][k]
        assert type(a) is int and type(b) is int and 0 < b < a, k
    import ast
    notebooks = {p.stem: params.inspect_notebook(p)
                 for p in params.discover_notebooks(params.default_notebooks_dir())}
    for nb, values in ci["notebooks"].items():
        for k, b in values.items():
            a = demo["notebooks"].get(nb, {}).get(k, demo["common"].get(k))
            if a is None:  # not in the demo profile: the notebook's own default (= demo's)
                a = ast.literal_eval(notebooks[nb].parameters[k].default)
            if k in ("occlusion_window", "occlusion_stride"):  # coarser windows: fewer passes
                assert type(a) is int and type(b) is int and b > a, (nb, k, a, b)
            elif isinstance(a, list):  # fewer of the same sizes (or of the same Navon designs)
                flat = [x for v in a + b for x in (v if isinstance(v, list) else [v])]
                assert all(type(x) in (int, float) for x in flat), (nb, k, a, b)
                assert all(v in a for v in b) and len(set(map(str, b))) < len(a), (nb, k, a, b)
            else:
                assert type(a) is int and type(b) is int and 0 < b < a, (nb, k, a, b)
    assert demo["common"]["device"] == "cpu"
    big = params.load_profile("imagenet-l")
    assert big["common"]["device"] == "cuda" and big["common"]["precision"] == "bf16"
    assert big["common"]["checkpoint"].startswith(params.PLACEHOLDER_PREFIX)


def test_profile_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("common: {seed: 0}\nnotbooks: {}\n")
    with pytest.raises(params.ParameterError, match=r"bad.yaml: unknown top-level key 'notbooks'"):
        params.load_profile(bad)
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(params.ParameterError, match="loops"):
        params.load_profile(tmp_path / "a.yaml")
    with pytest.raises(params.ParameterError, match="shipped profiles: .*demo"):
        params.load_profile("no-such-profile")


def test_extends_merges_and_remembers_sources(tmp_path):
    (tmp_path / "child.yaml").write_text(
        f"extends: {PROFILE}\ncommon:\n  n_points: 4\nnotebooks:\n  02_fail:\n    seed: 7\n")
    p = params.load_profile(tmp_path / "child.yaml")
    assert p["common"] == {"seed": 1, "n_points": 4}
    assert p["notebooks"] == {"01_record": {"scale": 2}, "02_fail": {"seed": 7}}
    assert p["sources"]["common.seed"] == str(PROFILE)
    assert p["sources"]["common.n_points"] == str(tmp_path / "child.yaml")


# -- notebooks and resolution ---------------------------------------------------------------------

def test_inspect_notebook_reads_names_and_types():
    nb = params.inspect_notebook(NOTEBOOKS / "01_record.ipynb")
    types = {k: p.type_name for k, p in nb.parameters.items()}
    assert types == {"seed": "int", "n_points": "int", "scale": "float", "label": "str",
                     "device": "str", "checkpoint": "str", "output_dir": "str",
                     "results_path": "Optional[str]"}
    assert nb.parameters["n_points"].help == "how many points to plot"
    assert nb.problems == []


def _write_nb(path, *sources, tags=("parameters",)):
    cells = [new_code_cell(s) for s in sources]
    for c, t in zip(cells, tags):
        if t:
            c.metadata["tags"] = [t]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_inspect_notebook_reports_what_papermill_cannot_use(tmp_path):
    nb = params.inspect_notebook(_write_nb(tmp_path / "01_x.ipynb", "a = 1\nb: str | None = None"))
    assert list(nb.parameters) == ["a"]
    assert any("cannot read parameter 'b'" in p for p in nb.problems)
    two = params.inspect_notebook(_write_nb(tmp_path / "02_y.ipynb", "a = 1", "b = 2",
                                            tags=("parameters", "parameters")))
    assert any("2 cells tagged 'parameters'" in p for p in two.problems)
    none = params.inspect_notebook(_write_nb(tmp_path / "03_z.ipynb", "a = 1", tags=(None,)))
    assert any("0 cells tagged" in p for p in none.problems)


@pytest.fixture(scope="module")
def toy():
    return [params.inspect_notebook(p) for p in params.discover_notebooks(NOTEBOOKS)]


def test_resolution_order(toy):
    prof = params.load_profile(PROFILE)
    got = params.resolve_parameters(toy, prof, params.Request(["label=square", "seed=5",
                                                               "02_fail.seed=9"]))
    # profile common < profile notebook section < -p key < -p notebook.key; int -> float for floats
    assert got["01_record"] == {"seed": 5, "n_points": 8, "scale": 2.0, "label": "square"}
    assert type(got["01_record"]["scale"]) is float
    assert got["02_fail"] == {"seed": 9}


def _problems(toy, overrides=(), profile=None, **kw):
    prof = profile or params.load_profile(PROFILE)
    with pytest.raises(params.ParameterError) as e:
        params.resolve_parameters(toy, prof, params.Request(tuple(overrides), **kw))
    return e.value.problems, str(e.value)


def test_unknown_names_are_errors_naming_them(toy):
    problems, msg = _problems(toy, ["n_pionts=3", "02_fail.label=x", "04_nope.seed=1"])
    assert "-p n_pionts: no notebook has a parameter 'n_pionts' (did you mean n_points?)" in msg
    assert "-p 02_fail.label: 02_fail has no parameter 'label'" in msg
    assert "-p 04_nope.seed: no notebook '04_nope'" in msg
    assert len(problems) == 3


def test_wrong_types_name_notebook_parameter_expected_and_got(toy):
    problems, msg = _problems(toy, ["n_points=abc", "seed=true", "scale=[1]", "label=3"])
    assert "01_record: parameter 'n_points' expected int, got str 'abc' (from -p n_points)" in msg
    # a bool is not an int, although Python says isinstance(True, int)
    assert "01_record: parameter 'seed' expected int, got bool True (from -p seed)" in msg
    assert "02_fail: parameter 'seed' expected int, got bool True (from -p seed)" in msg
    assert "parameter 'scale' expected float, got list [1]" in msg
    assert "parameter 'label' expected str, got int 3" in msg
    assert len(problems) == 5


def test_profile_problems_name_the_file(toy, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("common:\n  sead: 0\n  output_dir: /x\nnotebooks:\n  01_record:\n"
                 "    scale: fast\n    nope: 1\n  09_missing:\n    a: 1\n")
    problems, msg = _problems(toy, profile=params.load_profile(f))
    assert f"{f}: common.sead: no notebook has a parameter 'sead' (did you mean seed?)" in msg
    assert f"{f}: common.output_dir is set by the runner" in msg
    assert f"{f}: notebooks.01_record.nope: 01_record has no parameter 'nope'" in msg
    assert f"{f}: notebooks.09_missing: no notebook 09_missing.ipynb" in msg
    assert f"01_record: parameter 'scale' expected float, got str 'fast' (from {f})" in msg
    assert len(problems) == 5


def test_placeholders_and_reserved_names(toy):
    problems, msg = _problems(toy, ["label=/path/to/classes.txt", "results_path=x"])
    assert "parameter 'label' is still the placeholder '/path/to/classes.txt'" in msg
    assert "-p results_path: set by the runner" in msg
    ok = params.resolve_parameters(toy, params.load_profile(PROFILE), params.Request(
        ["label=/path/to/classes.txt"], check_placeholders=False))
    assert ok["01_record"]["label"] == "/path/to/classes.txt"


def test_optional_and_untyped_parameters():
    p = params.NotebookParameter("x", "Optional[int]", "None")
    assert p.check(None) is None and p.check(3) is None and "expected" in p.check("3")
    assert params.NotebookParameter("x", "NoneType", "None").check("anything") is not None
    assert params.NotebookParameter("x", None, "compute()").check(object()) is None  # unknown: no check
    assert params.NotebookParameter("x", "List[int]", "[]").check([1]) is None
    assert params.NotebookParameter("x", "list", "[]").check("a") is not None


def test_select_only():
    nbs = [params.Notebook(n, Path(f"{n}.ipynb"), {}) for n in ("01_a", "02_b")]
    assert [n.name for n in params.select(nbs, ["b"])] == ["02_b"]
    assert [n.name for n in params.select(nbs, ["02_b", "01"])] == ["01_a", "02_b"]
    with pytest.raises(params.ParameterError, match="'03' matches no notebook"):
        params.select(nbs, ["03"])


def test_bad_parameters_stop_before_any_notebook_runs(tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("a notebook ran")

    monkeypatch.setattr(wrun.PapermillEngine, "open", boom)
    monkeypatch.setattr(wrun.PapermillEngine, "execute", boom)
    code = main(["run", "--notebooks-dir", str(NOTEBOOKS), "--output-dir", str(tmp_path / "out"),
                 "--profile", str(PROFILE), "-p", "n_points=many", "-p", "colour=red"])
    err = capsys.readouterr().err
    assert code == 2
    assert "01_record: parameter 'n_points' expected int, got str 'many'" in err
    assert "-p colour: no notebook has a parameter 'colour'" in err
    assert not (tmp_path / "out").exists()


# -- a real run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    code = main(["run", "--notebooks-dir", str(NOTEBOOKS), "--output-dir", str(out),
                 "--profile", str(PROFILE), "--no-progress", "-q", "-p", f"label={EVIL}"])
    return code, out / "toy_profile"


def test_run_reports_failure_and_keeps_going(toy_run):
    code, out = toy_run
    assert code == 1
    manifest = json.loads((out / "manifest.json").read_text())
    status = {r["name"]: r["status"] for r in manifest["notebooks"]}
    assert status == {"01_record": "ok", "02_fail": "failed"}
    failed = manifest["notebooks"][1]
    assert failed["error"].startswith("RuntimeError: deliberate failure")
    for name in ("01_record", "02_fail"):
        assert (out / f"{name}.ipynb").is_file() and (out / f"{name}.html").is_file()
    # The failing notebook's report shows the error; the cell after it never ran.
    page = (out / "02_fail.html").read_text()
    assert "deliberate failure" in page and 'id="papermill-error-cell"' in page
    assert "An Exception was encountered at" in page
    executed = nbformat.read(out / "02_fail.ipynb", as_version=4)
    assert executed.cells[-1].execution_count is None


def test_run_merges_results_and_applies_parameters(toy_run):
    _, out = toy_run
    res = json.loads((out / "results.json").read_text())
    assert res["toy"]["n"] == 8  # n_points from the profile's common section
    assert res["toy"]["tasks"] == {EVIL: {"acc1": 0.75}, "second": {"acc1": 0.5}}
    assert res["partial"] == {"before_error": 1}  # recorded before the failure, nothing after
    assert res["checkpoint"]["sha256"] == "ab" * 32
    for ext in ("png", "pdf", "svg"):
        assert (out / "figures" / f"toy_points.{ext}").stat().st_size > 0


def test_manifest(toy_run):
    _, out = toy_run
    m = json.loads((out / "manifest.json").read_text())
    # checkpoint="demo": the runner hashes the shipped file itself (issue 27); the notebook's own
    # record ("ab" * 32 in results.json) fills in only where the runner cannot hash a file
    from unirepclip.models.pretrained import demo_sha256
    assert m["seed"] == 1 and m["checkpoint"]["sha256"] == demo_sha256()
    assert m["parameters"]["01_record"]["scale"] == 2.0
    assert m["parameters"]["01_record"]["device"] == "cpu"  # a default the run did not set
    assert m["injected"]["01_record"]["output_dir"] == str(out)
    assert m["overrides"] == {"label": EVIL}
    assert m["git"]["commit"] and m["versions"]["torch"] and m["started"] <= m["finished"]


def test_index_marks_status_and_escapes(toy_run):
    _, out = toy_run
    page = (out / "index.html").read_text()
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert '<span class="status failed">failed</span>' in page
    assert '<span class="status ok">ok</span>' in page
    assert 'src="figures/toy_points.png"' in page
    assert "mean of the points" in page


@pytest.mark.slow  # a third notebook execution (~8 s here)
def test_only_reruns_one_and_keeps_the_others(toy_run):
    _, out = toy_run
    code = main(["run", "--notebooks-dir", str(NOTEBOOKS), "--output-dir", str(out.parent),
                 "--profile", str(PROFILE), "--no-progress", "-q", "--only", "record",
                 "-p", "n_points=5", "-p", "label=tri"])
    assert code == 0  # the earlier failure of 02 is not this run's
    m = json.loads((out / "manifest.json").read_text())
    by = {r["name"]: r for r in m["notebooks"]}
    assert by["01_record"]["status"] == "ok" and not by["01_record"]["earlier"]
    assert by["02_fail"]["status"] == "failed" and by["02_fail"]["earlier"]
    res = json.loads((out / "results.json").read_text())
    assert res["toy"]["n"] == 5 and set(res["toy"]["tasks"]) == {"tri", "second"}
    assert res["partial"] == {"before_error": 1}
    assert "from an earlier run" in (out / "index.html").read_text()


def test_ensure_kernel_registers_this_interpreter_and_refuses_a_shadow(tmp_path, monkeypatch):
    import shutil
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    name = "unirepclip-test-kernel"
    installed = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    try:
        assert wrun.ensure_kernel(name) == name
        spec = KernelSpecManager().get_kernel_spec(name)
        assert Path(spec.argv[0]).parent == Path(sys.executable).parent  # this environment's
        assert "ipykernel_launcher" in spec.argv
        # A kernelspec of the same name earlier on Jupyter's path, for another Python, is an error.
        shadow = tmp_path / "kernels" / name
        shadow.mkdir(parents=True)
        (shadow / "kernel.json").write_text(json.dumps(
            {"argv": ["/opt/other/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
             "display_name": "other", "language": "python"}))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
        with pytest.raises(RuntimeError, match="/opt/other/python"):
            wrun.ensure_kernel(name)
    finally:
        shutil.rmtree(installed, ignore_errors=True)


def test_a_kernel_that_cannot_start_still_gives_reports(tmp_path):
    res = wrun.run(wrun.RunOptions(profile=PROFILE, notebooks_dir=NOTEBOOKS, output_dir=tmp_path,
                                   kernel="no-such-kernel-for-unirepclip", progress=False,
                                   quiet=True))
    assert not res.ok
    assert [r.status for r in res.notebooks] == ["failed", "failed"]
    assert all("NoSuchKernel" in r.error for r in res.notebooks)
    for r in res.notebooks:
        page = (res.output_dir / r.html).read_text()
        assert "This notebook did not run" in page and 'id="papermill-error-cell"' in page
    assert res.index.is_file() and json.loads((res.output_dir / "results.json").read_text()) == {}


class _RecordingEngine:
    """An engine (open/execute/close) that runs no kernel: it writes what a notebook would (its
    results file and executed copy) from the parameters it is given, so the runner is tested
    without papermill."""

    def __init__(self):
        self.calls = []
        self.opened = self.closed = 0

    def open(self):
        self.opened += 1
        return self

    def close(self):
        self.closed += 1

    def execute(self, nb, params, out_ipynb):
        from unirepclip.workbook.results import Recorder
        self.calls.append((nb.name, dict(params)))
        if nb.name == "02_fail":
            nbformat.write(new_notebook(cells=[new_code_cell("raise ValueError")]), str(out_ipynb))
            return "ValueError: on purpose (cell In [1])"
        with Recorder(params["output_dir"], params["results_path"]) as rec:
            rec.record("toy", {"seed": params.get("seed"), "label": params.get("label")})
        nbformat.write(new_notebook(cells=[new_code_cell("1")]), str(out_ipynb))
        return None


def test_an_injected_engine_runs_the_plan(tmp_path):
    engine = _RecordingEngine()
    res = wrun.run(wrun.RunOptions(profile=PROFILE, notebooks_dir=NOTEBOOKS, output_dir=tmp_path,
                                   overrides=("label=square",), quiet=True, engine=engine))
    assert engine.opened == engine.closed == 1
    assert [name for name, _ in engine.calls] == ["01_record", "02_fail"]
    params = dict(engine.calls)["01_record"]
    assert params["label"] == "square" and params["seed"] == 1
    assert params["output_dir"].endswith("/.partial/01_record")  # staged, then moved
    assert [r.status for r in res.notebooks] == ["ok", "failed"] and not res.ok
    assert res.results == {"toy": {"seed": 1, "label": "square"}}
    assert (res.output_dir / "01_record.html").is_file()
    m = json.loads((res.output_dir / "manifest.json").read_text())
    assert m["status"] == "failed" and m["notebooks"][1]["error"].startswith("ValueError")


def test_a_signal_inside_ast_is_sent_again_instead_of_cutting_the_parse(monkeypatch):
    """CPython 3.11's AST converter is left broken for the whole process when an exception cuts
    ast.parse short; the guard re-sends such a signal 50 ms later instead of raising there."""
    import ast
    import signal
    import sys
    import threading

    from unirepclip.workbook.run import signals

    sent = []
    monkeypatch.setattr(threading, "Timer", lambda delay, fn, args: types.SimpleNamespace(
        start=lambda: sent.append((delay, args[1]))))
    guard = signals.SignalGuard()
    seen = {}

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node):  # called from ast.py's frames
            frame = sys._getframe()
            seen["in_ast"] = signals._in_ast(frame)
            guard._stop(signal.SIGTERM, frame)  # returns: deferred

    Visitor().visit(ast.parse("x"))
    assert seen["in_ast"] and sent == [(0.05, signal.SIGTERM)]
    assert not signals._in_ast(sys._getframe())
    with pytest.raises(signals.RunInterrupted, match="SIGTERM"):
        guard._stop(signal.SIGTERM, sys._getframe())  # anywhere else: the run stops there
