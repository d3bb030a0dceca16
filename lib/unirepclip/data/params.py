"""The notebook parameters the data layer gives meaning to (see :mod:`unirepclip.vocab`): which
dataset, where its files are, which captions and class names. The names come from the one dataset
table (:mod:`unirepclip.data.registry`), so a dataset registered there is accepted here with no
other change."""
from __future__ import annotations

from typing import Tuple

from unirepclip.vocab import Param, Range

__all__ = ["PARAMETERS", "dataset_choices", "retrieval_choices", "vocabulary_choices"]


def dataset_choices() -> Tuple[str, ...]:
    """Every registered dataset name (:func:`unirepclip.data.registry.dataset_names`)."""
    from unirepclip.data.registry import dataset_names
    return dataset_names()


def retrieval_choices() -> Tuple[str, ...]:
    """The registered names a ``captions_file`` may give instead of a file (retrieval sets)."""
    from unirepclip.data.registry import dataset_names
    return dataset_names(task="retrieval")


def vocabulary_choices() -> Tuple[str, ...]:
    """The class-name vocabularies a ``classnames_file`` may name instead of a file."""
    from unirepclip.data.registry import vocabulary_names
    return vocabulary_names()


PARAMETERS: Tuple[Param, ...] = (
    Param("dataset", "str", "a registered dataset name (synthetic, digits, imagefolder, skimage, "
          "a CLIP_benchmark name)", Range(names=dataset_choices)),
    Param("extra_datasets", "list", "further datasets probed the same way",
          Range(names=dataset_choices, items=True)),
    Param("zeroshot_datasets", "list", "datasets (results names) whose class names the text "
          "tower knows"),
    Param("data_dir", "Optional[str]", "the dataset's folder ('{dataset}' stands for its name)",
          Range(path="dir", empty="none needed")),
    Param("captions_file", "Optional[str]", "a CSV/JSONL of image-caption pairs, or a registered "
          "retrieval set read from data_dir",
          Range(names=retrieval_choices, path="file", empty="the dataset's own captions")),
    Param("classnames_file", "str", "a file of class names (one a line), or a registered "
          "vocabulary", Range(names=vocabulary_choices, path="file", empty="the folder names")),
    Param("cue_conflict_dir", "str", "the model-vs-human cue-conflict folder (<class>/<image>)",
          Range(path="dir", empty="skipped")),
)


def sugar_crepe_tasks() -> Tuple[str, ...]:
    """SugarCrepe's seven tasks (:data:`unirepclip.data.compositional.SUGAR_CREPE_TASKS`)."""
    from unirepclip.data.compositional import SUGAR_CREPE_TASKS
    return SUGAR_CREPE_TASKS


PARAMETERS += (
    Param("n_binding_images", "int", "two-object images of the binding test (each gives one "
          "item per category)", Range(low=1)),
    Param("binding_image_size", "int", "side (px) the binding test's images are rendered at",
          Range(low=16)),
    Param("sugar_crepe_root", "str", "SugarCrepe in CLIP_benchmark's layout (<root>/val2017, "
          "<root>/<task>.json)", Range(path="dir", empty="skipped")),
    Param("sugar_crepe_tasks", "list", "SugarCrepe tasks evaluated",
          Range(names=sugar_crepe_tasks, items=True)),
    Param("winoground_root", "str", "Winoground's release (<root>/examples.jsonl, <root>/images)",
          Range(path="dir", empty="skipped")),
    Param("datacomp_root", "str", "the DataComp suite's CLIP_benchmark webdataset folders "
          "(<root>/wds_<task>_test)", Range(path="dir", empty="skipped")),
)
