"""unirepclip.workbook.results: recording nested results, the per-notebook file, headline marks."""
import json

import numpy as np
import pytest
import torch

from unirepclip.workbook import results


@pytest.fixture(autouse=True)
def _fresh():
    results.configure(None)
    yield
    results.configure(None)


def test_record_merges_nested_values_and_dotted_names(tmp_path):
    path = tmp_path / "r" / "02_zeroshot.json"
    results.configure(tmp_path, path)
    results.record("zeroshot", {"acc1": 0.5, "tasks": {"shape": {"acc1": 0.5}}})
    results.record("zeroshot.tasks.colour.acc1", 0.9)
    results.record_many({"zeroshot.acc5": 1.0, "retrieval.image_to_text.r1": 0.25})
    results.record("zeroshot.acc1", 0.75)  # a later leaf replaces the earlier one
    expected = {"zeroshot": {"acc1": 0.75, "acc5": 1.0,
                             "tasks": {"shape": {"acc1": 0.5}, "colour": {"acc1": 0.9}}},
                "retrieval": {"image_to_text": {"r1": 0.25}}}
    assert results.current() == expected
    doc = json.loads(path.read_text())
    assert doc["format"] == results.FORMAT and doc["results"] == expected
    assert results.get("zeroshot.tasks.colour.acc1") == 0.9
    assert list(tmp_path.joinpath("r").iterdir()) == [path]  # no temporary files left behind


def test_values_become_plain_json():
    out = results.record("x", {"f32": np.float32(0.25), "i64": np.int64(3), "arr": np.arange(3),
                               "t": torch.tensor([[1.5, 2.0]]), "tup": (1, 2), "b": np.bool_(True)})
    assert out == {"f32": 0.25, "i64": 3, "arr": [0, 1, 2], "t": [[1.5, 2.0]], "tup": [1, 2],
                   "b": True}
    assert type(out["i64"]) is int and type(out["f32"]) is float
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("bad", [float("nan"), np.float32("inf"), [1.0, float("-inf")]])
def test_non_finite_values_are_refused_with_the_key(bad):
    with pytest.raises(ValueError, match="zeroshot.acc1"):
        results.record("zeroshot.acc1", bad)
    assert results.current() == {}


def test_record_many_is_all_or_nothing():
    with pytest.raises(ValueError, match="'b'"):
        results.record_many({"a": 1, "b": object()})
    assert results.current() == {}


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a."])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="result name"):
        results.record(name, 1)


def test_configure_starts_fresh_and_removes_a_stale_file(tmp_path):
    path = tmp_path / "nb.json"
    results.configure(tmp_path, path)
    results.record("old.key", 1)
    results.configure(tmp_path, path)
    assert not path.exists() and results.current() == {}
    results.record("new.key", 2)
    assert results.load(path)["results"] == {"new": {"key": 2}}


def test_headline_requires_a_recorded_key_and_a_fitting_format(tmp_path):
    path = tmp_path / "nb.json"
    results.configure(tmp_path, path)
    results.record("zeroshot.acc1", 0.123)
    with pytest.raises(KeyError, match="'acc5'"):
        results.headline("zeroshot.acc5")
    with pytest.raises(ValueError, match="format"):
        results.headline("zeroshot.acc1", fmt="d")
    results.headline("zeroshot.acc1", "top-1", fmt=".1%")
    results.headline("zeroshot.acc1", "top-1 again", fmt=".2f")  # re-marking replaces
    assert results.load(path)["headline"] == [
        {"key": "zeroshot.acc1", "label": "top-1 again", "fmt": ".2f"}]


def test_parts_that_hold_dots(tmp_path):
    results.configure(tmp_path, tmp_path / "nb.json")
    results.record(("zeroshot", "per_class", "St. Bernard"), 0.8)
    assert results.current() == {"zeroshot": {"per_class": {"St. Bernard": 0.8}}}
    results.headline(["zeroshot", "per_class", "St. Bernard"], fmt=".0%")
    assert results.load(tmp_path / "nb.json")["headline"] == [
        {"key": ["zeroshot", "per_class", "St. Bernard"],
         "label": "zeroshot.per_class.St. Bernard", "fmt": ".0%"}]
    with pytest.raises(KeyError, match="'zeroshot.per_class' has no key 'St'"):
        results.get("zeroshot.per_class.St. Bernard")
    with pytest.raises(ValueError, match="non-empty"):
        results.record(("a", ""), 1)


def test_in_memory_without_a_path():
    results.record("a.b", 1)
    assert results.get("a.b") == 1 and results.results_path() is None


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
