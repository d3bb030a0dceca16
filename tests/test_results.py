"""unirepclip.workbook.results: recording nested results, the per-notebook file, headline marks."""
import json

import numpy as np
import pytest
import torch

from unirepclip.workbook import results


def test_record_merges_nested_values_and_dotted_names(tmp_path):
    path = tmp_path / "r" / "02_zeroshot.json"
    rec = results.Recorder(tmp_path, path)
    rec.record("zeroshot", {"acc1": 0.5, "tasks": {"shape": {"acc1": 0.5}}})
    rec.record("zeroshot.tasks.colour.acc1", 0.9)
    rec.record_many({"zeroshot.acc5": 1.0, "retrieval.image_to_text.r1": 0.25})
    rec.record("zeroshot.acc1", 0.75)  # a later leaf replaces the earlier one
    expected = {"zeroshot": {"acc1": 0.75, "acc5": 1.0,
                             "tasks": {"shape": {"acc1": 0.5}, "colour": {"acc1": 0.9}}},
                "retrieval": {"image_to_text": {"r1": 0.25}}}
    assert rec.current() == expected
    doc = json.loads(path.read_text())
    assert doc["format"] == results.FORMAT and doc["results"] == expected
    assert rec.get("zeroshot.tasks.colour.acc1") == 0.9
    assert list(tmp_path.joinpath("r").iterdir()) == [path]  # no temporary files left behind


def test_values_become_plain_json():
    rec = results.Recorder()
    out = rec.record("x", {"f32": np.float32(0.25), "i64": np.int64(3), "arr": np.arange(3),
                               "t": torch.tensor([[1.5, 2.0]]), "tup": (1, 2), "b": np.bool_(True)})
    assert out == {"f32": 0.25, "i64": 3, "arr": [0, 1, 2], "t": [[1.5, 2.0]], "tup": [1, 2],
                   "b": True}
    assert type(out["i64"]) is int and type(out["f32"]) is float
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("bad", [float("nan"), np.float32("inf"), [1.0, float("-inf")]])
def test_non_finite_values_are_refused_with_the_key(bad):
    rec = results.Recorder()
    with pytest.raises(ValueError, match="zeroshot.acc1"):
        rec.record("zeroshot.acc1", bad)
    assert rec.current() == {}


def test_record_many_is_all_or_nothing():
    rec = results.Recorder()
    with pytest.raises(ValueError, match="'b'"):
        rec.record_many({"a": 1, "b": object()})
    assert rec.current() == {}


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a."])
def test_bad_names_are_refused(name):
    rec = results.Recorder()
    with pytest.raises(ValueError, match="result name"):
        rec.record(name, 1)


def test_opening_starts_fresh_and_removes_a_stale_file(tmp_path):
    path = tmp_path / "nb.json"
    rec = results.Recorder(tmp_path, path)
    rec.record("old.key", 1)
    rec = results.Recorder(tmp_path, path)
    assert not path.exists() and rec.current() == {}
    rec.record("new.key", 2)
    assert results.load(path)["results"] == {"new": {"key": 2}}


def test_headline_requires_a_recorded_key_and_a_fitting_format(tmp_path):
    path = tmp_path / "nb.json"
    rec = results.Recorder(tmp_path, path)
    rec.record("zeroshot.acc1", 0.123)
    with pytest.raises(KeyError, match="'acc5'"):
        rec.headline("zeroshot.acc5")
    with pytest.raises(ValueError, match="format"):
        rec.headline("zeroshot.acc1", fmt="d")
    rec.headline("zeroshot.acc1", "top-1", fmt=".1%")
    rec.headline("zeroshot.acc1", "top-1 again", fmt=".2f")  # re-marking replaces
    assert results.load(path)["headline"] == [
        {"key": "zeroshot.acc1", "label": "top-1 again", "fmt": ".2f"}]


