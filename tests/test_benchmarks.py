"""CLIP_benchmark's datasets by name (unirepclip/data/benchmarks.py, through the registry).

Tiny datasets are written here in the real on-disk formats (CIFAR-10's pickled batches, MNIST's
idx files, an ImageNet-R folder of WordNet ids, COCO's caption JSON, Flickr30k's Karpathy lines),
loaded by name, checked against what was written and scored with the demo model. Every test runs
with the network and subprocesses blocked, so a loader that tried to download would fail it.
"""
from __future__ import annotations

import ast
import inspect
import json
import pickle
import socket
import struct
import subprocess
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import unirepclip
from unirepclip.data import registry, sets
from unirepclip.data.benchmarks import (BENCHMARKS, BenchmarkNotFound, benchmark_names,
                                        clip_benchmark_json)

BENCHMARK_NAMES = ("cifar10", "cifar100", "stl10", "food101", "pets", "flowers", "cars",
                   "fgvc_aircraft", "dtd", "eurosat", "gtsrb", "sun397", "country211", "fer2013",
                   "pcam", "renderedsst2", "resisc45", "voc2007", "caltech101", "mnist",
                   "imagenet1k", "imagenetv2", "imagenet_sketch", "imagenet-a", "imagenet-r",
                   "objectnet", "mscoco_captions", "flickr30k")


class NetworkAttempt(BaseException):
    """Not an Exception: no loader's ``except`` (nor the wrapper's) can swallow it."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket connection, subprocess (wget, kaggle, unzip) or URL open fails the test."""
    import clip_benchmark.datasets.builder as builder

    def refuse(*args, **kwargs):
        raise NetworkAttempt(f"network or subprocess attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "call", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(builder, "call", refuse)  # bound by `from subprocess import call`


def _rgb(i: int, side: int = 8) -> np.ndarray:
    """A distinct solid-ish image per index (pixel values identify the row)."""
    a = np.zeros((side, side, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = (7 * i) % 256, (13 * i + 5) % 256, (i * 29 + 11) % 256
    return a


# ---- writers of the real formats ----------------------------------------------------------------
def write_cifar10(root, n_test=12, n_train=10):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    labels = {"test_batch": [(3 * i) % 10 for i in range(n_test)]}
    for k in range(1, 6):
        labels[f"data_batch_{k}"] = [(i + k) % 10 for i in range(n_train)]
    images = {}
    for b, (f, lab) in enumerate(labels.items()):
        imgs = np.stack([_rgb(100 * b + i, 32) for i in range(len(lab))])
        images[f] = imgs
        with open(d / f, "wb") as fh:  # CIFAR stores rows as 3072 channel-major bytes
            pickle.dump({"data": imgs.transpose(0, 3, 1, 2).reshape(len(lab), -1),
                         "labels": lab}, fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names}, fh)
    return labels, images


def write_mnist(root, n=9):
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True)
    imgs = np.stack([np.full((28, 28), 20 * i, np.uint8) for i in range(n)])
    labels = np.asarray([(2 * i + 1) % 10 for i in range(n)], np.uint8)
    for split in ("t10k", "train"):
        (d / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28)
                                                       + imgs.tobytes())
        (d / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n)
                                                       + labels.tobytes())
    return labels, imgs


def _builder_set(variable: str):
    """A WordNet-id list that CLIP_benchmark's builder keeps inside build_dataset, read from its
    source (it is not importable), so the test uses the benchmark's own list."""
    import clip_benchmark.datasets.builder as builder

    for node in ast.walk(ast.parse(inspect.getsource(builder))):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == variable:
            return sorted(ast.literal_eval(node.value))
    raise LookupError(variable)


def write_imagenet_r(root):
    wnids = _builder_set("imagenet_r_wnids")
    for k, w in enumerate(wnids):
        (root / w).mkdir(parents=True)
        Image.fromarray(_rgb(k)).save(root / w / f"img_{k}.png")
    return wnids


