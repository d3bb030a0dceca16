"""model_key follows the model (issue 23): a run of another model on a profile whose model_key is
the demo's must not file its figures under "demo". models/params.py says which keys name which
model and what a model's own key is; the resolver (workbook/params/resolve.py) replaces a key
given in a layer below its model's when the key is another known model's own; a key given with
or after the model is kept as given. Checked on the real notebooks and profiles."""
from __future__ import annotations

import pytest

from unirepclip.models.params import MODEL_KEYS, follow_key, key_for
from unirepclip.workbook import params


@pytest.mark.parametrize("name, key", [
    ("ViT-B-32", "vit_b_32"), ("convnext_xxlarge", "convnext_xxlarge"),
    ("local-dir:/models/tiny-vit/", "tiny_vit"), ("hf-hub:org/CLIP-ViT-g-14", "clip_vit_g_14"),
    ("UniRepLKNet-Demo", "demo"), ("ViT-Demo", "demo_vit"),
    ("CLIP-UniRepLKNet-L-320", "clip_unireplknet_l"),
])
def test_a_models_own_key(name, key):
    assert key_for(name) == key


@pytest.mark.parametrize("key, name, want", [
    ("demo", "ViT-B-32", "vit_b_32"),            # the demo's key on another model: follows it
    ("demo", "ViT-Demo", "demo_vit"),            # ... to that model's own key
    ("demo_vit", "UniRepLKNet-Demo", "demo"),
    ("demo", "UniRepLKNet-Demo", "demo"),        # its own model: kept
    ("clip_unireplknet_l", "CLIP-UniRepLKNet-L-320", "clip_unireplknet_l"),   # both sizes
    ("vit", "ViT-B-32", "vit"),                  # a key of the user's own: kept
    ("demo", "/some/where/copy-of-demo.json", "demo"),   # a config file: unknown, kept
    ("demo_small_kernel", "", "demo_small_kernel"),      # no model (no control)
])
def test_follow_key(key, name, want):
    assert follow_key(key, name) == want


def test_every_reserved_key_is_its_models_own():
    for key, owners in MODEL_KEYS.items():
        assert all(key_for(o) == key and follow_key(key, o) == key for o in owners)


@pytest.fixture(scope="module")
def notebooks():
    return params.inspect_notebooks(params.default_notebooks_dir())


def _keys(notebooks, profile, overrides=(), setting=None):
    request = params.Request(list(overrides), setting=setting, check_placeholders=False)
    got = params.resolve_parameters(notebooks, params.load_profile(profile), request)
    return {nb: v.get("model_key") for nb, v in got.items() if "model_key" in
            {p for n in notebooks if n.name == nb for p in n.parameters}}


def test_the_demo_profiles_key_follows_a_model_given_with_p(notebooks):
    assert set(_keys(notebooks, "demo").values()) == {"demo"}
    assert set(_keys(notebooks, "demo", ["model_name=ViT-B-32", "checkpoint=''"]).values()) \
        == {"vit_b_32"}
    given = _keys(notebooks, "demo", ["model_name=ViT-B-32", "checkpoint=''", "model_key=mine"])
    assert set(given.values()) == {"mine"}     # given with the model: as given
    asked = _keys(notebooks, "demo", ["model_name=ViT-B-32", "checkpoint=''", "model_key=demo"])
    assert set(asked.values()) == {"demo"}     # even the demo's key, when asked for with it
    one = _keys(notebooks, "demo", ["03_erf.model_name=ViT-Demo"])
    assert one.pop("03_erf") == "demo_vit" and set(one.values()) == {"demo"}


def test_a_profile_that_sets_both_keeps_its_key(notebooks):
    keys = _keys(notebooks, "imagenet-l", ["model_name=CLIP-UniRepLKNet-L-320"])
    assert set(keys.values()) == {"clip_unireplknet_l"}


def test_a_sweep_setting_of_the_model_alone_gets_its_key(notebooks):
    keys = _keys(notebooks, "demo", setting={"model_name": "UniRepLKNet-Demo-SmallKernel"})
    assert set(keys.values()) == {"demo_small_kernel"}
    keys = _keys(notebooks, "demo", setting={"model_name": "ViT-Demo", "model_key": "x"})
    assert set(keys.values()) == {"x"}
