"""Checkpoint layouts, formats and failures: every file either loads exactly or says why not."""
import dataclasses
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import unirepclip
from unirepclip.models import loading as C
from unirepclip.models.factory import build_model, get_model_config
from helpers import randomize_reparam_state

NAME = "UniRepLKNet-Demo"


def _randomize(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    randomize_reparam_state(model, g)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "head" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = _randomize(build_model(get_model_config(NAME)))
    tok = unirepclip.get_tokenizer(NAME)
    images = torch.randn(3, 3, 64, 64)
    texts = tok(["a red star", "a blue ring on a noisy background"])
    with torch.no_grad():
        img = model.encode_image(images)
        txt = model.encode_text(texts)
    return model, images, texts, img, txt


def _same(a, b, rtol: float = 1e-6) -> bool:
    """The same embeddings up to float32 rounding, relative to their magnitude (about 10 here:
    one float32 step is 1e-6). Not bit-identical: a safetensors file stores contiguous tensors,
    so the loaded weights' strides (and the kernels torch picks) may differ from the in-memory
    model's; and a different thread count sums in another order (conftest pins it per test).
    A weight that loaded wrong moves the embeddings by orders of magnitude more."""
    return a.shape == b.shape and bool((a - b).abs().max() <= rtol * b.abs().max())


def _embed(model, images, texts):
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(texts)


def _save(sd, path):
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


def _open_clip_linear(sd):
    """The same weights in the timm_proj='linear' layout (projection without bias)."""
    sd = dict(sd)
    sd["visual.head.proj.weight"] = sd.pop("visual.trunk.head.weight")
    del sd["visual.trunk.head.bias"]
    return sd


@pytest.mark.parametrize("fmt,wrap", [
    (".safetensors", "none"), (".safetensors", "module_prefix"),
    *[(f, w) for f in (".pt", ".bin") for w in ("none", "state_dict", "model", "ema",
                                                 "module_prefix")],
])
def test_open_clip_layout_roundtrip(tmp_path, reference, fmt, wrap):
    model, images, texts, img, txt = reference
    sd = model.state_dict()
    if wrap == "module_prefix":
        sd = {"module." + k: v for k, v in sd.items()}
    obj = sd if wrap in ("none", "module_prefix") else {wrap: sd, "epoch": 3}
    path = tmp_path / f"ckpt{fmt}"
    if fmt == ".safetensors":  # a flat dict by design
        _save(sd, path)
    else:
        torch.save(obj, path)
    loaded = unirepclip.create_model(NAME, pretrained=str(path))
    i2, t2 = _embed(loaded, images, texts)
    assert _same(i2, img) and _same(t2, txt)
    assert loaded.load_report.layout == "open_clip" and loaded.load_report.ok


def test_unwrap_takes_any_wrapper_and_every_ddp_compile_prefix():
    t = torch.arange(3.0)
    for obj in ({"state_dict": {"module._orig_mod.a.w": t, "step": 7}},
                {"model_ema": {"_orig_mod.module.a.w": t}}, {"params": {"module.a.w": t}},
                {"whatever": {"a.w": t}, "epoch": 3}):  # the one entry that holds tensors
        sd, notes = C.unwrap_state_dict(obj)
        assert list(sd) == ["a.w"] and sd["a.w"] is t, obj
        assert notes[0].startswith("unwrapped")
    assert C.unwrap_state_dict({"a.w": t, "step": 7})[1] == ["ignored 1 non-tensor entries"]
    with pytest.raises(C.CheckpointError, match="holds no tensors"):
        C.unwrap_state_dict({"epoch": 3})


def test_linear_projection_file_loads_into_canonical_form(tmp_path, reference):
    model, images, texts, img, txt = reference
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        sd["visual.trunk.head.bias"].zero_()  # a bias-free projection, as timm_proj='linear' stores
    ref = build_model(get_model_config(NAME))
    ref.load_state_dict(sd)
    ref.eval()
    i_ref, t_ref = _embed(ref, images, texts)
    path = _save(_open_clip_linear(sd), tmp_path / "linear.safetensors")
    loaded = unirepclip.create_model(NAME, pretrained=str(path))
    assert loaded.load_report.projection == "linear"
    i2, t2 = _embed(loaded, images, texts)
    assert _same(i2, i_ref) and _same(t2, t_ref)
    torch.testing.assert_close(loaded.visual.trunk.head.bias, torch.zeros(64))


@pytest.mark.parametrize("prefix", ["", "visual.trunk.", "module."])
def test_tower_alone_with_clip_projection(tmp_path, reference, prefix):
    model, images, texts, img, _ = reference
    tower = {prefix + k: v for k, v in model.visual.trunk.state_dict().items()}
    path = _save(tower, tmp_path / "tower.pt")
    loaded = unirepclip.create_model(NAME, pretrained=str(path))
    assert loaded.load_report.layout == "tower"
    assert loaded.has_trained_text_tower is False
    with torch.no_grad():
        i2 = loaded.encode_image(images)
    assert _same(i2, img)
    with pytest.raises(RuntimeError, match="no trained text tower"):
        loaded.encode_text(texts)


def test_tower_with_imagenet_classifier_drops_it_with_a_note(tmp_path, reference):
    model, images, *_ = reference
    tower = dict(model.visual.trunk.state_dict())
    tower["head.weight"] = torch.randn(1000, 192)
    tower["head.bias"] = torch.randn(1000)
    loaded = unirepclip.create_model(NAME, pretrained=str(_save(tower, tmp_path / "cls.pt")))
    assert loaded.load_report.projection == "classifier"
    assert any("1000-wide head" in n for n in loaded.load_report.notes)
    with torch.no_grad():  # the tower's features match exactly
        ref = model.visual.trunk.forward_features(images)
        got = loaded.visual.trunk.forward_features(images)
    assert _same(ref, got)


def test_tower_is_strict_on_its_own_keys(tmp_path, reference):
    model, *_ = reference
    tower = dict(model.visual.trunk.state_dict())
    del tower["stages.1.0.dwconv.dil_conv_k5_1.weight"]
    with pytest.raises(C.CheckpointMismatchError, match="dil_conv_k5_1"):
        unirepclip.create_model(NAME, pretrained=str(_save(tower, tmp_path / "t.pt")))


def test_inference_form_file(tmp_path, reference):
    model, images, texts, img, txt = reference
    deployed = build_model(get_model_config(NAME))
    deployed.load_state_dict(model.state_dict())
    deployed.visual.trunk.reparameterize()
    path = _save(deployed.state_dict(), tmp_path / "deploy.safetensors")
    loaded = unirepclip.create_model(NAME, pretrained=str(path))
    assert loaded.load_report.form == "inference"
    i2, t2 = _embed(loaded, images, texts)
    assert ((i2 - img).abs().max() / img.abs().max()) <= 1e-5
    assert (t2 - txt).abs().max() <= 1e-6
    # a tower-only file in the inference form too
    tower = {"visual.trunk." + k: v for k, v in deployed.visual.trunk.state_dict().items()}
    loaded = unirepclip.create_model(NAME, pretrained=str(_save(tower, tmp_path / "dt.pt")))
    with torch.no_grad():
        i3 = loaded.encode_image(images)
    assert ((i3 - img).abs().max() / img.abs().max()) <= 1e-5


def test_deploy_flag_reparameterizes_a_training_form_file(tmp_path, reference):
    model, images, texts, img, _ = reference
    path = _save(model.state_dict(), tmp_path / "m.safetensors")
    loaded = unirepclip.create_model(NAME, pretrained=str(path), deploy=True)
    assert not any("dil_conv" in k for k in loaded.state_dict())
    with torch.no_grad():
        assert ((loaded.encode_image(images) - img).abs().max() / img.abs().max()) <= 1e-5


def test_fp16_file_loads_into_fp32(tmp_path, reference):
    model, images, *_ = reference
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    loaded = unirepclip.create_model(NAME, pretrained=str(_save(sd, tmp_path / "h.safetensors")))
    assert next(loaded.parameters()).dtype == torch.float32


def test_hf_hub_offline_from_a_cache_the_test_fills(tmp_path, reference, monkeypatch):
    model, images, texts, img, txt = reference
    repo = tmp_path / "hub" / "models--someone--clip-unireplknet-demo"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    _save(model.state_dict(), snap / "open_clip_model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in ("hf-hub:someone/clip-unireplknet-demo",
                 "hf-hub:someone/clip-unireplknet-demo/open_clip_model.safetensors"):
        loaded = unirepclip.create_model(NAME, pretrained=spec)
        i2, t2 = _embed(loaded, images, texts)
        assert _same(i2, img)
    with pytest.raises(C.CheckpointError, match="not in the Hugging Face cache.*offline "
                                                "\\(HF_HUB_OFFLINE=1\\)"):
        unirepclip.create_model(NAME, pretrained="hf-hub:someone/absent")


# --- bad input ------------------------------------------------------------------------------

def test_truncated_and_corrupt_files_name_the_file(tmp_path, reference):
    model, *_ = reference
    good_st = _save(model.state_dict(), tmp_path / "good.safetensors")
    good_pt = _save(model.state_dict(), tmp_path / "good.pt")
    for good in (good_st, good_pt):
        data = good.read_bytes()
        bad = tmp_path / ("trunc_" + good.name)
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(C.CheckpointError, match=f"{bad.name}.*(truncated|corrupt)"):
            unirepclip.create_model(NAME, pretrained=str(bad))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(C.CheckpointError, match="junk.pt"):
        unirepclip.create_model(NAME, pretrained=str(junk))


def test_empty_file_directory_and_missing_file(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(C.CheckpointError, match="empty.pt is empty"):
        unirepclip.create_model(NAME, pretrained=str(empty))
    with pytest.raises(C.CheckpointError, match="is a directory"):
        unirepclip.create_model(NAME, pretrained=str(tmp_path))
    with pytest.raises(C.CheckpointError, match="does not exist"):
        unirepclip.create_model(NAME, pretrained=str(tmp_path / "nope.pt"))


def test_other_architecture_says_so(tmp_path):
    import open_clip
    vit = open_clip.create_model("ViT-B-32")  # random weights; nothing is downloaded
    sd = {k: v for k, v in vit.state_dict().items()}
    path = _save(sd, tmp_path / "vit.safetensors")
    with pytest.raises(C.CheckpointError, match="open_clip ViT.*visual"):
        unirepclip.create_model(NAME, pretrained=str(path))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARK']}",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(C.CheckpointError, match="evil.pt was refused"):
        unirepclip.create_model(NAME, pretrained=str(path))
    assert not mark.exists()
    legacy = tmp_path / "evil_legacy.pkl"
    legacy.write_bytes(pickle.dumps({"x": _Evil()}, protocol=2))
    with pytest.raises(C.CheckpointError, match="evil_legacy.pkl"):
        unirepclip.create_model(NAME, pretrained=str(legacy))
    assert not mark.exists()


def test_mismatched_shapes_listed_and_strict_false_returns_report(tmp_path, reference, caplog):
    model, images, *_ = reference
    sd = dict(model.state_dict())
    sd["token_embedding.weight"] = torch.zeros(100, 64)
    sd["unexpected.thing"] = torch.zeros(2)
    path = _save(sd, tmp_path / "m.safetensors")
    with pytest.raises(C.CheckpointMismatchError) as e:
        unirepclip.create_model(NAME, pretrained=str(path))
    msg = str(e.value)
    assert "token_embedding.weight file (100, 64) vs model (49408, 64)" in msg
    assert "unexpected (1): ['unexpected.thing']" in msg
    assert msg.endswith("\n(pass strict=False to load what matches)")
    with caplog.at_level("WARNING", logger="unirepclip"):
        loaded = unirepclip.create_model(NAME, pretrained=str(path), strict=False)
    [warned] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == msg.rsplit("\n(pass strict=False", 1)[0]  # the same report, said once
    rep = loaded.load_report
    assert not rep.ok and rep.unexpected == ["unexpected.thing"]
    assert rep.mismatched[0][0] == "token_embedding.weight"
    with torch.no_grad():  # everything that matched did load
        assert _same(loaded.encode_image(images), reference[3])


@pytest.mark.parametrize("cfg,needle", [
    ({"vision_cfg": {"timm_model_name": "unireplknet_a", "image_size": 64},
      "text_cfg": {"context_length": 8, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}},
     "missing field 'embed_dim'"),
    ({"embed_dim": 8, "vision_cfg": {"timm_model_name": "unireplknet_a"},
      "text_cfg": {"context_length": 8, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}},
     "missing field 'vision_cfg.image_size'"),
    # another tower is open_clip's to build (tests/test_openclip_models.py), if timm knows it
    ({"embed_dim": 8, "vision_cfg": {"timm_model_name": "no_such_tower", "image_size": 64},
      "text_cfg": {"context_length": 8, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}},
     "field 'vision_cfg.timm_model_name' names a tower timm does not know: 'no_such_tower'"),
    ({"vision_cfg": {"timm_model_name": "convnext_tiny", "image_size": 64},
      "text_cfg": {"context_length": 8, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}},
     "missing field 'embed_dim'"),
])
def test_bad_config_json_names_the_field(tmp_path, cfg, needle):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=needle):
        unirepclip.create_model(str(path))


def test_config_json_path_builds_any_variant(tmp_path):
    cfg = get_model_config(NAME)
    cfg["vision_cfg"]["timm_model_name"] = "unireplknet_a"
    path = tmp_path / "a.json"
    path.write_text(json.dumps(cfg))
    model = unirepclip.create_model(str(path))
    assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 64)


