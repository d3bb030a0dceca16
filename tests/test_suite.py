"""The DataComp 38-task suite: task names against open_clip's table, main metrics and folders by
hand, the metrics on tiny fake data against hand-computed values, the average and the
like-for-like comparison, CLIP_benchmark's webdataset layout built on disk and read back, and a
tiny suite run end to end whose figures equal CLIP_benchmark's own evaluation of the same
shards."""
from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unirepclip.data import suite as sd
from unirepclip.data import wds
from unirepclip.data.published import AVERAGE_COLUMN, RESULTS_FILE, PublishedResult
from unirepclip.eval import suite as es


def test_the_38_tasks_are_the_tables_columns_in_order():
    header = next(csv.reader(RESULTS_FILE.open()))
    columns = header[header.index(AVERAGE_COLUMN) + 1:]
    assert len(columns) == 38 == len(sd.TASKS)
    assert [t.column for t in sd.TASKS] == columns


def test_main_metrics_and_folders_as_datacomp_names_them():
    by = {t.column: t.metric for t in sd.TASKS}
    assert {c for c, m in by.items() if m == "mean_per_class_recall"} == {
        "Caltech-101", "FGVC Aircraft", "Oxford Flowers-102", "Oxford-IIIT Pet"}
    assert {c for c, m in by.items() if m == "mean_recall@1"} == {"Flickr", "MSCOCO"}
    assert (by["WinoGAViL"], by["iWildCam"], by["FMoW"], by["Dollar Street"], by["GeoDE"]) == (
        "jaccard_score_10-12", "F1-macro_all", "acc_worst_region", "acc_top5_wg", "acc_wg")
    assert sum(m == "acc1" for m in by.values()) == 38 - 11
    assert sd.TASK_BY_KEY["vtab/pets"].column == "Oxford-IIIT Pet"
    assert sd.TASK_BY_KEY["vtab/pets"].folder == "wds_vtab-pets_test"
    assert sd.TASK_BY_KEY["fairness/dollar_street"].folder == "wds_dollar_street_test"
    assert sd.TASK_BY_KEY["wilds/fmow"].folder == "wds_wilds-fmow_test"
    assert sd.TASK_BY_KEY["imagenet1k"].folder == "wds_imagenet1k_test"


def test_worst_group_by_hand():
    correct = [1, 1, 0, 1, 0, 1]
    groups = [0, 0, 0, 2, 2, 5]
    wg = es.worst_group(correct, groups)
    assert wg["per_group"] == {0: pytest.approx(2 / 3), 2: 0.5, 5: 1.0}
    assert wg["worst"] == 0.5 and wg["counts"] == {0: 3, 2: 2, 5: 1}
    assert es.worst_group(correct, groups, exclude=[2])["worst"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="every group is excluded"):
        es.worst_group([1], [0], exclude=[0])


def _task(key):
    return sd.TASK_BY_KEY[key]


def test_dollar_street_is_the_worst_income_groups_top5():
    # 6 classes, logits descending in class order except where the label is put first
    base = np.tile(np.arange(6, 0, -1, dtype=float), (4, 1))   # top-5 = classes 0..4
    labels = [5, 0, 5, 1]     # class 5 is never in the top 5: items 0 and 2 miss
    income = np.array([[0, 9, 1], [0, 9, 1], [3, 9, 2], [3, 9, 2]])
    m = es.classification_metrics(_task("fairness/dollar_street"), base, labels, income)
    # income group 0: items 0 (miss), 1 (hit) -> 0.5; group 3: items 2 (miss), 3 (hit) -> 0.5
    assert m["acc_top5_wg"] == 0.5 == m["main"]
    income[1, 0] = 3          # group 0: item 0 only (0.0); group 3: items 1-3 (2/3)
    m = es.classification_metrics(_task("fairness/dollar_street"), base, labels, income)
    assert m["acc_top5_wg"] == 0.0 and m["per_group"][3] == pytest.approx(2 / 3)
    assert m["acc1"] == 0.25 and m["acc5"] == 0.5


