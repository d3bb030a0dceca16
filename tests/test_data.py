"""Tests for unirepclip.data: the synthetic world and the local datasets."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from unirepclip.data import (
    COLOUR_RGB,
    COLOURS,
    POSITION_WORDS,
    SHAPES,
    SIZE_WORDS,
    CaptionDataset,
    ImageFolderDataset,
    SkimagePhotos,
    SklearnDigits,
    SyntheticShapes,
    SyntheticWorld,
    UnreadableImage,
    all_captions,
    digits_zeroshot_task,
    zeroshot_task,
)

# ------------------------------------------------------------------------------------------------
# Synthetic world
# ------------------------------------------------------------------------------------------------


def test_same_seed_split_index_gives_same_pixels_whatever_n_or_order():
    w = SyntheticWorld(seed=3)
    full = w.render("train", 12)
    tail = SyntheticWorld(seed=3).render("train", 4, start=8)
    np.testing.assert_array_equal(full.images[8:], tail.images)
    np.testing.assert_array_equal(full.masks[8:], tail.masks)
    assert full.captions[8:] == tail.captions
    # rendering items in reverse order, one at a time, changes nothing
    for i in reversed(range(12)):
        item = w.render_item("train", i)
        np.testing.assert_array_equal(item["image"], full.images[i])
        assert item["caption"] == full.captions[i]


def test_seeds_and_splits_give_different_images():
    a = SyntheticWorld(seed=0).render("train", 20).images
    b = SyntheticWorld(seed=1).render("train", 20).images
    v = SyntheticWorld(seed=0).render("val", 20).images
    t = SyntheticWorld(seed=0).render("test", 20).images
    for other in (b, v, t):
        # not one image in common
        assert not any((a[i] == other[j]).all() for i in range(20) for j in range(20))


def test_mask_is_exactly_the_pixels_that_differ_from_the_background():
    w = SyntheticWorld(seed=0)
    kinds = set()
    for i in range(60):
        item = w.render_item("train", i)
        kinds.add(item["background"])
        changed = (item["image"] != item["background_image"]).any(-1)
        np.testing.assert_array_equal(changed, item["mask"])
    assert kinds == {"plain", "gradient", "noise", "texture"}


def test_mask_matches_saturation_on_every_background():
    # Independent of the renderer's bookkeeping: objects are saturated hues, backgrounds near grey,
    # so thresholding the channel spread must recover the mask exactly.
    s = SyntheticWorld(seed=5, image_size=48).render("val", 200)
    spread = s.images.max(-1).astype(int) - s.images.min(-1).astype(int)
    np.testing.assert_array_equal(spread > 60, s.masks)


def test_plain_background_pixels_outside_mask_are_one_colour():
    w = SyntheticWorld(seed=0)
    seen = 0
    for i in range(80):
        item = w.render_item("test", i)
        if item["background"] != "plain":
            continue
        seen += 1
        img, mask = item["image"], item["mask"]
        bg = img[~mask]
        assert (bg == bg[0]).all()
        assert (img[mask] != bg[0]).any(-1).all()  # every object pixel differs from the background
    assert seen >= 5


def test_object_colour_is_the_labelled_colour():
    s = SyntheticWorld(seed=2).render("train", 120)
    palette = np.array([COLOUR_RGB[c] for c in COLOURS], float)
    for img, mask, col in zip(s.images, s.masks, s.colour):
        mean = img[mask].astype(float).mean(0)
        assert np.argmin(((palette - mean) ** 2).sum(1)) == col
        assert np.abs(mean - palette[col]).max() <= 10  # the jitter bound


# area and perimeter of each shape in units of r^2 and r, r = half the object's diameter
# (hand-computed from the shape definitions)
_AREA = {
    "circle": math.pi,
    "square": 2.0,                                     # inscribed square, half-diagonal 1
    "triangle": 3 * math.sqrt(3) / 4,                  # inscribed equilateral triangle
    "star": 10 * 0.5 * 0.45 * math.sin(math.pi / 5),   # 10 triangles between radii 1 and 0.45
    "cross": 2 * (2 * 0.95 * 0.6) - 0.6 ** 2,          # two 1.9 x 0.6 bars minus their overlap
    "ring": math.pi * (1 - 0.55 ** 2),
}
_PERIMETER = {
    "circle": 2 * math.pi,
    "square": 4 * math.sqrt(2),
    "triangle": 3 * math.sqrt(3),
    "star": 10 * math.sqrt(1 + 0.45 ** 2 - 2 * 0.45 * math.cos(math.pi / 5)),
    "cross": 4 * (0.6 + 2 * 0.65),
    # a filled polygon without anti-aliasing gains its boundary pixels; the hole's boundary is
    # cut away again, so the net boundary gain of a ring is outer minus inner
    "ring": 2 * math.pi * (1 - 0.55),
}


def test_mask_area_matches_the_labelled_shape_and_size():
    size = 96
    s = SyntheticWorld(seed=0, image_size=size, object_scale=(0.5, 0.6)).render("train", 150)
    checked = 0
    for mask, shape, scale in zip(s.masks, s.shape, s.scale):
        name = SHAPES[shape]
        if name not in _AREA:
            continue
        r = scale * size / 2
        # aliased rasterisation adds about a third of a pixel per unit of boundary length
        expected = _AREA[name] * r * r + 0.35 * _PERIMETER[name] * r
        boundary = 2 * math.pi * 1.55 if name == "ring" else _PERIMETER[name]  # both edges
        assert abs(mask.sum() - expected) <= 0.2 * boundary * r + 2, name
        checked += 1
    assert checked >= 80


def test_objects_stay_inside_and_scale_with_image_size():
    for size in (32, 128):
        s = SyntheticWorld(seed=1, image_size=size, object_scale=(0.3, 0.3)).render("train", 40)
        for mask, shape in zip(s.masks, s.shape):
            if SHAPES[shape] == "circle":  # a circle is never cut off: its diameter is 0.3 * size
                ys, xs = np.nonzero(mask)
                assert abs((xs.max() - xs.min() + 1) - 0.3 * size) <= 2
                assert abs((ys.max() - ys.min() + 1) - 0.3 * size) <= 2


def test_captions_name_the_labels():
    world = SyntheticWorld(seed=4)
    s = world.render("train", 200)
    lo, hi = world.object_scale  # size words split the scale range in thirds
    for cap, sh, co, sw, pw, sc, bg in zip(s.captions, s.shape, s.colour, s.size_word,
                                            s.position_word, s.scale, s.background):
        assert f"{COLOURS[co]} {SHAPES[sh]}" in cap
        assert sw == SIZE_WORDS[min(2, int(3 * (sc - lo) / (hi - lo)))]
        if f" {sw} " in cap:
            assert f"{sw} {COLOURS[co]} {SHAPES[sh]}" in cap
        assert bg in {"plain", "gradient", "noise", "texture"}
        # the article agrees with the word after it
        assert "a orange" not in cap and "an red" not in cap


def test_position_word_matches_the_mask_centre():
    s = SyntheticWorld(seed=6).render("train", 150)
    size = 64
    for mask, word in zip(s.masks, s.position_word):
        ys, xs = np.nonzero(mask)
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        col, row = int(3 * cx / size), int(3 * cy / size)
        near_edge = min(abs(3 * cx / size - round(3 * cx / size)),
                        abs(3 * cy / size - round(3 * cy / size))) < 0.1
        if not near_edge:
            assert word == POSITION_WORDS[3 * row + col]


def test_train_and_heldout_phrasings_are_disjoint():
    train, held = all_captions("train"), all_captions("heldout")
    assert train and held and not (train & held)
    tr = SyntheticWorld(seed=0).render("train", 300).captions
    va = SyntheticWorld(seed=0).render("val", 100).captions
    te = SyntheticWorld(seed=0).render("test", 300).captions
    assert set(tr) <= train and set(va) <= train and set(te) <= held
    # also no shared phrase wording beyond the labels: no 3-word window of a test frame is in training
    def grams(caps, k=3):
        out = set()
        for c in caps:
            w = c.replace(",", "").replace(";", "").split()
            out |= {tuple(w[i:i + k]) for i in range(len(w) - k + 1)
                    if not set(w[i:i + k]) & (set(SHAPES) | set(COLOURS) | set(SIZE_WORDS) | {"a", "an"})}
        return out
    assert not (grams(train) & grams(held))


def test_zeroshot_prompts_are_heldout_and_build_a_classifier():
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    train, held = all_captions("train"), all_captions("heldout")
    for task, classes in (("shape", SHAPES), ("colour", COLOURS)):
        names, templates = zeroshot_task(task)
        assert names == list(classes)
        texts = [t(c) for c in names for t in templates]
        assert len(set(texts)) == len(texts)
        assert set(texts) <= held and not (set(texts) & train)
        assert all(t.format(names[0]) == t(names[0]) for t in templates)
    assert zeroshot_task("colour")[1][0]("orange").startswith("a picture of an orange ")

    class Stub(torch.nn.Module):
        def encode_text(self, tokens, normalize=False):
            f = torch.nn.functional.one_hot(tokens[:, 1] % 16, 16).float()
            return f / f.norm(dim=-1, keepdim=True)

    tok = lambda texts: torch.tensor([[0, len(t)] for t in texts])  # noqa: E731
    names, templates = zeroshot_task("shape")
    clf = build_zero_shot_classifier(Stub(), tok, names, templates, num_classes_per_batch=None)
    assert clf.shape == (16, len(SHAPES))
    torch.testing.assert_close(clf.norm(dim=0), torch.ones(len(SHAPES)))


def test_two_objects_labels_and_masks():
    s = SyntheticWorld(seed=0, two_objects=True).render("test", 80)
    palette = np.array([COLOUR_RGB[c] for c in COLOURS], float)
    assert (s.shape != s.shape2).all() and (s.colour != s.colour2).all()
    assert not (s.masks & s.masks2).any()
    spread = s.images.max(-1).astype(int) - s.images.min(-1).astype(int)
    np.testing.assert_array_equal(spread > 60, s.masks | s.masks2)
    for i in range(len(s)):
        assert f"{COLOURS[s.colour2[i]]} {SHAPES[s.shape2[i]]}" in s.captions[i]
        if s.masks2[i].sum() > 0:
            mean = s.images[i][s.masks2[i]].astype(float).mean(0)
            assert np.argmin(((palette - mean) ** 2).sum(1)) == s.colour2[i]
    # the first object's pixels and caption start are the one-object world's (draw order)
    one = SyntheticWorld(seed=0).render("test", 80)
    np.testing.assert_array_equal(one.masks, s.masks)
    assert all(c2.startswith(c1) for c1, c2 in zip(one.captions, s.captions))


def test_dataset_yields_pil_images_and_targets():
    ds = SyntheticShapes(split="test", n=30, image_size=32, seed=0, target="shape")
    img, y = ds[3]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), ds.samples.images[3])
    assert y == ds.samples.shape[3] and ds.classes == list(SHAPES)
    assert ds.masks.shape == (30, 32, 32) and len(ds.captions) == 30 == len(ds)
    assert ds[-1][1] == ds.samples.shape[29]
    with pytest.raises(IndexError):
        ds[30]
    col = SyntheticShapes(split="test", n=30, image_size=32, target="colour",
                          transform=lambda im: np.asarray(im).mean())
    x, y = col[3]
    assert x == pytest.approx(ds.samples.images[3].mean()) and y == ds.samples.colour[3]
    assert col.classes == list(COLOURS)
    cap = SyntheticShapes(split="test", n=5, image_size=32, target="caption")
    assert cap[2][1] == ds.captions[2] and cap.classes is None
    assert SyntheticShapes(split="test", n=5, image_size=32, target="index")[4][1] == 4


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="split"):
        SyntheticWorld().render("training", 3)
    with pytest.raises(ValueError, match="object_scale"):
        SyntheticWorld(object_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="target"):
        SyntheticShapes(n=2, target="size")
    with pytest.raises(ValueError, match="task"):
        zeroshot_task("size")


def test_tiny_objects_still_have_a_mask():
    s = SyntheticWorld(seed=0, image_size=16, object_scale=(0.05, 0.1)).render("train", 50)
    assert s.masks.reshape(50, -1).any(1).all()


# ------------------------------------------------------------------------------------------------
# Image folders
# ------------------------------------------------------------------------------------------------
def _png(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    # class folders deliberately created out of order: indices follow the sorted names
    for c, v in (("zebra", 30), ("ant", 10), ("bee", 20)):
        for i in range(2):
            _png(tmp_path / "imgs" / c / f"{i}.png", v + i)
    return tmp_path / "imgs"


def test_image_folder_labels_follow_sorted_folders(folder, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("an ant\na bee\n\na zebra\n")
    ds = ImageFolderDataset(folder, names)
    assert ds.folders == ["ant", "bee", "zebra"]
    assert ds.classes == ["an ant", "a bee", "a zebra"]
    assert len(ds) == 6 and ds.skipped == []
    for i in range(len(ds)):
        img, y = ds[i]
        assert isinstance(img, Image.Image) and img.mode == "RGB"
        # the pixel value written for the file identifies its class folder: 10/20/30 (+0/1)
        assert np.asarray(img)[0, 0, 0] // 10 == y + 1
    assert ImageFolderDataset(folder).classes == ["ant", "bee", "zebra"]
    t = ImageFolderDataset(folder, transform=lambda im: np.asarray(im).sum())
    assert t[0][0] == 10 * 8 * 8 * 3


def test_image_folder_skips_and_lists_bad_files(folder):
    (folder / "bee" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "bee" / "notes.txt").write_text("hello")
    (folder / "bee" / ".DS_Store").write_bytes(b"\0")
    ds = ImageFolderDataset(folder)
    assert len(ds) == 6
    reasons = dict((os.path.basename(p), r) for p, r in ds.skipped)
    assert set(reasons) == {"broken.jpg", "notes.txt"}
    assert "Error" in reasons["broken.jpg"] and ".txt" in reasons["notes.txt"]
    # without the scan-time check the bad file reaches loading and comes back as a stand-in
    lazy = ImageFolderDataset(folder, verify=False, transform=_to_tensor)
    bad = [i for i, (p, _) in enumerate(lazy.samples) if p.endswith("broken.jpg")]
    assert len(bad) == 1 and isinstance(lazy[bad[0]][0], UnreadableImage)
    assert sum(isinstance(lazy[i][0], torch.Tensor) for i in range(len(lazy))) == 6


def _to_tensor(im):
    return torch.from_numpy(np.asarray(im, np.float32)).permute(2, 0, 1)


def test_image_folder_errors_name_the_problem(folder, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("one\ntwo\n")
    with pytest.raises(ValueError, match=r"names.txt has 2 names but .* has 3 class folders"):
        ImageFolderDataset(folder, names)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "a.png", 5)
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        ImageFolderDataset(folder, tmp_path / "missing.txt")


def test_imagenet_folder_uses_open_clip_names_and_templates(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from unirepclip.data.registry import load_dataset, resolve_vocabulary

    for k in range(1000):
        (tmp_path / f"n{k:08d}").mkdir()
    _png(tmp_path / "n00000000" / "a.JPEG", 1)
    _png(tmp_path / "n00000999" / "b.png", 2)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path), classnames_file="imagenet")
    assert ds.classes == list(IMAGENET_CLASSNAMES) and len(ds) == 2
    assert ds.targets == [0, 999]
    (tmp_path / "n00000999" / "b.png").unlink()
    (tmp_path / "n00000999").rmdir()
    with pytest.raises(ValueError, match="1000 class names but .* 999 class folders"):
        load_dataset("imagefolder", data_dir=str(tmp_path), classnames_file="imagenet")
    names, templates, _ = resolve_vocabulary("imagenet")
    assert len(names) == 1000 and len(templates) == 80
    assert templates[0]("goldfish").count("goldfish") == 1


# ------------------------------------------------------------------------------------------------
# Caption files
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def caption_images(tmp_path):
    for name, v in (("a.png", 10), ("b.png", 20), ("c.png", 30)):
        _png(tmp_path / "img" / name, v)
    return tmp_path


def test_caption_csv_groups_captions_by_image(caption_images):
    p = caption_images / "train.csv"
    p.write_text("filepath\ttitle\nimg/a.png\ta red star\nimg/b.png\ta blue ring\n"
                 "img/a.png\ta star, red\nimg/c.png\ta cross\nimg/missing.png\tnothing\n")
    ds = CaptionDataset(p)
    assert len(ds) == 3 and ds.captions == ["a red star", "a blue ring", "a star, red", "a cross"]
    assert ds.text_to_image.tolist() == [0, 1, 0, 2]
    assert ds.image_to_captions == [[0, 2], [1], [3]]
    assert [os.path.basename(q) for q, _ in ds.skipped] == ["missing.png"]
    img, i = ds[1]
    assert np.asarray(img)[0, 0, 0] == 20 and i == 1
    caps, t2i = ds.texts_for([0, 2])
    assert caps == ["a red star", "a star, red", "a cross"] and t2i.tolist() == [0, 0, 1]
    # comma-separated with quotes and custom columns
    q = caption_images / "other.csv"
    q.write_text('path,text\nimg/c.png,"a cross, green"\n')
    ds2 = CaptionDataset(q, image_key="path", caption_key="text")
    assert ds2.captions == ["a cross, green"] and ds2.images[0].endswith("c.png")


def test_caption_jsonl_and_root(caption_images, tmp_path):
    p = tmp_path / "meta" / "pairs.jsonl"
    p.parent.mkdir()
    p.write_text('{"filepath": "a.png", "title": "first"}\n\n{"filepath": "a.png", "title": "second"}\n'
                 '{"filepath": "b.png", "title": "third"}\n')
    ds = CaptionDataset(p, root=caption_images / "img")
    assert ds.image_to_captions == [[0, 1], [2]] and len(ds) == 2


def test_caption_missing_column_is_named(caption_images):
    p = caption_images / "bad.csv"
    p.write_text("filepath\tcaption\nimg/a.png\tx\n")
    with pytest.raises(ValueError, match=r"bad.csv: column 'title' \(caption_key\) is missing"):
        CaptionDataset(p)
    j = caption_images / "bad.jsonl"
    j.write_text('{"image": "img/a.png", "title": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: column 'filepath' \(image_key\)"):
        CaptionDataset(j)
    k = caption_images / "holes.jsonl"
    k.write_text('{"filepath": "img/a.png", "title": "x"}\n{"filepath": "img/b.png"}\n')
    with pytest.raises(ValueError, match=r"holes.jsonl, row 2: no value in column 'title'"):
        CaptionDataset(k)


# ------------------------------------------------------------------------------------------------
# Images shipped in packages
# ------------------------------------------------------------------------------------------------
def test_digits_split_is_stratified_deterministic_and_complete():
    from sklearn.datasets import load_digits

    raw = load_digits()
    parts = {s: SklearnDigits(s, seed=0, image_size=16) for s in ("train", "val", "test")}
    idx = np.concatenate([p.indices for p in parts.values()])
    assert sorted(idx.tolist()) == list(range(1797))  # a partition of all 1797 images
    assert [len(p) for p in parts.values()] == [1077, 360, 360]
    counts = np.bincount(raw.target, minlength=10)
    for name, frac in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        got = np.bincount(parts[name].targets, minlength=10)
        assert np.abs(got - frac * counts).max() <= 1.5  # every class in proportion
    again = SklearnDigits("test", seed=0)
    np.testing.assert_array_equal(again.indices, parts["test"].indices)
    assert not np.array_equal(SklearnDigits("test", seed=1).indices, again.indices)
    img, y = parts["test"][5]
    assert img.size == (16, 16) and img.mode == "RGB" and y == raw.target[parts["test"].indices[5]]
    # nearest upscaling by 8 reproduces the stored 0..16 ink as 0..255 blocks
    near = SklearnDigits("test", seed=0, image_size=64, resample="nearest")
    big = np.asarray(near[5][0])[..., 0]
    expected = np.rint(raw.images[near.indices[5]] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(big[::8, ::8], expected)
    names, templates = digits_zeroshot_task()
    assert names == [str(d) for d in range(10)] and all("{}" in t for t in templates)


def test_skimage_photos_load_without_download():
    import skimage.data

    ds = SkimagePhotos(["astronaut", "camera"])
    assert ds.names == ["astronaut", "camera"] and ds.skipped == []
    np.testing.assert_array_equal(ds.image(0), skimage.data.astronaut())
    cam = ds.image(1)  # a grey photograph comes back as three equal channels
    assert cam.shape[-1] == 3 and (cam[..., 0] == cam[..., 2]).all()
    img, i = ds[0]
    assert img.size == (512, 512) and i == 0 and "astronaut" in ds.captions[0]
    with pytest.raises(ValueError, match="unknown sample"):
        SkimagePhotos(["lena"])


def test_synthetic_dataset_identity_depends_on_target():
    # labels are cached beside features: a colour dataset must not share a shape dataset's key
    from unirepclip.data import SyntheticShapes
    a = SyntheticShapes(split="test", n=4, image_size=32, seed=0, target="shape")
    b = SyntheticShapes(split="test", n=4, image_size=32, seed=0, target="colour")
    assert a.identity != b.identity


# ------------------------------------------------------------------------------------------------
# The dataset specification (unirepclip.data.registry): what a name means, asked torch-free
# ------------------------------------------------------------------------------------------------
def test_every_spec_says_what_its_name_means_and_what_it_serves():
    from unirepclip.data import registry
    from unirepclip.data.benchmarks import BENCHMARKS

    for name, spec in registry.DATASETS.items():
        assert spec.name == name and spec.kind in registry.KINDS
        # files: the folder layouts and the benchmarks read data_dir, nothing else does
        assert bool(spec.layout) == (spec.kind in ("folder", "benchmark")), name
        if spec.kind == "benchmark":
            assert spec.layout == BENCHMARKS[name].layout
            assert ("retrieval" in spec.tasks) == (BENCHMARKS[name].task == "retrieval")
    by_task = {t: registry.dataset_names(t) for t in registry.TASKS}
    # worked out by hand from the table in the module doc
    assert by_task["retrieval"] == ("synthetic", "mscoco_captions", "flickr30k")
    assert by_task["probe"][:3] == ("synthetic", "imagefolder", "digits")
    assert "skimage" not in by_task["probe"] and "eurosat" not in by_task["probe"]
    assert "cifar10" in by_task["probe"] and "imagenet-r" in by_task["classification"]
    assert not set(by_task["retrieval"][1:]) & set(by_task["classification"])
    assert registry.dataset_names("probe") == registry.dataset_names(splits=("train", "val",
                                                                            "test"))
    assert registry.vocabulary_names() == ("imagenet",)
    with pytest.raises(ValueError, match="task='captions'"):
        registry.dataset_names("captions")


def test_a_spec_that_contradicts_itself_is_refused_by_name():
    from unirepclip.data.registry import DatasetSpec

    def build(a):
        return []

    with pytest.raises(ValueError, match="DatasetSpec 'pairs': a retrieval set needs captions="):
        DatasetSpec("pairs", "folder", build, ("test",), "pairs", ("retrieval",), layout="x")
    with pytest.raises(ValueError, match="DatasetSpec 'few': a probe set needs the splits"):
        DatasetSpec("few", "packaged", build, ("test",), "few", ("classification", "probe"),
                    classes=lambda ds, a: None)
    with pytest.raises(ValueError, match="kind='web'"):
        DatasetSpec("web", "web", build, ("test",), "web", ("classification",),
                    classes=lambda ds, a: None)


def test_name_or_path_tells_a_registered_name_from_a_path():
    from unirepclip.data.registry import dataset_names, name_or_path

    assert name_or_path("imagenet", "vocabulary") == ("imagenet", ("imagenet",))
    assert name_or_path("names.txt", "vocabulary") == (None, ("imagenet",))
    retrieval = dataset_names("retrieval")
    assert name_or_path("flickr30k", "retrieval") == ("flickr30k", retrieval)
    # a classification set gives no captions: as a captions_file it can only be a path
    assert name_or_path("cifar10", "retrieval") == (None, retrieval)
    assert name_or_path("cifar10", "dataset")[0] == "cifar10"
    assert name_or_path("data/pairs.csv", "dataset")[0] is None
    with pytest.raises(ValueError, match="among='model'"):
        name_or_path("x", "model")


def test_unknown_or_unsuitable_names_are_one_line_with_the_accepted_ones():
    from unirepclip.data.registry import dataset_names, dataset_spec

    with pytest.raises(ValueError) as e:
        dataset_spec("svhn", "probe")
    assert "\n" not in str(e.value) and str(dataset_names("probe")) in str(e.value)
    with pytest.raises(ValueError, match="dataset='skimage' serves classification, not probe"):
        dataset_spec("skimage", "probe")
    with pytest.raises(ValueError, match="captions_file='flickr30k'"):
        dataset_spec("flickr30k", "classification")
    assert dataset_spec("cifar10", "probe").name == "cifar10"


def test_the_queries_import_without_torch():
    import subprocess
    import sys

    code = ("import sys; from unirepclip.data import registry; "
            "registry.dataset_names('retrieval'); registry.name_or_path('x', 'vocabulary'); "
            "print(sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dataset_field_in_data_dir_names_the_folder_of_any_set(tmp_path):
    from unirepclip.data.registry import load_dataset

    for c, v in (("b", 20), ("a", 10)):
        _png(tmp_path / "imagefolder" / c / "0.png", v)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "{dataset}"))
    assert ds.root == tmp_path / "imagefolder" and ds.classes == ["a", "b"]
