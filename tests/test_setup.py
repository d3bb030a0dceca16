"""unirepclip.workbook.session (workbook.setup): a notebook's first cell, its recorder, and what the notebooks used to
assemble by hand (keyword dictionaries, the random-tower baseline, the training-form reload)."""
import inspect
from types import SimpleNamespace

import pytest
import torch

import unirepclip
from unirepclip import features
from unirepclip.analysis import erf
from unirepclip.eval import linear_probe, zeroshot
from unirepclip.models import is_inference_form
from unirepclip.utils import set_seed
from unirepclip.workbook import results
from unirepclip.workbook.session import Loaded, load, setup

MODEL = "UniRepLKNet-Demo"


@pytest.fixture(scope="module")
def lm():
    return load(MODEL, "demo", device="cpu", deploy=True, channels_last=True)


def test_setup_opens_a_fresh_recorder_per_call(tmp_path):
    path = tmp_path / "results" / "nb.json"
    path.parent.mkdir()
    path.write_text("stale")
    first = setup(model_name=MODEL, device="cpu", output_dir=str(tmp_path),
                           results_path=str(path))
    assert isinstance(first.results, results.Recorder) and not path.exists()
    assert (first.results.output_dir, first.results.results_path) == (tmp_path, path)
    first.results.record("a", 1)
    assert results.load(path)["results"] == {"a": 1}
    second = setup(model_name=MODEL, device="cpu", output_dir=str(tmp_path),
                            results_path="")
    assert second.results.current() == {} and second.results.results_path is None
    assert first.results.get("a") == 1  # no shared state between the two


def test_compute_kwargs_and_progress_where_the_work_is_long(lm):
    assert lm.compute_kwargs(7) == {"batch_size": 7, "device": torch.device("cpu"),
                                    "precision": "fp32", "progress": False}
    on_gpu = Loaded(lm.model, None, None, None, torch.device("cuda"), "bf16", None, MODEL)
    assert on_gpu.compute_kwargs(3) == {"batch_size": 3, "device": torch.device("cuda"),
                                        "precision": "bf16", "progress": True}
    # Every function the notebooks give them to takes them (ERF through compute_erf).
    inspect.signature(erf.compute_erf).bind(lm.model, torch.zeros(1, 3, 8, 8),
                                            **lm.compute_kwargs(7))


def test_encode_kwargs_share_one_cache_and_the_identity(lm, tmp_path):
    image_kw, text_kw = lm.encode_kwargs(5, num_workers=2, cache_dir=str(tmp_path))
    assert set(image_kw) == {"batch_size", "device", "precision", "progress", "cache",
                             "model_ident", "num_workers"}
    assert set(text_kw) == set(image_kw) - {"num_workers"}
    assert image_kw["num_workers"] == 2 and image_kw["batch_size"] == text_kw["batch_size"] == 5
    assert image_kw["cache"] is text_kw["cache"] and image_kw["cache"].root == tmp_path
    assert image_kw["model_ident"] == features.model_identity(lm.model)
    assert lm.identity is text_kw["model_ident"]  # hashed once
    no_cache, _ = lm.encode_kwargs(5)
    assert no_cache["cache"] is None and no_cache["num_workers"] == 0
    probe_kw, _ = lm.encode_kwargs(5, cache_dir=str(tmp_path), identity=False)
    assert "model_ident" not in probe_kw
    # The functions they go to accept them as they are.
    inspect.signature(features.extract_image_features).bind(lm.model, [], transform=None,
                                                            **image_kw)
    inspect.signature(features.extract_text_features).bind(lm.model, lm.tokenizer, [], **text_kw)
    inspect.signature(zeroshot.resolution_sweep).bind(lm.model, {}, "synthetic", [32],
                                                      n_images=1, **image_kw)
    towers = {"trained": (lm.model, lm.identity)}
    inspect.signature(linear_probe.feature_spaces).bind({}, towers, transform=None, **probe_kw)
    with pytest.raises(TypeError, match="model_ident"):  # why identity=False: towers bring theirs
        linear_probe.feature_spaces({"d": SimpleNamespace(splits={"train": []})}, towers,
                                    **image_kw)


def test_training_form_reloads_only_when_folded(lm):
    assert is_inference_form(lm.model)
    train = lm.training_form()
    assert train is not lm.model and not is_inference_form(train)
    x = torch.randn(2, 3, lm.image_size, lm.image_size)
    with torch.no_grad():  # the fold is exact: both forms compute the same embeddings
        torch.testing.assert_close(train.encode_image(x), lm.model.encode_image(x),
                                   atol=1e-4, rtol=1e-4)
    unfolded = load(MODEL, "demo", device="cpu", deploy=False)
    assert unfolded.training_form() is unfolded.model


def test_random_tower_is_the_seeded_initialization_in_the_models_form(lm):
    tower = lm.random_tower(3)
    torch.manual_seed(123)  # what ran before does not matter
    again = lm.random_tower(3)
    set_seed(3)  # the notebook's former cell, by hand
    by_hand = unirepclip.create_model(MODEL, device=lm.device, deploy=True)
    want = by_hand.state_dict()
    for got in (tower.state_dict(), again.state_dict()):
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    other = lm.random_tower(4).state_dict()
    assert not all(torch.equal(other[k], want[k]) for k in want)
    trained = lm.model.state_dict()
    assert not all(torch.equal(want[k], trained[k]) for k in want if want[k].is_floating_point())
    assert is_inference_form(tower)  # lm was loaded with deploy=True and channels_last=True
    def channels_last(model):
        convs = [p for p in model.visual.parameters() if p.dim() == 4 and p.shape[1] > 1]
        return bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last)
                                   for p in convs)
    assert channels_last(tower) and not channels_last(by_hand)