def test_parts_that_hold_dots(tmp_path):
    rec = results.Recorder(tmp_path, tmp_path / "nb.json")
    rec.record(("zeroshot", "per_class", "St. Bernard"), 0.8)
    assert rec.current() == {"zeroshot": {"per_class": {"St. Bernard": 0.8}}}
    rec.headline(["zeroshot", "per_class", "St. Bernard"], fmt=".0%")
    assert results.load(tmp_path / "nb.json")["headline"] == [
        {"key": ["zeroshot", "per_class", "St. Bernard"],
         "label": "zeroshot.per_class.St. Bernard", "fmt": ".0%"}]
    with pytest.raises(KeyError, match="'zeroshot.per_class' has no key 'St'"):
        rec.get("zeroshot.per_class.St. Bernard")
    with pytest.raises(ValueError, match="non-empty"):
        rec.record(("a", ""), 1)


def test_in_memory_without_a_path(tmp_path):
    for path in (None, ""):  # the notebooks' parameter default is ""
        rec = results.Recorder(tmp_path, path)
        rec.record("a.b", 1)
        assert rec.get("a.b") == 1 and rec.results_path is None
    assert list(tmp_path.iterdir()) == []


def test_two_recorders_keep_apart(tmp_path):
    # No module state: what one notebook records never shows in another's record or file.
    a = results.Recorder(tmp_path, tmp_path / "a.json")
    b = results.Recorder(tmp_path, tmp_path / "b.json")
    a.record("x", 1)
    b.record("y", 2)
    assert a.current() == {"x": 1} and b.current() == {"y": 2}
    assert results.load(tmp_path / "a.json")["results"] == {"x": 1}
    assert results.load(tmp_path / "b.json")["results"] == {"y": 2}


def test_a_closed_recorder_refuses_more_and_keeps_its_file(tmp_path):
    path = tmp_path / "nb.json"
    with results.Recorder(tmp_path, path) as rec:
        rec.record("a", 1)
        rec.headline("a")
    assert rec.closed and "closed" in repr(rec)
    for call in (lambda: rec.record("b", 2), lambda: rec.record_many({"b": 2}),
                 lambda: rec.headline("a")):
        with pytest.raises(RuntimeError, match="nb.json.*closed"):
            call()
    assert rec.get("a") == 1  # reading what was recorded stays possible
    assert results.load(path) == {"format": results.FORMAT, "results": {"a": 1},
                                  "headline": [{"key": "a", "label": "a", "fmt": None}],
                                  "figures": []} == rec.document()


def test_helpers_get_path_flatten_merge_load(tmp_path):
    data = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": {}}
    assert results.get_path(data, "a.b.c") == 1
    with pytest.raises(KeyError, match="'a.b' has no key 'x'"):
        results.get_path(data, "a.b.x")
    assert results.flatten(data) == {"a.b.c": 1, "a.d": [1, 2], "e": {}}
    base = {"a": {"x": 1, "y": 2}}
    assert results.merge(base, {"a": {"y": 3, "z": 4}}) == {"a": {"x": 1, "y": 3, "z": 4}}
    (tmp_path / "other.json").write_text('{"results": {}}')
    with pytest.raises(ValueError, match="other.json"):
        results.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        results.load(tmp_path / "broken.json")


def _notebook_calls(method: str):
    """``{notebook: [ast.Call, ...]}``: the calls to ``<...>.results.<method>(...)`` in each shipped
    notebook's code cells."""
    import ast
    from pathlib import Path

    import nbformat

    out = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        calls = []
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                f = getattr(node, "func", None)
                if (isinstance(f, ast.Attribute) and f.attr == method
                        and isinstance(f.value, ast.Attribute) and f.value.attr == "results"):
                    calls.append(node)
        out[path.stem] = calls
    return out


def test_every_notebook_puts_a_headline_result_on_the_index():
    """The index's "headline results" cell of notebook 06 read "–"."""
    calls = _notebook_calls("headline")
    assert len(calls) >= 6
    assert [nb for nb, c in calls.items() if not c] == []


def test_every_headline_figure_of_the_notebooks_has_a_caption():
    """Notebook 05's thumbnail on the index was captioned with its file name."""
    def kw(call, name):
        return next((k.value for k in call.keywords if k.arg == name), None)

    saves = _notebook_calls("save_figure")
    assert sum(len(c) for c in saves.values()) >= 6
    missing = [(nb, c.lineno) for nb, calls in saves.items()
               for c in calls if getattr(kw(c, "headline"), "value", False) is True
               and kw(c, "caption") is None]
    assert missing == []