def test_inspect_checkpoint(tmp_path, reference):
    model, *_ = reference
    path = _save(model.state_dict(), tmp_path / "m.safetensors")
    rep = unirepclip.inspect_checkpoint(path)
    assert rep.layout == "open_clip" and rep.form == "training"
    assert NAME in rep.matching_configs and "CLIP-UniRepLKNet-L" not in rep.matching_configs
    assert rep.n_params == sum(v.numel() for v in model.state_dict().values())
    assert rep.params_by_part["image projection"] == 192 * 64 + 64
    import hashlib
    assert rep.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads(rep.to_json())["layout"] == "open_clip"
    assert "sha256" in str(rep)


def test_full_size_model_shapes():
    with torch.device("meta"):
        model = build_model(get_model_config("CLIP-UniRepLKNet-L"), meta=True)
    tower = sum(p.numel() for n, p in model.visual.trunk.named_parameters()
                if not n.startswith("head."))
    text = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("visual."))
    assert round(tower / 1e6, 1) == 218.5
    assert round(text / 1e6, 1) == 354.0


@pytest.mark.slow
def test_full_size_encode_image_at_224_and_320():
    model = unirepclip.create_model("CLIP-UniRepLKNet-L")
    with torch.no_grad():
        for size in (224, 320):
            assert model.encode_image(torch.randn(1, 3, size, size)).shape == (1, 1024)