def write_coco(root, n=5):
    (root / "val2014").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        name = f"COCO_val2014_{i:012d}.jpg"
        Image.fromarray(_rgb(i, 16)).save(root / "val2014" / name, quality=95)
        images.append({"id": 100 + i, "file_name": name, "height": 16, "width": 16})
        for j in range(1 + i % 2):  # images with one and with two captions
            anns.append({"id": 10 * i + j, "image_id": 100 + i, "caption": f"image {i} text {j}"})
    (root / "coco_test_karpathy.json").write_text(json.dumps({"images": images,
                                                              "annotations": anns}))
    return {100 + i: [a["caption"] for a in anns if a["image_id"] == 100 + i] for i in range(n)}


def write_flickr(root, n=4):
    root.mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    for i in range(n):
        Image.fromarray(_rgb(i, 16)).save(root / f"{1000 + i}.jpg", quality=95)
        lines += [f"{1000 + i}.jpg,a picture, number {i}", f"{1000 + i}.jpg,second of {i}"]
    (root / "flickr30k_test_karpathy.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def cifar_ok(monkeypatch):
    # torchvision md5-checks CIFAR's files against the real release; the tiny batches here are
    # in its format but not its bytes, so only that check is bypassed
    import os

    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    model = unirepclip.create_model("UniRepLKNet-Demo").eval()
    return model, unirepclip.get_tokenizer("UniRepLKNet-Demo"), sets.val_transform(model)


# ---- the table --------------------------------------------------------------------------------
def test_every_clip_benchmark_name_is_in_the_resolver():
    assert set(BENCHMARK_NAMES) == set(BENCHMARKS)
    assert set(BENCHMARK_NAMES) <= set(registry.dataset_names())
    assert registry.dataset_names()[:4] == ("synthetic", "imagefolder", "digits", "skimage")
    assert set(benchmark_names("retrieval")) == {"mscoco_captions", "flickr30k"}


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_empty_root_gives_the_expected_layout_in_one_line(tmp_path, name):
    with pytest.raises(BenchmarkNotFound) as e:
        registry.load_dataset(name, data_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"dataset={name!r}" in msg and BENCHMARKS[name].layout in msg
    assert str(tmp_path) in msg
    with pytest.raises(BenchmarkNotFound, match="no such folder"):
        registry.load_dataset(name, data_dir=str(tmp_path / "absent"))
    with pytest.raises(BenchmarkNotFound, match="needs data_dir"):
        registry.load_dataset(name)


def test_dataset_placeholder_in_data_dir(tmp_path, cifar_ok):
    labels, _ = write_cifar10(tmp_path / "cifar10")
    ds = registry.load_dataset("cifar10", data_dir=str(tmp_path / "{dataset}"))
    assert list(ds.targets) == labels["test_batch"]


# ---- three formats load by name, labels and pixels as written ------------------------------------
def test_cifar10_batches_load_with_clip_benchmark_vocabulary(tmp_path, cifar_ok):
    labels, images = write_cifar10(tmp_path)
    ds = registry.load_dataset("cifar10", data_dir=str(tmp_path))
    assert len(ds) == 12 and list(ds.targets) == labels["test_batch"]
    for i in (0, 7):
        img, y = ds[i]
        assert y == labels["test_batch"][i]
        np.testing.assert_array_equal(np.asarray(img), images["test_batch"][i])
    assert ds.classes[:2] == ["airplane", "automobile"]  # torchvision's meta file
    raw = clip_benchmark_json("templates")["cifar10"]
    assert ds.templates == [t.replace("{c}", "{}") for t in raw]
    ev = sets.classification_set("cifar10", n_images=0, data_dir=str(tmp_path))
    assert ev.main_task == "cifar10"
    np.testing.assert_array_equal(ev.tasks["cifar10"].labels, labels["test_batch"])


def test_carved_val_is_disjoint_from_train(tmp_path, cifar_ok):
    labels, _ = write_cifar10(tmp_path)
    train = registry.load_dataset("cifar10", "train", data_dir=str(tmp_path), seed=3)
    val = registry.load_dataset("cifar10", "val", data_dir=str(tmp_path), seed=3)
    assert len(val) == 10 and len(train) == 40  # 20% of 5 batches of 10
    assert not set(train.indices) & set(val.indices)
    assert sorted(set(train.indices) | set(val.indices)) == list(range(50))
    everything = sum((labels[f"data_batch_{k}"] for k in range(1, 6)), [])
    assert [val[i][1] for i in range(len(val))] == [everything[j] for j in val.indices]
    sub = registry.load_dataset("cifar10", "train", n=7, data_dir=str(tmp_path), seed=3)
    assert len(sub) == 7 and set(sub.indices) <= set(train.indices)  # rows of the one train set
    assert registry.base_dataset(sub) is not sub and not hasattr(registry.base_dataset(sub),
                                                                  "indices")


def test_mnist_idx_files_load_without_any_patch(tmp_path):
    labels, imgs = write_mnist(tmp_path)
    ds = registry.load_dataset("mnist", data_dir=str(tmp_path))
    assert list(ds.targets) == labels.tolist()
    img, y = ds[4]
    assert y == labels[4] and img.mode == "RGB" and np.asarray(img)[0, 0, 0] == imgs[4, 0, 0]
    assert ds.classes == clip_benchmark_json("classnames")["mnist"]


def test_imagenet_r_has_its_200_classes_named_from_imagenet(tmp_path):
    wnids = write_imagenet_r(tmp_path)
    ds = registry.load_dataset("imagenet-r", data_dir=str(tmp_path))
    all_wnids = _builder_set("all_imagenet_wordnet_ids")
    names = clip_benchmark_json("classnames")["imagenet1k"]
    assert len(ds) == 200 and len(ds.classes) == 200
    for k in (0, 57, 199):  # image k lies in folder wnids[k]: class k, ImageNet's name of it
        assert ds[k][1] == k
        assert ds.classes[k] == names[all_wnids.index(wnids[k])]
    assert ds.templates == [t.replace("{c}", "{}")
                            for t in clip_benchmark_json("templates")["imagenet1k"]]
    (tmp_path / wnids[3] / f"img_3.png").unlink()
    (tmp_path / wnids[3]).rmdir()
    with pytest.raises(BenchmarkNotFound, match="199 class folders for the 200 classes"):
        registry.load_dataset("imagenet-r", data_dir=str(tmp_path))


def test_imagenet1k_val_folder_is_named_in_wordnet_order(tmp_path):
    wnids = _builder_set("all_imagenet_wordnet_ids")
    for k, w in enumerate(wnids):
        (tmp_path / "val" / w).mkdir(parents=True)
        Image.fromarray(_rgb(k)).save(tmp_path / "val" / w / f"img_{k}.png")
    ds = registry.load_dataset("imagenet1k", data_dir=str(tmp_path))
    names = clip_benchmark_json("classnames")["imagenet1k"]
    assert len(ds) == 1000 and ds.classes == names
    assert [ds[i][1] for i in (0, 281, 999)] == [0, 281, 999]
    assert names[281] == "tabby cat"  # sorted WordNet ids are ImageNet's class order


def test_coco_captions_by_name_for_retrieval(tmp_path):
    truth = write_coco(tmp_path)
    cs = sets.caption_set("mscoco_captions", n_images=0, data_dir=str(tmp_path))
    assert len(cs.dataset) == 5 and len(cs.captions) == sum(len(c) for c in truth.values())
    for caption, image in zip(cs.captions, cs.text_to_image):
        assert caption in truth[100 + int(image)]
    sub = sets.caption_set("mscoco_captions", n_images=3, seed=1, data_dir=str(tmp_path))
    for caption, k in zip(sub.captions, sub.text_to_image):  # positions in the subset
        assert caption in truth[100 + int(sub.dataset.indices[k])]
    with pytest.raises(ValueError, match="captions_file='mscoco_captions'"):
        sets.classification_set("mscoco_captions", n_images=0, data_dir=str(tmp_path))


def test_flickr30k_karpathy_lines(tmp_path):
    write_flickr(tmp_path)
    cs = sets.caption_set("flickr30k", n_images=0, data_dir=str(tmp_path))
    assert len(cs.dataset) == 4 and len(cs.captions) == 8
    assert "a picture, number 2" in cs.captions  # a caption holding a comma


def test_a_benchmark_refuses_a_classnames_file(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match="classnames_file='imagenet'"):
        registry.load_dataset("mnist", data_dir=str(tmp_path), classnames_file="imagenet")


# ---- scored with the demo model ------------------------------------------------------------------
def test_benchmarks_score_with_the_demo_model(tmp_path, demo, cifar_ok):
    from unirepclip import features
    from unirepclip.eval import retrieval, zeroshot

    model, tok, tf = demo
    write_cifar10(tmp_path / "cifar10")
    write_coco(tmp_path / "mscoco_captions")
    root = str(tmp_path / "{dataset}")
    ev = sets.classification_set("cifar10", n_images=0, data_dir=root)
    feats = features.extract_image_features(model, ev.dataset, transform=tf, progress=False)
    clf = zeroshot.build_task_classifiers(model, tok, ev.tasks, max_templates=2, progress=False)
    rep = zeroshot.evaluate_tasks(feats.embeddings, feats.indices, ev.tasks, clf)["cifar10"]
    # brute force: the images and CLIP's prompt ensemble (mean of the normalized prompt
    # embeddings of the first two CLIP_benchmark templates) encoded here by hand
    norm = torch.nn.functional.normalize
    task = ev.tasks["cifar10"]
    with torch.no_grad():
        emb = norm(model.encode_image(torch.stack([tf(ev.dataset[i][0]) for i in range(12)])), dim=-1)
        cols = [norm(norm(model.encode_text(tok([t.format(c) for t in task.templates[:2]])),
                          dim=-1).mean(0), dim=0) for c in task.classnames]
    pred = (emb @ torch.stack(cols, 1)).argmax(1).numpy()
    assert rep["n_samples"] == 12
    assert rep["acc1"] == pytest.approx(np.mean(pred == ev.tasks["cifar10"].labels))
    cs = sets.caption_set("mscoco_captions", n_images=0, data_dir=root)
    img = features.extract_image_features(model, cs.dataset, transform=tf, progress=False)
    txt = features.extract_text_features(model, tok, cs.captions, progress=False)
    rec = retrieval.evaluate(img.embeddings, txt.embeddings, cs.text_to_image, ks=(1, 5))
    assert 0.0 <= rec["text_to_image"]["r1"] <= rec["text_to_image"]["r5"] == 1.0  # 5 images


def test_probe_dataset_takes_a_benchmark_name(tmp_path, cifar_ok):
    from unirepclip.eval import linear_probe

    write_cifar10(tmp_path)
    assert "cifar10" in linear_probe.PROBE_DATASETS and "imagenet-r" not in \
        linear_probe.PROBE_DATASETS
    pd = linear_probe.probe_dataset("cifar10", n_train=0, n_val=0, n_test=5, data_dir=str(tmp_path))
    assert [len(pd.splits[s]) for s in ("train", "val", "test")] == [40, 10, 5]
    assert len(pd.classnames) == 10 and pd.templates[0] == "a photo of a {}."
    with pytest.raises(ValueError, match="imagenet-r"):
        linear_probe.probe_dataset("imagenet-r", n_train=0, n_val=0, n_test=0,
                                   data_dir=str(tmp_path))
