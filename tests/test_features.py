"""Tests for unirepclip.features: extraction, pre-projection features, the cache."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import unirepclip
from unirepclip.data import ImageFolderDataset, SyntheticShapes
from unirepclip.features import (
    FeatureCache,
    extract_image_features,
    extract_text_features,
    image_feature_key,
    model_identity,
    text_feature_key,
)


class _Trunk(nn.Module):
    """Pools, norms, then ``head``: the same contract as the UniRepLKNet trunk."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 4)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, x, pre_logits=False):
        x = self.norm(x.mean((-2, -1)))
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class TinyCLIP(nn.Module):
    """A few-parameter CLIP stand-in that counts its image forwards and can fail on demand."""

    def __init__(self, fail_at_call=None):
        super().__init__()
        self.visual = nn.Module()
        self.visual.trunk = _Trunk()
        self.visual.image_size = (16, 16)
        self.token_embedding = nn.Embedding(50, 4)
        self.calls = 0
        self.fail_at_call = fail_at_call

    def encode_image(self, x, normalize=False):
        self.calls += 1
        if self.fail_at_call is not None and self.calls >= self.fail_at_call:
            raise KeyboardInterrupt("simulated interrupt")
        f = self.visual.trunk(x)
        return nn.functional.normalize(f, dim=-1) if normalize else f

    def encode_text(self, tokens, normalize=False):
        f = self.token_embedding(tokens).mean(1)
        return nn.functional.normalize(f, dim=-1) if normalize else f


def _to_tensor(im):
    return torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)


def _tok(texts):
    return torch.tensor([[len(t) % 50, (len(t) * 7) % 50, 3] for t in texts])


@pytest.fixture
def shapes16():
    return SyntheticShapes(split="val", n=20, image_size=16, seed=0, target="shape",
                           transform=_to_tensor)


def _files(root):
    return sorted(p for p in os.listdir(root)) if os.path.isdir(root) else []