# --- configs written for the reference tower, damaged and mislabelled files (issue 15) ------

def test_reference_style_config_pools_like_the_reference(tmp_path, reference):
    """timm_pool '' with timm_proj '' (open_clip's ConvNet convention): the reference tower
    average-pools, so a CLIP saved under it has vector embeddings; ours must give the same."""
    from unirepclip.models import unireplknet as U

    model, images, texts, img, txt = reference
    cfg = get_model_config(NAME)
    cfg["vision_cfg"]["timm_pool"] = ""
    assert cfg["vision_cfg"]["timm_proj"] == ""
    path = _save(model.state_dict(), tmp_path / "ref.safetensors")
    loaded = unirepclip.create_model(cfg, pretrained=str(path))
    i2, _ = _embed(loaded, images, texts)
    assert i2.shape == img.shape and _same(i2, img)
    assert any("timm_pool '' with timm_proj ''" in n and "'avg'" in n
               for n in loaded.load_report.notes)
    assert unirepclip.create_model(cfg).encode_image(images).shape == (3, 64)
    for pool in ("max", "abs_attn"):
        cfg["vision_cfg"]["timm_pool"] = pool
        with pytest.raises(ValueError, match=r"vision_cfg\.timm_pool.*vision_cfg\.timm_proj"):
            unirepclip.create_model(cfg)
    # the tower keeps timm's meaning of global_pool="": the head at every position
    assert U.unireplknet_demo(num_classes=5, global_pool="")(images).ndim == 4


