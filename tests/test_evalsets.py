"""unirepclip.data.sets: the data named by notebook parameters, checked against the datasets'
own records (synthetic labels, folder layout, caption files)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unirepclip
from unirepclip.data import registry
from unirepclip.data import sets as evalsets
from unirepclip.data.registry import DatasetSpec, Subset
from unirepclip.data import COLOURS, SHAPES, SyntheticWorld


@pytest.fixture
def folder(tmp_path):
    """root/<class>/<image>: classes b_cat (3 images), a_dog (2), c_fox (1)."""
    root = tmp_path / "val"
    for cls, n in (("b_cat", 3), ("a_dog", 2), ("c_fox", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (10 * i, 50, 90)).save(root / cls / f"{i}.png")
    return root


def test_synthetic_set_labels_and_images_follow_the_world():
    es = evalsets.classification_set("synthetic", n_images=12, image_size=48, seed=3)
    ref = SyntheticWorld(image_size=48, seed=3).render("test", 12)
    assert es.kind == "synthetic" and es.main_task == "shape" and len(es) == 12
    assert set(es.tasks) == {"shape", "colour"}
    np.testing.assert_array_equal(es.tasks["shape"].labels, ref.shape)
    np.testing.assert_array_equal(es.tasks["colour"].labels, ref.colour)
    assert es.tasks["shape"].classnames == list(SHAPES)
    assert es.tasks["colour"].classnames == list(COLOURS)
    np.testing.assert_array_equal(es.image(5), ref.images[5])
    assert es.dataset.captions == ref.captions
    with pytest.raises(ValueError, match="n_images"):
        evalsets.classification_set("synthetic", n_images=0)


def test_imagefolder_vocabularies_and_seeded_subset(folder, tmp_path):
    es = evalsets.classification_set("imagefolder", n_images=0, data_dir=str(folder))
    task = es.tasks["imagefolder"]
    assert task.classnames == ["a_dog", "b_cat", "c_fox"]  # sorted folder order
    np.testing.assert_array_equal(task.labels, [0, 0, 1, 1, 1, 2])
    assert len(task.templates) == 80 and es.main_task == "imagefolder"
    names = tmp_path / "names.txt"
    names.write_text("dog\ncat\nfox\n")
    es2 = evalsets.classification_set("imagefolder", n_images=4, seed=1, data_dir=str(folder),
                                      classnames_file=str(names))
    assert es2.tasks["imagefolder"].classnames == ["dog", "cat", "fox"]
    rows = es2.dataset.indices
    assert len(rows) == 4 and list(rows) == sorted(set(rows))
    np.testing.assert_array_equal(es2.tasks["imagefolder"].labels,
                                  np.array([0, 0, 1, 1, 1, 2])[rows])
    for k, r in enumerate(rows):  # each image really is the file of its label's folder
        assert es2.dataset[k][1] == es2.tasks["imagefolder"].labels[k]
    again = evalsets.classification_set("imagefolder", n_images=4, seed=1, data_dir=str(folder))
    np.testing.assert_array_equal(again.dataset.indices, rows)
    assert es2.image(0).shape == (30, 40, 3)
    with pytest.raises(ValueError, match="gives 1000 class names but .* 3 class folders"):
        evalsets.classification_set("imagefolder", n_images=0, data_dir=str(folder),
                                    classnames_file="imagenet")
    with pytest.raises(FileNotFoundError, match="classnames_file='nope.txt'"):
        evalsets.classification_set("imagefolder", n_images=0, data_dir=str(folder),
                                    classnames_file="nope.txt")
    with pytest.raises(ValueError, match="needs data_dir"):
        evalsets.classification_set("imagefolder", n_images=0)


def test_digits_and_skimage_sets():
    d = evalsets.classification_set("digits", n_images=20, image_size=32, seed=0)
    assert len(d) == 20 and d.tasks["digits"].classnames == [str(i) for i in range(10)]
    for k in (0, 7, 19):
        assert d.dataset[k][1] == d.tasks["digits"].labels[k]
    assert d.image(0).shape == (32, 32, 3)
    s = evalsets.classification_set("skimage", n_images=0)
    t = s.tasks["skimage"]
    np.testing.assert_array_equal(t.labels, np.arange(len(s)))
    assert t.classnames == s.dataset.descriptions
    assert max(s.image(0).shape[:2]) <= 160  # display thumbnails
    with pytest.raises(ValueError, match="dataset='coco'"):
        evalsets.classification_set("coco", n_images=1)


@pytest.mark.parametrize("name, kw", [("digits", {}), ("skimage", {}), ("synthetic", {}),
                                      ("imagefolder", {"data_dir": None})])
def test_every_dataset_honours_n_images(name, kw, folder):
    """n_images=3 gives 3 images whatever the set (skimage used to return all 15), and a finite
    set's labels follow the rows kept (each photograph is its own class: label = its row)."""
    kw = {k: str(folder) for k in kw}
    es = evalsets.classification_set(name, n_images=3, seed=4, **kw)
    assert len(es) == 3 and len(es.tasks[es.main_task].labels) == 3
    rows = getattr(es.dataset, "indices", np.arange(3))
    if name != "synthetic":
        assert list(rows) == sorted(np.random.default_rng(4).choice(
            len(es.dataset.dataset), size=3, replace=False))
        for k in range(3):
            assert es.dataset[k][1] == es.tasks[es.main_task].labels[k]
    if name == "skimage":
        np.testing.assert_array_equal(es.tasks["skimage"].labels, rows)
        assert len(es.tasks["skimage"].classnames) == len(es.dataset.dataset)