def test_geode_and_fmow_worst_group_top1():
    logits = np.eye(3)[[0, 1, 2, 0, 1]]
    labels = [0, 1, 0, 0, 2]          # right, right, wrong, right, wrong
    meta = np.array([[1, 7], [1, 7], [4, 2], [4, 2], [4, 2]])
    m = es.classification_metrics(_task("fairness/geode"), logits, labels, meta)
    assert m["acc_wg"] == pytest.approx(1 / 3) and m["per_group"][1] == 1.0
    assert m["acc5"] is None  # fewer than 5 classes
    fmow = es.classification_metrics(_task("wilds/fmow"), logits, labels, meta[:, [0, 1, 1]])
    assert fmow["acc_worst_region"] == pytest.approx(1 / 3) and fmow["acc1"] == 0.6
    with pytest.raises(ValueError, match="GeoDE: its main metric acc_wg needs"):
        es.classification_metrics(_task("fairness/geode"), logits, labels)


def test_macro_f1_and_mean_per_class_recall_by_hand():
    logits = np.eye(2)[[0, 1, 1, 1]]
    labels = [0, 0, 1, 1]
    m = es.classification_metrics(_task("wilds/iwildcam"), logits, labels)
    # class 0: P 1, R 1/2, F1 2/3; class 1: P 2/3, R 1, F1 4/5
    assert m["F1-macro_all"] == pytest.approx((2 / 3 + 4 / 5) / 2) == m["main"]
    labels = [0, 0, 0, 1]
    logits = np.eye(2)[[0, 0, 1, 1]]
    m = es.classification_metrics(_task("vtab/pets"), logits, labels)
    assert m["main"] == pytest.approx((2 / 3 + 1) / 2) and m["acc1"] == 0.75