def _member_data_offset(path, member):
    """Where ``member``'s bytes start inside the zip (after its local header)."""
    import struct
    import zipfile

    info = zipfile.ZipFile(path).getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _damage(path, member, out, how="zero"):
    import zipfile

    start, size = _member_data_offset(path, member)
    data = bytearray(path.read_bytes())
    n = min(16, size)
    if how == "zero":
        data[start:start + n] = bytes(n)
    else:
        data[start + size // 2] ^= 0x01
    out.write_bytes(bytes(data))
    assert zipfile.ZipFile(out).testzip() == member  # the damage the test means
    return out


def test_damaged_zip_member_is_an_error_naming_file_and_member(tmp_path, reference):
    import zipfile

    model, *_ = reference
    good = _save(model.state_dict(), tmp_path / "good.pt")
    infos = zipfile.ZipFile(good).infolist()
    biggest = max((i for i in infos if "/data/" in i.filename), key=lambda i: i.file_size)
    for how in ("zero", "flip"):
        bad = _damage(good, biggest.filename, tmp_path / f"{how}.pt", how)
        for call in (lambda: unirepclip.create_model(NAME, pretrained=str(bad)),
                     lambda: unirepclip.inspect_checkpoint(bad)):
            with pytest.raises(C.CheckpointError,
                               match=rf"{bad.name} is damaged: zip member '{biggest.filename}'"):
                call()
    # a damaged data.pkl is damage, not "a pickle that could run code"
    pkl = next(i.filename for i in infos if i.filename.endswith("/data.pkl"))
    bad = _damage(good, pkl, tmp_path / "pkl.pt", "flip")
    with pytest.raises(C.CheckpointError, match="is damaged") as e:
        unirepclip.create_model(NAME, pretrained=str(bad))
    assert "could run code" not in str(e.value) and "data.pkl" in str(e.value)


def test_damaged_pickle_told_from_a_refused_global(tmp_path, monkeypatch, reference):
    """Past the CRC check (a legacy pickle has none), what the unpickler says decides: an
    unreadable opcode is damage, a global it does not allow is a refusal."""
    model, *_ = reference
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    data = bytearray(legacy.read_bytes())
    data[data.index(b"\x80\x02", 2)] = 0xFF  # the main pickle's first opcode: not an opcode
    legacy.write_bytes(bytes(data))
    with pytest.raises(C.CheckpointError, match="legacy.pt is damaged") as e:
        C.read_checkpoint(legacy)
    assert "could run code" not in str(e.value)
    monkeypatch.setenv("EVIL_MARK", str(tmp_path / "pwned"))
    evil = tmp_path / "evil.pt"
    torch.save({"payload": _Evil()}, evil)
    with pytest.raises(C.CheckpointError, match=r"was refused.*could run code.*posix\.system"):
        C.read_checkpoint(evil)


def test_nonfinite_weights_reported_by_inspect_and_refused_by_the_loader(tmp_path, reference):
    model, images, *_ = reference
    sd = dict(model.state_dict())
    bad_keys = ["visual.trunk.stages.1.0.pwconv1.1.weight", "ln_final.bias"]
    sd[bad_keys[0]] = sd[bad_keys[0]].clone()
    sd[bad_keys[0]][0, 0] = float("nan")
    sd[bad_keys[1]] = torch.full_like(sd[bad_keys[1]], float("inf"))
    path = _save(sd, tmp_path / "nan.safetensors")
    rep = unirepclip.inspect_checkpoint(path, model=NAME)
    assert sorted(rep.nonfinite) == sorted(bad_keys) and "NON-FINITE" in str(rep)
    assert unirepclip.inspect_checkpoint(_save(model.state_dict(), tmp_path / "ok.pt"),
                                         model=NAME).nonfinite == []
    with pytest.raises(C.CheckpointError, match=r"nan.safetensors: 2 tensor\(s\) hold NaN") as e:
        unirepclip.create_model(NAME, pretrained=str(path))
    assert all(k in str(e.value) for k in bad_keys)
    loaded = unirepclip.create_model(NAME, pretrained=str(path), allow_nonfinite=True)
    assert any("NaN or infinite values (allowed)" in n for n in loaded.load_report.notes)


@pytest.mark.parametrize("payload", ["zip", "legacy"])
def test_torch_file_named_safetensors_is_read_by_content(tmp_path, reference, payload):
    model, images, texts, img, txt = reference
    path = tmp_path / "mislabelled.safetensors"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=payload == "zip")
    rep = unirepclip.inspect_checkpoint(path, model=NAME)
    assert rep.file_format == ("torch-zip" if payload == "zip" else "torch-legacy")
    assert rep.config_checks[NAME] == "matches"
    i2, _ = _embed(unirepclip.create_model(NAME, pretrained=str(path)), images, texts)
    assert _same(i2, img)