def test_second_run_reads_the_cache_without_recomputing(tmp_path, shapes16):
    model, cache = TinyCLIP(), FeatureCache(tmp_path / "cache")
    a = extract_image_features(model, shapes16, batch_size=8, cache=cache, progress=False)
    assert model.calls == 3 and not a.from_cache
    b = extract_image_features(model, shapes16, batch_size=8, cache=cache, progress=False)
    assert model.calls == 3 and b.from_cache and cache.hits == 1
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.pre_projection, b.pre_projection)
    np.testing.assert_array_equal(b.labels, shapes16.samples.shape)
    assert b.key == a.key and len(_files(cache.root)) == 2
    # normalisation is applied on read, so it is not part of the key
    c = extract_image_features(model, shapes16, cache=cache, normalize=False, progress=False)
    assert c.from_cache and model.calls == 3
    np.testing.assert_allclose(np.linalg.norm(a.embeddings, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(c.embeddings / np.linalg.norm(c.embeddings, axis=1, keepdims=True),
                               a.embeddings, rtol=1e-5, atol=1e-6)


def test_text_cache_round_trip(tmp_path):
    model, cache = TinyCLIP(), FeatureCache(tmp_path)
    texts = ["a red star", "a blue ring", "a picture of a green cross"]
    a = extract_text_features(model, _tok, texts, batch_size=2, cache=cache, progress=False)
    b = extract_text_features(model, _tok, texts, batch_size=2, cache=cache, progress=False)
    assert not a.from_cache and b.from_cache
    expected = model.encode_text(_tok(texts), normalize=True).detach().numpy()
    np.testing.assert_allclose(b.embeddings, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b.indices, [0, 1, 2])


def test_cache_key_changes_when_any_input_changes(tmp_path, shapes16):
    model = TinyCLIP()

    def key(m=model, ds=shapes16, tf=None, precision="fp32", device="cpu"):
        return image_feature_key(m, ds, tf, precision=precision, device=device)[0]

    base = key()
    assert key() == base  # stable
    changed = {}
    other = TinyCLIP()
    other.load_state_dict(model.state_dict())
    assert key(m=other) == base  # same weights, same key
    with torch.no_grad():
        other.visual.trunk.head.bias[0] += 1e-3
    changed["weights"] = key(m=other)
    bigger = TinyCLIP()
    bigger.load_state_dict(model.state_dict())
    bigger.visual.image_size = (32, 32)
    changed["image size"] = key(m=bigger)
    named = TinyCLIP()
    named.load_state_dict(model.state_dict())
    named.unirepclip_name = "UniRepLKNet-Demo"
    changed["config"] = key(m=named)
    named2 = TinyCLIP()
    named2.load_state_dict(model.state_dict())
    named2.unirepclip_name = "UniRepLKNet-Demo-SmallKernel"
    changed["config 2"] = key(m=named2)
    changed["preprocessing"] = key(tf=lambda im: im)
    changed["precision"] = key(precision="bf16")
    changed["device"] = key(device="cuda")
    for name, kw in (("seed", dict(seed=1)), ("split", dict(split="test")), ("n", dict(n=21)),
                     ("image_size", dict(image_size=20)), ("scale", dict(object_scale=(0.3, 0.4)))):
        ds = SyntheticShapes(**{**dict(split="val", n=20, image_size=16, seed=0,
                                       transform=_to_tensor), **kw})
        changed[f"dataset {name}"] = key(ds=ds)
    keys = list(changed.values())
    assert base not in keys, [k for k, v in changed.items() if v == base]
    assert len(set(keys)) == len(keys)
    # text keys: kind, texts, tokenizer
    t0, _ = text_feature_key(model, _tok, ["a", "b"], precision="fp32", device="cpu")
    t1, _ = text_feature_key(model, _tok, ["a", "c"], precision="fp32", device="cpu")
    t2, _ = text_feature_key(model, unirepclip.get_tokenizer("UniRepLKNet-Demo"), ["a", "b"],
                             precision="fp32", device="cpu")
    assert len({t0, t1, t2, base}) == 4


def test_checkpoint_sha256_enters_the_key(tmp_path):
    from safetensors.torch import save_file

    model = unirepclip.create_model("UniRepLKNet-Demo")
    path = tmp_path / "demo.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = unirepclip.create_model("UniRepLKNet-Demo", pretrained=str(path))
    ident = model_identity(loaded)
    from unirepclip.utils import file_sha256
    assert ident["checkpoint_sha256"] == file_sha256(path)
    assert "weights_sha256" not in ident  # a complete load is keyed by the file
    assert ident["config"]["embed_dim"] == 64
    assert "weights_sha256" in model_identity(model)  # random weights are hashed instead


def test_corrupted_cache_entry_is_detected_and_rebuilt(tmp_path, shapes16):
    model, cache = TinyCLIP(), FeatureCache(tmp_path)
    a = extract_image_features(model, shapes16, cache=cache, progress=False)
    data_path, meta_path = cache.paths(a.key)
    raw = bytearray(data_path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the payload
    data_path.write_bytes(bytes(raw))
    calls = model.calls
    b = extract_image_features(model, shapes16, cache=cache, progress=False)
    assert not b.from_cache and model.calls > calls and cache.rebuilt == 1
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert extract_image_features(model, shapes16, cache=cache, progress=False).from_cache
    # a damaged metadata file and a lost payload are rebuilt too
    meta_path.write_text("{ not json")
    assert not extract_image_features(model, shapes16, cache=cache, progress=False).from_cache
    data_path.unlink()
    assert not extract_image_features(model, shapes16, cache=cache, progress=False).from_cache
    assert cache.rebuilt == 3
    assert json.loads(meta_path.read_text())["payload_sha256"]


def test_interrupted_extraction_leaves_no_file(tmp_path, shapes16, monkeypatch):
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(KeyboardInterrupt):
        extract_image_features(TinyCLIP(fail_at_call=2), shapes16, batch_size=8, cache=cache,
                               progress=False)
    assert _files(cache.root) == []
    # an interrupt while the payload is being written leaves neither it nor a temp file
    real_savez = np.savez

    def savez_then_die(f, **arrays):
        real_savez(f, **arrays)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        extract_image_features(TinyCLIP(), shapes16, cache=cache, progress=False)
    assert _files(cache.root) == []
    monkeypatch.setattr(np, "savez", real_savez)
    ok = extract_image_features(TinyCLIP(), shapes16, cache=cache, progress=False)
    assert sorted(_files(cache.root)) == sorted([f"{ok.key}.json", f"{ok.key}.npz"])


def _write_folder(root, n_per_class=3, size=16):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png")


def test_corrupt_image_in_folder_is_reported_and_the_run_goes_on(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG but not really")
    ds = ImageFolderDataset(tmp_path, transform=_to_tensor, verify=False)
    assert len(ds) == 7
    f = extract_image_features(TinyCLIP(), ds, batch_size=4, progress=False)
    assert len(f) == 6 and len(f.skipped) == 1
    assert f.skipped[0][0].endswith("broken.png") and "UnidentifiedImageError" in f.skipped[0][1]
    bad = [i for i, (p, _) in enumerate(ds.samples) if p.endswith("broken.png")][0]
    assert bad not in f.indices and sorted(f.indices.tolist() + [bad]) == list(range(7))
    np.testing.assert_array_equal(f.labels, [ds.samples[i][1] for i in f.indices])
    # the scan-time check reports it the same way
    ds2 = ImageFolderDataset(tmp_path, transform=_to_tensor)
    f2 = extract_image_features(TinyCLIP(), ds2, batch_size=4, progress=False)
    assert len(f2) == 6 and [p for p, _ in f2.skipped] == [f.skipped[0][0]]


def test_demo_model_pre_projection_is_the_trunk_pre_logits():
    # 32 px keeps the random-weight demo tower fast on CPU
    model, _, preprocess = unirepclip.create_model_and_transforms("UniRepLKNet-Demo",
                                                                  force_image_size=32)
    ds = SyntheticShapes(split="test", n=3, image_size=32, seed=0)  # PIL: default preprocess
    f = extract_image_features(model, ds, batch_size=2, progress=False)
    x = torch.stack([preprocess(ds[i][0]) for i in range(len(ds))])
    with torch.no_grad():
        trunk = model.visual.trunk
        pre = trunk.forward_head(trunk.forward_features(x), pre_logits=True)
        emb = model.encode_image(x, normalize=True)
    torch.testing.assert_close(torch.from_numpy(f.pre_projection), pre, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(f.embeddings), emb, rtol=1e-4, atol=1e-5)
    assert f.pre_projection.shape == (3, trunk.num_features)


def test_bf16_autocast_runs_on_cpu_and_stays_close(shapes16):
    model = TinyCLIP()
    f = extract_image_features(model, shapes16, progress=False)
    g = extract_image_features(model, shapes16, precision="bf16", progress=False)
    assert not np.array_equal(f.embeddings, g.embeddings)  # autocast really took effect
    assert (g.embeddings * f.embeddings).sum(1).min() > 0.99
    assert g.key != f.key and g.embeddings.dtype == np.float32


def test_demo_model_text_pre_projection_projects_to_the_embedding():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    tok = unirepclip.get_tokenizer("UniRepLKNet-Demo")
    texts = ["a picture of a red star", "a rendering of an orange ring", "a heart"]
    f = extract_text_features(model, tok, texts, batch_size=2, progress=False)
    with torch.no_grad():
        emb = model.encode_text(tok(texts))
    pre = torch.from_numpy(f.pre_projection)
    torch.testing.assert_close(pre @ model.text_projection.detach(), emb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(f.embeddings),
                               nn.functional.normalize(emb, dim=-1), rtol=1e-4, atol=1e-5)


def test_workers_give_the_same_features(shapes16):
    model = TinyCLIP()
    a = extract_image_features(model, shapes16, batch_size=6, progress=False)
    b = extract_image_features(model, shapes16, batch_size=6, num_workers=2, progress=False)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.indices, np.arange(20))


def test_bad_arguments_are_named(shapes16):
    with pytest.raises(ValueError, match="precision"):
        extract_image_features(TinyCLIP(), shapes16, precision="fp8", progress=False)
    with pytest.raises(ValueError, match="texts is empty"):
        extract_text_features(TinyCLIP(), _tok, [], progress=False)
    arrays = [(np.zeros((3, 16, 16), np.float32), 0)] * 3  # neither PIL nor tensor
    with pytest.raises(TypeError, match="transform"):
        extract_image_features(TinyCLIP(), arrays, progress=False)
