"""The DataComp 38-task suite: its tasks by open_clip's names, their main metrics, their data.

open_clip's results table (``docs/openclip_results.csv``, shipped in
:mod:`unirepclip.data.published`) has one column per task of DataComp's evaluation suite
(Gadre et al., NeurIPS 2023). :data:`TASKS` lists the 38 in the table's order, each with

* ``column``: the table's column name (``"Oxford-IIIT Pet"``);
* ``key``: DataComp's task key in its ``tasklist.yml``, CLIP_benchmark's dataset name without
  the ``wds/`` prefix (``"vtab/pets"``);
* ``metric``: DataComp's main metric for it (``tasklist.yml``'s ``main_metric``, ``acc1``
  where it names none): ``mean_per_class_recall`` for Caltech-101, FGVC Aircraft, Flowers-102
  and Pets; ``mean_recall@1`` (the mean of text and image recall@1) for Flickr and MSCOCO;
  ``jaccard_score_10-12`` for WinoGAViL; ``F1-macro_all`` for iWildCam; ``acc_worst_region`` for
  FMoW; ``acc_top5_wg`` (the worst income group's top-5) for Dollar Street; ``acc_wg`` (the worst
  region's top-1) for GeoDE;
* ``kind``: how it is read and scored: ``classification``, ``retrieval``, ``wilds`` (a
  classification whose shards also hold per-sample metadata, ``<key>.npy``), ``fairness`` (the
  same) or ``winogavil``;
* ``folder``: where DataComp's ``download_evalsets.py`` puts its shards under the data root:
  ``wds_<key with / as ->_test`` (its ``create_webdataset``; the fairness tasks drop their
  ``fairness/`` prefix first: ``wds_dollar_street_test``).

Each folder is in CLIP_benchmark's webdataset layout (:mod:`unirepclip.data.wds`). Two kinds are
not webdatasets upstream: DataComp reads Flickr, MSCOCO and WinoGAViL through Hugging Face
``datasets`` (``nlphuji/...``). A CLIP_benchmark export of Flickr or MSCOCO (``dataset_type.txt``
saying ``retrieval``) in the folder named here is read; WinoGAViL has no webdataset form and is
always reported missing here (its metric is implemented and tested, for when it has a reader).
Torch-free.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Tuple

__all__ = ["SuiteTask", "TASKS", "TASK_BY_COLUMN", "TASK_BY_KEY", "LAYOUT", "METRICS",
           "task_folder", "find_tasks"]


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    column: str
    key: str
    metric: str = "acc1"
    kind: str = "classification"

    @property
    def folder(self) -> str:
        return task_folder(self.key)


def task_folder(key: str) -> str:
    """DataComp's folder of a task key: ``wds_<key, / as ->_test``, ``fairness/`` dropped."""
    return f"wds_{key.replace('fairness/', '').replace('/', '-')}_test"


_MPCR, _MR1 = "mean_per_class_recall", "mean_recall@1"
TASKS: Tuple[SuiteTask, ...] = (
    SuiteTask("ImageNet 1k", "imagenet1k"),
    SuiteTask("Caltech-101", "vtab/caltech101", _MPCR),
    SuiteTask("CIFAR-10", "cifar10"),
    SuiteTask("CIFAR-100", "vtab/cifar100"),
    SuiteTask("CLEVR Counts", "vtab/clevr_count_all"),
    SuiteTask("CLEVR Distance", "vtab/clevr_closest_object_distance"),
    SuiteTask("Country211", "country211"),
    SuiteTask("Describable Textures", "vtab/dtd"),
    SuiteTask("EuroSAT", "vtab/eurosat"),
    SuiteTask("FGVC Aircraft", "fgvc_aircraft", _MPCR),
    SuiteTask("Food-101", "food101"),
    SuiteTask("GTSRB", "gtsrb"),
    SuiteTask("ImageNet Sketch", "imagenet_sketch"),
    SuiteTask("ImageNet v2", "imagenetv2"),
    SuiteTask("ImageNet-A", "imagenet-a"),
    SuiteTask("ImageNet-O", "imagenet-o"),
    SuiteTask("ImageNet-R", "imagenet-r"),
    SuiteTask("KITTI Vehicle Distance", "vtab/kitti_closest_vehicle_distance"),
    SuiteTask("MNIST", "mnist"),
    SuiteTask("ObjectNet", "objectnet"),
    SuiteTask("Oxford Flowers-102", "vtab/flowers", _MPCR),
    SuiteTask("Oxford-IIIT Pet", "vtab/pets", _MPCR),
    SuiteTask("Pascal VOC 2007", "voc2007"),
    SuiteTask("PatchCamelyon", "vtab/pcam"),
    SuiteTask("Rendered SST2", "renderedsst2"),
    SuiteTask("RESISC45", "vtab/resisc45"),
    SuiteTask("Stanford Cars", "cars"),
    SuiteTask("STL-10", "stl10"),
    SuiteTask("SUN397", "sun397"),
    SuiteTask("SVHN", "vtab/svhn"),
    SuiteTask("Flickr", "retrieval/flickr30k", _MR1, "retrieval"),
    SuiteTask("MSCOCO", "retrieval/mscoco_2014_5k_test_image_text_retrieval", _MR1, "retrieval"),
    SuiteTask("WinoGAViL", "misc/winogavil", "jaccard_score_10-12", "winogavil"),
    SuiteTask("iWildCam", "wilds/iwildcam", "F1-macro_all", "wilds"),
    SuiteTask("Camelyon17", "wilds/camelyon17", "acc1", "wilds"),
    SuiteTask("FMoW", "wilds/fmow", "acc_worst_region", "wilds"),
    SuiteTask("Dollar Street", "fairness/dollar_street", "acc_top5_wg", "fairness"),
    SuiteTask("GeoDE", "fairness/geode", "acc_wg", "fairness"),
)
TASK_BY_COLUMN: Dict[str, SuiteTask] = {t.column: t for t in TASKS}
TASK_BY_KEY: Dict[str, SuiteTask] = {t.key: t for t in TASKS}
METRICS: Tuple[str, ...] = tuple(dict.fromkeys(t.metric for t in TASKS))

#: What a data root must hold (one line, for notes and errors).
LAYOUT = ("<root>/wds_<task>_test/ per task (DataComp's download_evalsets.py names, e.g. "
          "wds_vtab-pets_test, wds_dollar_street_test), each in CLIP_benchmark's webdataset "
          "layout: test/nshards.txt, test/0.tar .. test/<n-1>.tar (samples <key>.webp|png|jpg "
          "with <key>.cls, + <key>.npy metadata for WILDS and fairness tasks, or <key>.txt "
          "captions for retrieval), classnames.txt, zeroshot_classification_templates.txt, "
          "dataset_type.txt for retrieval")


def find_tasks(root: str) -> Tuple[List[SuiteTask], List[SuiteTask]]:
    """``(present, missing)``: the tasks whose folder under ``root`` holds
    ``test/nshards.txt``, and the others (WinoGAViL always: it has no webdataset form)."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"datacomp_root={root!r}: no such folder (expected {LAYOUT})")
    present = [t for t in TASKS if t.kind != "winogavil"
               and (base / t.folder / "test" / "nshards.txt").is_file()]
    return present, [t for t in TASKS if t not in present]