def test_fp16_file_is_fused_in_fp32(tmp_path, reference):
    model, images, *_ = reference
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = str(_save(sd, tmp_path / "h.safetensors"))
    training = unirepclip.create_model(NAME, pretrained=path)
    fused = unirepclip.create_model(NAME, pretrained=path, deploy=True)
    assert not training.visual.trunk.deploy and fused.visual.trunk.deploy
    with torch.no_grad():
        a, b = training.encode_image(images), fused.encode_image(images)
    assert ((b - a).abs().max() / a.abs().max()).item() <= 1e-6


def test_hf_hub_without_network_fails_at_once_with_the_way_out(tmp_path, monkeypatch):
    """A closed local port stands in for no network: one connection attempt, no download tries
    (huggingface_hub would retry each of five candidate files with back-off, ~2 minutes)."""
    import socket

    import huggingface_hub

    for var in ("HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    attempts, downloads = [], []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        attempts.append(address)
        return real_connect(address, *args, **kwargs)

    def download(*args, **kwargs):
        downloads.append(args)
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(C.CheckpointError) as e:
        unirepclip.create_model(NAME, pretrained="hf-hub:someone/clip-unireplknet-demo")
    assert attempts == [("127.0.0.1", 9)] and downloads == []
    msg = str(e.value)
    assert "cannot be reached" in msg and "local checkpoint file" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "HF_HUB_CACHE" in msg


# ----------------------------------------------------------------------------------------------
# The shipped demo checkpoints: "demo" means the weights whose sha256 is recorded beside them
# ----------------------------------------------------------------------------------------------

def _sha(path) -> str:
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def tampered_demo(tmp_path, monkeypatch):
    """The package's weights folder copied, the demo CLIP's largest tensor zeroed in a valid
    safetensors file (no CRC or format check sees it: it loads, and scores at chance), and the
    copy put where ``checkpoint="demo"`` looks."""
    import shutil

    from safetensors import safe_open
    from unirepclip.models import pretrained

    weights = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, weights)
    path = weights / pretrained.checkpoint_name(NAME)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    largest = max(sd, key=lambda k: sd[k].numel())
    sd[largest] = torch.zeros_like(sd[largest])
    save_file(sd, str(path), metadata=metadata)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    return path


