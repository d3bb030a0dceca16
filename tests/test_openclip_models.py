"""Models by their open_clip names (issue 23): built by open_clip, loaded by the package's loader.

The truth here is open_clip's own: a tiny model saved by ``save_for_hf`` and read back through
``local-dir:`` (and through a filled Hugging Face cache) embeds exactly as the model that was
saved, and as open_clip's own loader reads it; a damaged copy is refused naming the file and
the tensor; the torch-free name lists equal open_clip's; offline, a pretrained tag that is not
in the cache fails at once with the way out. No network: the hub is offline or absent."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import unirepclip
from unirepclip.cli import main
from unirepclip.models import loading as C
from unirepclip.models import openclip_names
from unirepclip.models.factory import create_model, get_tokenizer

REPO = Path(__file__).resolve().parents[1]
# a ViT CLIP small enough for a unit test (open_clip ships no tiny config): 2 blocks of width 32
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                   "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
CAPTIONS = ["a red star", "a blue ring on a noisy background"]


class _NoFilesTokenizer:
    """``save_for_hf`` asks the tokenizer to save its files; open_clip's BPE tokenizer has none
    to save (its vocabulary ships with open_clip), which is what ``get_tokenizer`` reads back."""

    def save_pretrained(self, dest):
        pass


def _embed(model, images, texts):
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(texts)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random ViT CLIP and the folder open_clip's ``save_for_hf`` wrote for it (the
    weights as safetensors and as a torch pickle, ``open_clip_config.json``)."""
    from open_clip.push_to_hf_hub import save_for_hf

    root = tmp_path_factory.mktemp("openclip")
    cfg_path = root / "tiny.json"
    cfg_path.write_text(json.dumps(TINY))
    torch.manual_seed(23)  # not the seed every test starts from: a random build differs
    model = create_model(str(cfg_path))  # random weights
    folder = root / "tiny-saved"
    save_for_hf(model, _NoFilesTokenizer(), TINY, str(folder))
    images = torch.randn(3, 3, 32, 32)
    texts = get_tokenizer(str(cfg_path))(CAPTIONS)
    return model, folder, images, texts, _embed(model, images, texts)


def test_a_config_with_another_tower_is_built_by_open_clip(saved):
    import open_clip.model
    import open_clip.transformer

    model = saved[0]
    assert type(model) is open_clip.model.CLIP
    assert type(model.visual) is open_clip.transformer.VisionTransformer
    assert model.load_report is None


def test_save_for_hf_then_local_dir_embeds_identically(saved, tmp_path):
    import open_clip

    model, folder, images, texts, (img, txt) = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    name = f"local-dir:{folder}"
    loaded = create_model(name)  # a local-dir: model brings its own weights
    rep = loaded.load_report
    assert rep.ok and rep.path == str(folder / "open_clip_model.safetensors")
    assert rep.matched == len(model.state_dict())
    tokens = get_tokenizer(name)(CAPTIONS)
    assert torch.equal(tokens, texts)
    i2, t2 = _embed(loaded, images, tokens)
    assert torch.equal(i2, img) and torch.equal(t2, txt)
    # open_clip's own loader reads the same folder to the same embeddings
    theirs = open_clip.create_model(name).eval()
    i3, t3 = _embed(theirs, images, texts)
    assert torch.equal(i3, img) and torch.equal(t3, txt)
    # the torch pickle alone (no safetensors beside it) loads the same
    only_bin = tmp_path / "only-bin"
    shutil.copytree(folder, only_bin)
    (only_bin / "open_clip_model.safetensors").unlink()
    loaded = create_model(f"local-dir:{only_bin}")
    assert loaded.load_report.path.endswith("open_clip_pytorch_model.bin")
    i4, t4 = _embed(loaded, images, texts)
    assert torch.equal(i4, img) and torch.equal(t4, txt)
    # random weights of the same architecture, whatever the folder holds
    rand = create_model(name, load_weights=False)
    assert rand.load_report is None and not torch.equal(_embed(rand, images, texts)[0], img)


def test_hf_hub_name_from_a_filled_cache_offline(saved, tmp_path, monkeypatch):
    model, folder, images, texts, (img, txt) = saved
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-vit"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = create_model("hf-hub:someone/tiny-vit")
    assert loaded.load_report.ok
    i2, t2 = _embed(loaded, images, get_tokenizer("hf-hub:someone/tiny-vit")(CAPTIONS))
    assert torch.equal(i2, img) and torch.equal(t2, txt)
    with pytest.raises(C.CheckpointError) as e:
        create_model("hf-hub:someone/absent")
    msg = str(e.value)
    assert "open_clip_config.json of someone/absent" in msg and str(tmp_path / "hub") in msg
    assert len(msg.splitlines()) == 1


