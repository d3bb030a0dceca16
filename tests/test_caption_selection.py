"""Compositionality sets (unirepclip.data.compositional) and the image-caption selection metric
(unirepclip.eval.caption_selection): against CLIP_benchmark's own ``image_caption_selection`` on
a tiny SugarCrepe layout built here, against hand-built score tensors, and the expected-layout
error of every supported name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from unirepclip.data import compositional as comp
from unirepclip.eval import caption_selection as cs

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60),
           "yellow": (230, 210, 40)}


def _picture(path: Path, colour: str, shape: str) -> None:
    im = Image.new("RGB", (64, 64), (235, 235, 235))
    d = ImageDraw.Draw(im)
    box = (12, 12, 52, 52)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
    im.save(path)


def _sugar_crepe(root: Path, task: str = "swap_att", tie: bool = False) -> Path:
    (root / "val2017").mkdir(parents=True)
    items = {}
    pairs = [("red", "circle", "blue"), ("blue", "square", "red"), ("green", "circle", "yellow"),
             ("yellow", "square", "green"), ("red", "square", "green"), ("blue", "circle", "red")]
    for i, (colour, shape, other) in enumerate(pairs):
        name = f"{i:012d}.jpg"
        _picture(root / "val2017" / name, colour, shape)
        # non-contiguous keys, as SugarCrepe's files have them
        items[str(3 * i + 1)] = {"filename": name, "caption": f"a {colour} {shape}",
                                 "negative_caption": f"a {other} {shape}"}
        # the same image with its captions the wrong way round: a model that sees colour fails
        # these, so the figures are not all 1
        items[str(3 * i + 2)] = {"filename": name, "caption": f"a {other} {shape}",
                                 "negative_caption": f"a {colour} {shape}"}
    if tie:  # a caption equal to its negative: an exact tie, which the first caption wins
        items["99"] = {"filename": "000000000000.jpg", "caption": "a shape",
                       "negative_caption": "a shape"}
    (root / f"{task}.json").write_text(json.dumps(items))
    return root


@pytest.fixture(scope="module")
def lm():
    from unirepclip.workbook.session import load
    torch.set_num_threads(1)
    return load("UniRepLKNet-Demo", "demo", device="cpu")


def _clip_benchmark(lm, root: Path, task: str) -> dict:
    from clip_benchmark.datasets.builder import image_captions_collate_fn
    from clip_benchmark.datasets.sugar_crepe import SugarCrepe
    from clip_benchmark.metrics import image_caption_selection

    ds = SugarCrepe(root=str(root / "val2017"), ann_file=str(root / f"{task}.json"),
                    transform=lm.preprocess)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False,
                                         collate_fn=image_captions_collate_fn)
    return image_caption_selection.evaluate(lm.model, loader, lm.tokenizer, "cpu", amp=False)


def test_sugar_crepe_figures_equal_clip_benchmarks_own(lm, tmp_path):
    root = _sugar_crepe(tmp_path / "sc")
    ds = comp.load_compositional("sugar_crepe/swap_att", str(root))
    assert len(ds) == 12 and ds[0][1] == ["a red circle", "a blue circle"]
    ours = cs.evaluate_caption_selection(lm.model, ds, lm.tokenizer, transform=lm.preprocess,
                                         batch_size=4)
    theirs = _clip_benchmark(lm, root, "swap_att")
    assert set(theirs) == set(cs.SELECTION_KEYS)
    for key in cs.SELECTION_KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert ours["image_acc"] == 1.0 and ours["acc"] == ours["text_acc"]  # SugarCrepe: by design
    assert 0 < ours["text_acc"] < 1  # not a comparison of two trivial figures
    assert ours["ties"] == 0 and ours["n"] == 12


def test_an_exact_tie_goes_to_the_first_caption_and_is_counted(lm, tmp_path):
    ds = comp.load_compositional("sugar_crepe/add_att", str(_sugar_crepe(tmp_path, "add_att",
                                                                          tie=True)))
    out = cs.evaluate_caption_selection(lm.model, ds, lm.tokenizer, transform=lm.preprocess)
    assert out["ties"] == 1 and out["n"] == 13
    last = out["scores"][-1, 0]
    assert last[0] == last[1] and out["outcomes"]["text_correct"][-1]


def _winoground(root: Path, n: int = 4) -> Path:
    """``n`` examples in Winoground's release layout; the odd ones with their captions swapped,
    so a model that tells the pictures apart fails those."""
    (root / "images").mkdir(parents=True)
    kinds = [(("red", "circle"), ("blue", "square")), (("green", "square"), ("yellow", "circle"))]
    lines = []
    for i in range(n):
        pics = kinds[i % 2]
        for k, (colour, shape) in enumerate(pics):
            _picture(root / "images" / f"ex_{i}_img_{k}.png", colour, shape)
        caps = [f"a {c} {s}" for c, s in pics][::(-1 if i % 2 else 1)]
        lines.append(json.dumps({"id": i, "caption_0": caps[0], "caption_1": caps[1],
                                 "image_0": f"ex_{i}_img_0", "image_1": f"ex_{i}_img_1",
                                 "tag": "Object"}))
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_winoground_figures_equal_clip_benchmarks_own(lm, tmp_path):
    from clip_benchmark.datasets.builder import image_captions_collate_fn
    from clip_benchmark.metrics import image_caption_selection

    ds = comp.load_compositional("winoground", str(_winoground(tmp_path / "wg")),
                                 transform=lm.preprocess)
    ours = cs.evaluate_caption_selection(lm.model, ds, lm.tokenizer)

    class AsClipBenchmark(torch.utils.data.Dataset):  # its WinoGround's items: stacked images
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            images, captions = ds[i]
            return torch.stack(images), captions

    loader = torch.utils.data.DataLoader(AsClipBenchmark(), batch_size=3,
                                         collate_fn=image_captions_collate_fn)
    theirs = image_caption_selection.evaluate(lm.model, loader, lm.tokenizer, "cpu", amp=False)
    for key in cs.SELECTION_KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert ours["ties"] == 0 and ours["n"] == 4 and ours["acc"] < 1


def test_the_datasets_own_transform_is_used(lm, tmp_path):
    root = str(_sugar_crepe(tmp_path / "sc"))
    plain = cs.evaluate_caption_selection(lm.model, comp.load_compositional(
        "sugar_crepe/swap_att", root), lm.tokenizer)
    grey = comp.load_compositional("sugar_crepe/swap_att", root, transform=lambda im: lm.preprocess(
        Image.new("RGB", im.size, (128, 128, 128))))
    blank = cs.evaluate_caption_selection(lm.model, grey, lm.tokenizer)
    # every image is the same grey square: item k's scores are its captions against one image
    assert np.allclose(blank["scores"][0], blank["scores"][1][:, ::-1], atol=1e-6)
    assert not np.allclose(plain["scores"], blank["scores"], atol=1e-3)


def test_winoground_release_layout_is_read(tmp_path):
    root = tmp_path / "wg"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(2):
        for k, (colour, shape) in enumerate([("red", "circle"), ("blue", "square")]):
            _picture(root / "images" / f"ex_{i}_img_{k}.png", colour, shape)
        lines.append(json.dumps({"id": i, "caption_0": "a red circle", "caption_1":
                                 "a blue square", "image_0": f"ex_{i}_img_0",
                                 "image_1": f"ex_{i}_img_1", "tag": "Object"}))
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n")
    ds = comp.load_compositional("winoground", str(root))
    images, captions = ds[1]
    assert len(ds) == 2 and captions == ["a red circle", "a blue square"]
    assert [im.getpixel((32, 32)) for im in images] == [COLOURS["red"], COLOURS["blue"]]
    assert ds.image_files() == [f"images/ex_{i}_img_{k}.png" for i in range(2) for k in range(2)]


@pytest.mark.parametrize("name", comp.COMPOSITIONAL_NAMES)
def test_every_name_gives_its_expected_layout_on_an_empty_root(name, tmp_path):
    for root in (str(tmp_path), str(tmp_path / "absent"), ""):
        with pytest.raises(comp.CompositionalNotFound) as err:
            comp.load_compositional(name, root)
        msg = str(err.value)
        assert "\n" not in msg and f"dataset={name!r}" in msg
        assert msg.endswith(f"expected {comp.LAYOUTS[name]}")
    task = name.split("/")[-1]
    assert (f"<root>/{task}.json" in comp.LAYOUTS[name] if name != "winoground"
            else "examples.jsonl" in comp.LAYOUTS[name])


def test_dataset_root_templates_as_clip_benchmark(tmp_path):
    _sugar_crepe(tmp_path / "sugar_crepe-replace_rel", "replace_rel")
    ds = comp.load_compositional("sugar_crepe/replace_rel", str(tmp_path / "{dataset_cleaned}"))
    assert ds.root == tmp_path / "sugar_crepe-replace_rel" and len(ds) == 12
    _sugar_crepe(tmp_path / "sugar_crepe" / "swap_obj", "swap_obj")
    ds = comp.load_compositional("sugar_crepe/swap_obj", str(tmp_path / "{dataset}"))
    assert ds.root == tmp_path / "sugar_crepe" / "swap_obj"


def test_a_missing_image_or_field_is_named(tmp_path):
    root = _sugar_crepe(tmp_path / "sc", "add_obj")
    (root / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(comp.CompositionalNotFound, match="first val2017/000000000002.jpg"):
        comp.load_compositional("sugar_crepe/add_obj", str(root))
    (root / "add_obj.json").write_text(json.dumps({"0": {"filename": "x.jpg", "caption": "a"}}))
    with pytest.raises(ValueError, match=r"item '0' lacks negative_caption"):
        comp.load_compositional("sugar_crepe/add_obj", str(root))
    with pytest.raises(ValueError, match="is not one of"):
        comp.load_compositional("sugar_crepe/nonsense", str(root))


def test_selection_on_hand_built_scores():
    # items: 2 images x 2 captions (Winoground-like); image k belongs with caption k
    s = np.array([
        [[0.9, 0.1], [0.2, 0.8]],   # all right
        [[0.9, 0.1], [0.95, 0.96]],  # images right (each picks its caption); caption 0 -> image 1
        [[0.1, 0.9], [0.2, 0.8]],   # image 0 picks caption 1; captions: 0 -> image 1, 1 -> image 0
        [[0.5, 0.5], [0.1, 0.7]],   # image 0's two captions tie: the first wins
    ])
    o = cs.selection_outcomes(s)
    np.testing.assert_array_equal(o["text_correct"], [True, True, False, True])
    np.testing.assert_array_equal(o["image_correct"], [True, False, False, True])
    np.testing.assert_array_equal(o["tie"], [False, False, False, True])
    assert cs.image_caption_selection(s) == {"text_acc": 0.75, "image_acc": 0.5, "acc": 0.5,
                                             "ties": 1, "n": 4}
    # SugarCrepe shape: one image, two captions
    one = np.array([[[0.3, 0.7]], [[0.7, 0.3]], [[0.4, 0.4]]])
    assert cs.image_caption_selection(one) == {"text_acc": 2 / 3, "image_acc": 1.0,
                                               "acc": 2 / 3, "ties": 1, "n": 3}
    with pytest.raises(ValueError, match="expected \\(N, nim, nt\\)"):
        cs.selection_outcomes(np.zeros((3, 2)))