def test_retrieval_mean_recall_by_hand():
    images = np.eye(3)[:2]                          # two images
    texts = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0]], float)  # captions of 0, 1, 1
    owner = [0, 1, 1]
    r = es.retrieval_mean_recall_at_1(images, texts, owner)
    # texts -> images: caption 1 (0.6, 0.8) picks image 1: all three right
    assert r["image_retrieval_recall@1"] == 1.0
    # images -> texts: image 0's best caption is 0 (1.0 vs 0.6): right; image 1's is 2: right
    assert r["text_retrieval_recall@1"] == 1.0
    texts[1] = [0.8, 0.6, 0]                        # now caption 1 picks image 0: wrong
    r = es.retrieval_mean_recall_at_1(images, texts, owner)
    assert r["image_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert r["mean_recall@1"] == pytest.approx((2 / 3 + 1) / 2)


def test_winogavil_jaccard_by_hand():
    s10 = np.arange(10, dtype=float)                # the top 3 are candidates 7, 8, 9
    t10 = np.zeros(10, bool)
    t10[[9, 8, 0]] = True                           # 2 of 3 right: |{8,9}| / |{0,7,8,9}| = 0.5
    s5 = np.arange(5, dtype=float)
    t5 = np.zeros(5, bool)
    t5[[4, 3]] = True                               # both right: 1.0
    r = es.winogavil_jaccard([s10, s5], [t10, t5])
    assert r["jaccard_score_10-12"] == 0.5 and r["jaccard_score_5-6"] == 1.0
    assert r["avg_jaccard_score"] == 0.75


def test_the_average_is_partial_and_lists_what_is_missing():
    a = es.suite_average({"ImageNet 1k": 0.8, "GeoDE": 0.5, "MNIST": None})
    assert a["average"] == pytest.approx(0.65) and a["n_tasks"] == 2 and a["partial"]
    assert len(a["missing"]) == 36 and a["missing"][0] == "Caltech-101"
    assert "MNIST" in a["missing"] and "GeoDE" not in a["missing"]
    full = es.suite_average({t.column: 0.5 for t in sd.TASKS})
    assert not full["partial"] and full["missing"] == [] and full["average"] == 0.5
    with pytest.raises(ValueError, match=r"\['Imagenet'\] are not task columns"):
        es.suite_average({"Imagenet": 0.1})


def test_like_for_like_leaves_out_failed_upstream_and_missing_here():
    tasks = tuple((t.column, 0.5) for t in sd.TASKS)
    tasks = tuple((c, 0.0 if c == "GeoDE" else 0.9 if c == "MNIST" else v) for c, v in tasks)
    row = PublishedResult("m", "tag", 1.0, 1.0, 0.49, tasks, 4)
    c = es.compare_with_published({"MNIST": 0.7, "GeoDE": 0.4, "SVHN": 0.2}, row)
    assert c["failed_upstream"] == ["GeoDE"] and c["n_both"] == 2
    assert c["ours_like_for_like"] == pytest.approx(0.45)        # MNIST, SVHN
    assert c["published_like_for_like"] == pytest.approx(0.7)    # 0.9, 0.5
    geode = [r for r in c["rows"] if r["task"] == "GeoDE"][0]
    assert geode == {"task": "GeoDE", "ours": 0.4, "published": "failed"}
    assert c["published_average"] == 0.49
    rec = es.peer_records("s.peers", c)
    assert rec == {"s.peers.m_tag.n_both": 2, "s.peers.m_tag.ours_like_for_like": pytest.approx(0.45),
                   "s.peers.m_tag.published_like_for_like": pytest.approx(0.7),
                   "s.peers.m_tag.failed_upstream": ["GeoDE"],
                   "s.peers.m_tag.published_average": 0.49}
    assert "| m tag | 2 | 45.0 | 70.0 | GeoDE | 49.0 |" in es.peer_table([c])


# -- CLIP_benchmark's webdataset layout on disk ---------------------------------------------------

COLOURS = [(220, 30, 30), (30, 60, 220), (30, 180, 60)]


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(colour, size=32):
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def write_wds(folder: Path, samples, *, classes=None, templates=None, kind=None, per_shard=3):
    """samples: [{field: bytes}] written as CLIP_benchmark's layout, ``per_shard`` a shard."""
    (folder / "test").mkdir(parents=True)
    shards = [samples[i:i + per_shard] for i in range(0, len(samples), per_shard)]
    for s, chunk in enumerate(shards):
        with tarfile.open(folder / "test" / f"{s}.tar", "w") as tar:
            for j, sample in enumerate(chunk):
                for field, data in sample.items():
                    _add(tar, f"s{s:02d}{j:03d}.{field}", data)
    (folder / "test" / "nshards.txt").write_text(f"{len(shards)}\n")
    if classes:
        (folder / "classnames.txt").write_text("\n".join(classes) + "\n")
    if templates:
        (folder / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    if kind:
        (folder / "dataset_type.txt").write_text(kind + "\n")


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, np.asarray(a))
    return buf.getvalue()


CLASSES = ["red", "blue", "green"]
TEMPLATES = ["a photo of a {c} square.", "a {c} picture."]


@pytest.fixture(scope="module")
def suite_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datacomp")
    labels = [0, 1, 2, 0, 1, 2, 2]
    write_wds(root / "wds_vtab-pets_test",
              [{"png": _png(COLOURS[y]), "cls": str(y).encode()} for y in labels],
              classes=CLASSES, templates=TEMPLATES)
    regions = [0, 0, 1, 1, 3, 3, 3]
    write_wds(root / "wds_geode_test",
              [{"webp" if i % 2 else "png": _png(COLOURS[y]), "cls": str(y).encode(),
                "npy": _npy([r, 10 + i]), "info.json": b"{}"} for i, (y, r) in enumerate(zip(labels, regions))],
              classes=CLASSES, templates=TEMPLATES)
    captions = [["a red square", "red"], ["a blue square"], ["a green square", "green", "x"]]
    write_wds(root / "wds_retrieval-flickr30k_test",
              [{"jpg": _png(COLOURS[i]), "txt": "\n".join(c).encode()}
               for i, c in enumerate(captions)], kind="retrieval", per_shard=2)
    return root, labels, regions, captions


def test_the_reader_gives_back_what_was_written(suite_root):
    root, labels, regions, captions = suite_root
    pets = wds.read_wds(root / "wds_vtab-pets_test")
    assert pets.dataset_type == "classification" and len(pets.shards) == 3
    assert pets.classes == CLASSES and pets.templates == TEMPLATES
    got = list(pets.samples())
    assert [s["cls"] for s in got] == labels
    assert [s["image"].getpixel((5, 5)) for s in got] == [COLOURS[y] for y in labels]
    geode = list(wds.read_wds(root / "wds_geode_test").samples(["cls", "npy"]))
    assert [int(s["npy"][0]) for s in geode] == regions and "image" not in geode[0]
    whole = list(wds.read_wds(root / "wds_geode_test").samples())  # key: up to the FIRST dot
    assert len(whole) == 7 and all(s["info.json"] == b"{}" for s in whole)
    flickr = wds.read_wds(root / "wds_retrieval-flickr30k_test")
    assert flickr.dataset_type == "retrieval" and flickr.classes is None
    assert [s["txt"] for s in flickr.samples()] == captions
    assert wds.fill_template(TEMPLATES[0], "red") == "a photo of a red square."


def test_layout_errors_name_the_missing_part(tmp_path):
    with pytest.raises(wds.WdsLayoutError, match="test/nshards.txt: missing"):
        wds.read_wds(tmp_path / "nothing")
    (tmp_path / "x" / "test").mkdir(parents=True)
    (tmp_path / "x" / "test" / "nshards.txt").write_text("2")
    with pytest.raises(wds.WdsLayoutError, match=r"shards \['0.tar', '1.tar'\] missing"):
        wds.read_wds(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="datacomp_root="):
        sd.find_tasks(str(tmp_path / "none"))
    (tmp_path / "x" / "test" / "0.tar").write_bytes(b"not a tar")
    (tmp_path / "x" / "test" / "1.tar").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="0.tar: not a readable webdataset shard"):
        list(wds.read_wds(tmp_path / "x").samples())


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from unirepclip import workbook

    torch.manual_seed(0)
    return workbook.load("UniRepLKNet-Demo", "demo", device="cpu")