def test_the_layout_detector_takes_open_clips_own_layouts(saved):
    """A whole open_clip model with another tower is read in its own names, not refused; a
    UniRepLKNet config still refuses it, saying what it looks like."""
    sd = load_file(str(saved[1] / "open_clip_model.safetensors"))
    layout, out = C.detect_layout(sd)
    assert (layout.kind, layout.projection, layout.has_text) == ("open_clip", "native", True)
    assert out.keys() == sd.keys() and layout.head_width == TINY["embed_dim"]
    with pytest.raises(C.CheckpointError, match="open_clip ViT.*give its open_clip model name"):
        create_model("UniRepLKNet-Demo", str(saved[1] / "open_clip_model.safetensors"))


def _one_line_naming(err: Exception, *needles: str) -> str:
    first = str(err).splitlines()[0]
    for needle in needles:
        assert needle in first, first
    return first


def _damaged_copy(folder: Path, dest: Path, keep: str) -> Path:
    shutil.copytree(folder, dest)
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if name != keep:
            (dest / name).unlink()
    return dest / keep


def test_flipped_bytes_in_a_torch_file_are_refused(saved, tmp_path):
    folder = saved[1]
    path = _damaged_copy(folder, tmp_path / "flipped", "open_clip_pytorch_model.bin")
    with zipfile.ZipFile(path) as zf:  # the largest tensor's bytes, inside the archive
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 64, start + 72):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(C.CheckpointError) as e:
        create_model(f"local-dir:{path.parent}")
    _one_line_naming(e.value, str(path), "CRC-32", info.filename)


def test_a_nan_tensor_is_refused_naming_it(saved, tmp_path):
    path = _damaged_copy(saved[1], tmp_path / "nan", "open_clip_model.safetensors")
    sd = load_file(str(path))
    sd["visual.proj"][0, 0] = float("nan")
    save_file(sd, str(path))
    with pytest.raises(C.CheckpointError) as e:
        create_model(f"local-dir:{path.parent}")
    _one_line_naming(e.value, str(path), "'visual.proj'", "NaN")
    loaded = create_model(f"local-dir:{path.parent}", allow_nonfinite=True)
    assert any("NaN" in n for n in loaded.load_report.notes)