def test_demo_resolves_to_the_file_whose_sha256_is_recorded():
    from unirepclip.models import pretrained

    for model in pretrained.demo_model_names():
        path = pretrained.resolve_checkpoint("demo", model)
        recorded = json.loads(open(path[:-len(".safetensors")] + ".json").read())["sha256"]
        assert _sha(path) == recorded == pretrained.demo_sha256(model)


def test_a_modified_demo_checkpoint_is_refused_naming_the_file_and_both_digests(tampered_demo):
    from unirepclip.models import pretrained
    from unirepclip.workbook.session import load

    recorded = json.loads(tampered_demo.with_suffix(".json").read_text())["sha256"]
    for attempt in (lambda: pretrained.resolve_checkpoint("demo", NAME),
                    lambda: load(NAME, "demo")):
        with pytest.raises(ValueError, match="is not the shipped demo checkpoint") as e:
            attempt()
        assert isinstance(e.value, pretrained.ModifiedDemoCheckpointError)
        msg = str(e.value)
        assert str(tampered_demo) in msg and recorded in msg and _sha(tampered_demo) in msg
        assert "\n" not in msg and "train-demo" in msg
    # the control's file is untouched and still resolves; the modified file loads when named
    assert pretrained.resolve_checkpoint("demo", pretrained.CONTROL_MODEL_NAME)
    assert unirepclip.create_model(NAME, pretrained=str(tampered_demo)) is not None