def test_a_tiny_suite_end_to_end_equals_clip_benchmark(suite_root, tiny_model):
    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from sklearn.metrics import balanced_accuracy_score

    root, labels, regions, captions = suite_root
    present, missing = sd.find_tasks(str(root))
    assert [t.column for t in present] == ["Oxford-IIIT Pet", "Flickr", "GeoDE"]
    assert len(missing) == 35 and "WinoGAViL" in [t.column for t in missing]
    m = tiny_model
    report = es.run_suite(m.model, m.tokenizer, str(root), batch_size=4)
    assert set(report["scores"]) == {"Oxford-IIIT Pet", "Flickr", "GeoDE"}
    assert report["average"]["partial"] and report["average"]["n_tasks"] == 3
    assert report["average"]["average"] == pytest.approx(np.mean(list(report["scores"].values())))
    # CLIP_benchmark's own evaluation of the same shards (its wds builder, its classifier)
    for key, folder in (("vtab/pets", "wds_vtab-pets_test"), ("fairness/geode", "wds_geode_test")):
        ds = build_dataset(f"wds/{key}", root=str(root / folder), transform=m.preprocess,
                           split="test", download=False)
        loader = torch.utils.data.DataLoader(ds.batched(4), batch_size=None)
        # its evaluate's own steps (its accuracy() trips over NumPy 2's float of a 1-item array)
        classifier = zsc.zero_shot_classifier(m.model, m.tokenizer, ds.classes, ds.templates,
                                              "cpu", amp=False)
        logits, target = zsc.run_classification(m.model, classifier, loader, "cpu", amp=False)
        pred = logits.argmax(axis=1)
        theirs = {"acc1": float((pred == target).float().mean()),
                  "mean_per_class_recall": balanced_accuracy_score(target, pred)}
        ours = report["details"][sd.TASK_BY_KEY[key].column]
        assert ours["acc1"] == pytest.approx(float(theirs["acc1"]))
        assert ours["mean_per_class_recall"] == pytest.approx(theirs["mean_per_class_recall"])
    pets = report["details"]["Oxford-IIIT Pet"]
    assert report["scores"]["Oxford-IIIT Pet"] == pets["mean_per_class_recall"]
    geode = report["details"]["GeoDE"]
    assert set(geode["per_group"]) == {0, 1, 3} and geode["counts"] == {0: 2, 1: 2, 3: 3}
    assert report["scores"]["GeoDE"] == min(geode["per_group"].values())
    flickr = report["details"]["Flickr"]
    assert flickr["n"] == 3 and report["scores"]["Flickr"] == flickr["mean_recall@1"]
    rec = es.suite_records("c.suite", report)
    assert rec["c.suite.tasks.vtab_pets.metric"] == "mean_per_class_recall"
    assert rec["c.suite.partial"] is True and len(rec["c.suite.missing"]) == 35
    assert "Average" in es.suite_table(report) and "missing ImageNet 1k, Caltech-101" in es.suite_table(report)