def test_a_missing_key_is_refused_naming_it(saved, tmp_path, caplog):
    path = _damaged_copy(saved[1], tmp_path / "missing", "open_clip_model.safetensors")
    sd = load_file(str(path))
    del sd["text_projection"]
    sd["visual.extra"] = torch.zeros(2)
    save_file(sd, str(path))
    with pytest.raises(C.CheckpointMismatchError) as e:
        create_model(f"local-dir:{path.parent}")
    _one_line_naming(e.value, str(path), "1 missing (text_projection)",
                     "1 unexpected (visual.extra)")
    assert str(e.value).endswith("\n(pass strict=False to load what matches)")
    with caplog.at_level("WARNING", logger="unirepclip"):
        loaded = create_model(f"local-dir:{path.parent}", strict=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(e.value).rsplit("\n(pass strict=False", 1)[0] in warned
    assert loaded.load_report.missing == ["text_projection"]
    assert loaded.load_report.unexpected == ["visual.extra"]


def test_the_name_lists_read_without_torch_are_open_clips():
    import open_clip

    ours = set(unirepclip.list_models())
    assert set(openclip_names.openclip_model_names()) == set(open_clip.list_models()) - ours
    models = {m for m, _ in open_clip.list_pretrained()} | {"ViT-B-32", "RN50-quickgelu"}
    for m in models:
        assert openclip_names.pretrained_tags(m) == tuple(
            open_clip.list_pretrained_tags_by_model(m)), m
    assert openclip_names.pretrained_tags("no-such-model") == ()


def test_an_offline_pretrained_tag_fails_at_once_with_the_way_out(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1: no connection is even attempted, no download tried."""
    import socket

    import huggingface_hub

    def never(*args, **kwargs):
        raise AssertionError("the network was tried")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    monkeypatch.setattr(socket, "create_connection", never)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(C.CheckpointError) as e:
        create_model("ViT-B-32", "laion2b_s34b_b79k")
    msg = _one_line_naming(e.value, "checkpoint='laion2b_s34b_b79k' (pretrained tag of ViT-B-32)",
                           "open_clip_model.safetensors", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                           str(tmp_path / "empty-cache"), "checkpoint=FILE")
    assert "huggingface-cli download laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg
    assert "offline (HF_HUB_OFFLINE=1)" in msg
    with pytest.raises(C.CheckpointError, match="not a pretrained tag of ViT-B-32 .*laion2b"):
        create_model("ViT-B-32", "no_such_tag")


def test_an_offline_url_tag_names_the_url_and_where_open_clip_keeps_it(tmp_path, monkeypatch):
    """A tag published at a URL only (none in open_clip 3.3, some in earlier releases): its file
    is looked for where open_clip's download puts it, ~/.cache/clip/<file name>."""
    import open_clip

    url = "https://example.invalid/weights/vit_b_32-quickgelu-x-0123abcd.pt"
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, tag: {"url": url})
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(C.CheckpointError) as e:
        create_model("ViT-B-32", "some_url_tag")
    _one_line_naming(e.value, "checkpoint='some_url_tag' (pretrained tag of ViT-B-32)",
                     f"Download {url} to {tmp_path}/.cache/clip/vit_b_32-quickgelu-x-0123abcd.pt")


def _dry_run(capsys, *items, notebook="01"):
    code = main(["run", "--profile", "ci", "--only", notebook, "--dry-run",
                 *[a for item in items for a in ("-p", item)]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vit_b32_file(tmp_path_factory):
    """A random open_clip ViT-B-32 (about 150M parameters, built once), saved to a file."""
    torch.manual_seed(23)  # not the seed every test starts from: a random build differs
    model = create_model("ViT-B-32")
    path = tmp_path_factory.mktemp("vitb32") / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    images = torch.randn(2, 3, 224, 224)
    texts = get_tokenizer("ViT-B-32")(CAPTIONS)
    return path, images, texts, _embed(model, images, texts)


def test_vit_b_32_from_a_file_passes_the_dry_run_and_loads(vit_b32_file, capsys):
    from unirepclip.workbook.session import load

    path, images, texts, (img, txt) = vit_b32_file
    code, out, err = _dry_run(capsys, "model_name=ViT-B-32", f"checkpoint={path}")
    assert code == 0, err
    values = json.loads(out)["01_checkpoint"]
    assert values["model_name"] == "ViT-B-32" and values["checkpoint"] == str(path)
    code, out, err = _dry_run(capsys, "model_name=ViT-B-32", f"checkpoint={path}", notebook="03")
    assert code == 0 and json.loads(out)["03_erf"]["model_name"] == "ViT-B-32", err
    lm = load("ViT-B-32", str(path), device="cpu", deploy=values["deploy"])
    assert lm.model.load_report.ok and lm.model.load_report.path == str(path)
    i2, t2 = _embed(lm.model, images, lm.tokenizer(CAPTIONS))
    assert torch.equal(i2, img) and torch.equal(t2, txt)
    assert lm.image_size == 224 and "ViT-B-32 on cpu" in lm.describe()


@pytest.mark.parametrize("items, says", [
    (("model_name=ViT-B-32",), "'demo' names the shipped weights of"),  # the profile's 'demo'
    (("model_name=ViT-B-32", "checkpoint=no_such_tag"), "names no file"),
    (("model_name=ViT-B-32", "checkpoint=yfcc15m"),
     "'yfcc15m' is not a pretrained tag of 'ViT-B-32' (its tags: openai, laion400m_e31"),
    (("model_name=local-dir:/nonexistent/tiny", "checkpoint=''"),
     "the folder /nonexistent/tiny does not exist"),
    (("model_name=hf-hub:just-a-repo", "checkpoint=''"), "expected hf-hub:<org>/<repo>"),
])
def test_the_dry_run_checks_open_clip_names_and_tags(items, says, capsys):
    code, _, err = _dry_run(capsys, *items)
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_the_dry_run_accepts_tags_and_schemas(saved, capsys):
    for items in (("model_name=ViT-B-32", "checkpoint=laion2b_s34b_b79k"),
                  ("model_name=convnext_base_w", "checkpoint=''"),
                  (f"model_name=local-dir:{saved[1]}", "checkpoint=''"),
                  ("model_name=hf-hub:someone/tiny-vit", "checkpoint=''")):
        code, out, err = _dry_run(capsys, *items)
        assert code == 0, (items, err)


def test_stage_counts_of_open_clip_towers_without_weights():
    """A timm trunk's stages are counted on the meta device (convnext_base_w: timm's ConvNeXt-B,
    depths (3, 3, 27, 3)); open_clip's own towers have no timm stages to count."""
    from unirepclip.models.params import stage_count

    assert stage_count("convnext_base_w") == 4
    assert stage_count("ViT-B-32") is None and stage_count("RN50") is None
    assert stage_count(f"local-dir:{REPO}/no-such-folder") is None


def test_the_dry_run_of_open_clip_names_and_tags_loads_no_torch(saved):
    """The parameter checks read open_clip's names and tags from its installed files: a fresh
    interpreter checks a tag and a local-dir: folder without importing torch or open_clip."""
    import subprocess
    import sys

    code = (
        "import contextlib, io, json, sys\n"
        "from unirepclip.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):\n"
        "    codes = [main(['run', '--profile', 'ci', '--only', '01', '--dry-run', '-p', m,\n"
        "                   '-p', c]) for m, c in (('model_name=ViT-B-32',\n"
        "                                           'checkpoint=laion2b_s34b_b79k'),\n"
        f"                                          ('model_name=local-dir:{saved[1]}',\n"
        "                                           \"checkpoint=''\"))]\n"
        "print(json.dumps({'codes': codes, 'err': err.getvalue(), 'torch': 'torch' in "
        "sys.modules, 'open_clip': 'open_clip' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"codes": [0, 0], "err": "", "torch": False, "open_clip": False}, got