def test_sample_set_for_a_real_model_uses_photos_and_the_imagenet_vocabulary():
    s = evalsets.sample_set("imagefolder", n_images=3, seed=0)
    task = s.tasks[s.main_task]
    assert len(s) == 3 and task.labels is None
    assert task.num_classes == 1000 and task.classnames[0] == "tench"
    syn = evalsets.sample_set("synthetic", n_images=4, image_size=64)
    assert len(syn) == 4 and syn.main_task == "shape"


def test_caption_sets(folder, tmp_path):
    es = evalsets.classification_set("synthetic", n_images=6)
    cs = evalsets.caption_set("", evalset=es)
    assert cs.dataset is es.dataset  # the same images: one feature pass serves both
    assert cs.captions == es.dataset.captions
    np.testing.assert_array_equal(cs.text_to_image, np.arange(6))
    img_folder = evalsets.classification_set("imagefolder", n_images=0, data_dir=str(folder))
    assert evalsets.caption_set("", evalset=img_folder) is None
    csv = tmp_path / "caps.csv"
    csv.write_text("filepath,title\n"
                   f"{folder}/a_dog/0.png,a dog\n"
                   f"{folder}/b_cat/0.png,a cat\n"
                   f"{folder}/a_dog/0.png,another dog\n"
                   f"{folder}/c_fox/0.png,a fox\n")
    cf = evalsets.caption_set(str(csv), n_images=2)
    assert len(cf.dataset) == 2
    assert cf.captions == ["a dog", "a cat", "another dog"]
    np.testing.assert_array_equal(cf.text_to_image, [0, 1, 0])
    caps, t2i = cf.texts_for([1])  # only the cat image was encoded
    assert caps == ["a cat"] and list(t2i) == [0]


class _Pairs:
    """A retrieval set as one would add it to the data layer: ``pairs.json`` lists the image
    files and each image's captions."""

    def __init__(self, root: Path):
        meta = json.loads((root / "pairs.json").read_text())
        self.root, self.files, self.per_image = root, meta["files"], meta["captions"]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return Image.open(self.root / self.files[i]).convert("RGB"), i

    @property
    def identity(self):
        return {"class": "_Pairs", "root": str(self.root), "files": self.files}


def test_a_retrieval_set_added_to_the_data_layer_alone_is_read_by_name(tmp_path, monkeypatch):
    root = tmp_path / "tiny_pairs"
    root.mkdir()
    captions = [[f"image {k} caption {j}" for j in range(1 + k % 2)] for k in range(5)]
    for k in range(5):
        Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(root / f"{k}.png")
    (root / "pairs.json").write_text(json.dumps({"files": [f"{k}.png" for k in range(5)],
                                                 "captions": captions}))
    spec = DatasetSpec("tiny_pairs", "folder", lambda a: _Pairs(Path(a.data_dir)), ("test",),
                       "five captioned squares", ("retrieval",), layout="pairs.json, images",
                       captions=lambda base: base.per_image)
    monkeypatch.setitem(registry.DATASETS, "tiny_pairs", spec)  # the only change anywhere
    assert registry.name_or_path("tiny_pairs", "retrieval")[0] == "tiny_pairs"
    # notebook 02's retrieval cell, its captions_file naming the new set
    evalset = evalsets.classification_set("synthetic", n_images=3)
    cs = evalsets.caption_set("tiny_pairs", evalset=evalset, n_images=0, image_size=64, seed=0,
                              data_dir=str(tmp_path / "{dataset}"))
    assert cs.kind == "folder" and len(cs.dataset) == 5
    assert cs.captions == [c for caps in captions for c in caps]
    np.testing.assert_array_equal(cs.text_to_image, [0, 1, 1, 2, 3, 3, 4])
    # a seeded subset keeps every caption of each image kept, at its position in the subset
    sub = evalsets.caption_set("tiny_pairs", n_images=2, seed=1, data_dir=str(root))
    rows = sub.dataset.indices
    assert len(rows) == 2 and len(sub.captions) == sum(len(captions[r]) for r in rows)
    for caption, k in zip(sub.captions, sub.text_to_image):
        assert caption in captions[rows[k]]
        assert np.asarray(sub.dataset[k][0])[0, 0, 0] == 40 * rows[k]


def test_subset_identity_and_bounds():
    base = evalsets.classification_set("digits", n_images=0).dataset
    a, b = Subset(base, [0, 1]), Subset(base, [0, 2])
    assert a.identity != b.identity and a.identity["of"] == base.identity
    with pytest.raises(ValueError, match="indices"):
        Subset(base, [len(base)])


def test_val_transform_at_another_size():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    img = Image.new("RGB", (100, 80), (255, 0, 0))
    assert evalsets.val_transform(model)(img).shape == (3, 64, 64)
    x = evalsets.val_transform(model, 48)(img)
    assert x.shape == (3, 48, 48)
    # OpenAI normalization of pure red
    assert torch.allclose(x[:, 0, 0], torch.tensor([(1 - 0.48145466) / 0.26862954,
                                                    -0.4578275 / 0.26130258,
                                                    -0.40821073 / 0.27577711]), atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        evalsets.val_transform(model, 8)


def test_image_batch_cycles_and_transforms():
    es = evalsets.classification_set("synthetic", n_images=3, image_size=32)
    def to_tensor(im):
        return torch.from_numpy(np.array(im)).permute(2, 0, 1)
    x = evalsets.image_batch(es.dataset, 5, to_tensor)
    assert x.shape == (5, 3, 32, 32)
    assert torch.equal(x[3], x[0]) and not torch.equal(x[1], x[0])
    with pytest.raises(ValueError, match="n=0"):
        evalsets.image_batch(es.dataset, 0, lambda im: im)