def test_inspect_says_a_modified_demo_is_not_the_shipped_one(tampered_demo, capsys):
    from unirepclip.cli import main

    modified = unirepclip.inspect_checkpoint(tampered_demo)
    assert modified.config_checks[NAME] == "matches"  # the names and shapes are the demo's
    assert modified.demo.startswith("does NOT match the shipped demo checkpoint of " + NAME)
    assert main(["inspect", str(tampered_demo)]) == 0
    out = capsys.readouterr().out
    assert f"demo         does NOT match the shipped demo checkpoint of {NAME}" in out
    assert main(["inspect", "demo", "--json"]) == 0  # "demo" is the shipped file, as it loads
    assert json.loads(capsys.readouterr().out)["demo"].startswith("does NOT match")


def test_inspect_names_the_shipped_demo_and_nothing_else(tmp_path, reference):
    from unirepclip.models import pretrained

    for model in pretrained.demo_model_names():
        shipped = unirepclip.inspect_checkpoint(pretrained.demo_checkpoint_path(model))
        assert shipped.demo == f"the shipped demo checkpoint of {model} (sha256 as recorded)"
    other = unirepclip.inspect_checkpoint(_save(reference[0].state_dict(),
                                                tmp_path / "mine.safetensors"))
    assert other.demo is None and "\ndemo " not in str(other)


def _demo_run_index(model_names):
    """The manifest and index page of a run whose notebooks used ``checkpoint="demo"``."""
    from unirepclip.workbook.report.manifest import RunFacts, build_manifest
    from unirepclip.workbook.report.pages import render_index
    from unirepclip.workbook.run.provenance import NotebookRun, checkpoint_record

    cache = {}
    params = {f"0{i}_nb": {"checkpoint": "demo", "model_name": m, "seed": 0}
              for i, m in enumerate(model_names)}
    runs = [dataclasses.asdict(NotebookRun(nb, "ok", 1.0, parameters=p, model_name=p["model_name"],
                                           seed=0, checkpoint=checkpoint_record(p, cache)))
            for nb, p in params.items()]
    m = build_manifest(RunFacts(profile={"name": "t"}, command=["run"],
                                started="2024-01-01T00:00:00", parameters=params, runs=runs,
                                code={"commit": None, "dirty": None}))
    return m, render_index(m, {})


def test_the_run_records_the_demo_digest():
    """The provenance of a notebook run with ``checkpoint="demo"`` holds the shipped file's
    sha256: the index said "checkpoint demo (sha256 not recorded)" beside notebooks 02-06 and
    the manifest listed the demo again as an "other checkpoint"."""
    from unirepclip.models import pretrained
    from unirepclip.workbook.run.provenance import checkpoint_record

    for model in pretrained.demo_model_names():
        assert checkpoint_record({"checkpoint": "demo", "model_name": model}, {}) == {
            "path": "demo", "sha256": _sha(pretrained.demo_checkpoint_path(model))}
    assert checkpoint_record({"checkpoint": "", "model_name": NAME}, {}) == {
        "path": "", "sha256": None}
    m, page = _demo_run_index([NAME] * 3)
    sha = pretrained.demo_sha256(NAME)
    assert m["checkpoint"] == {"path": "demo", "sha256": sha, "model": NAME}
    assert m["checkpoints"] == [{"path": "demo", "sha256": sha, "model": NAME,
                                 "notebooks": ["00_nb", "01_nb", "02_nb"]}]
    assert "not recorded" not in page and "other checkpoint" not in page and sha in page


def test_the_run_records_a_modified_demo_as_modified(tampered_demo):
    from unirepclip.models import pretrained
    from unirepclip.workbook.run.provenance import checkpoint_record

    record = checkpoint_record({"checkpoint": "demo", "model_name": NAME}, {})
    recorded = pretrained.demo_sha256(NAME)
    assert record["path"] == "demo" and record["sha256"] == _sha(tampered_demo) != recorded
    assert recorded in record["modified"]
    m, page = _demo_run_index([NAME, NAME])
    assert m["checkpoint"]["modified"] == record["modified"]
    assert page.count("MODIFIED") == 3  # the manifest's row and each notebook's note
