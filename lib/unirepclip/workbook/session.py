"""What every notebook does first: style, seed, threads, the report folder, and the model its
parameters name.

Notebook parameters shared by all notebooks (the runner's profiles set them):

* ``model_name``: a registered config (``UniRepLKNet-Demo``, ``CLIP-UniRepLKNet-L`` ...) or a JSON path;
* ``checkpoint``: ``"demo"`` for the checkpoint shipped with the package, ``""`` for random weights,
  else a file path or ``hf-hub:<repo>[/<file>]``;
* ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``), ``precision`` (``"fp32"`` or ``"bf16"``, autocast);
* ``seed``, ``num_threads``, ``output_dir``, ``results_path``.

A notebook's common first cell is one call: ``lm = workbook.setup(**the parameters)``; it opens
the notebook's results recorder (``lm.results``, :class:`unirepclip.workbook.results.Recorder`),
through which the notebook records its numbers and saves its figures.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from unirepclip.features import FeatureCache, model_identity
from unirepclip.models.factory import create_model, create_model_and_transforms, get_tokenizer
from unirepclip.models.inspection import is_inference_form
from unirepclip.models.pretrained import resolve_checkpoint
from unirepclip.utils import check_precision, resolve_device, set_seed
from unirepclip.viz import style
from unirepclip.workbook.results import Recorder, session_output_dir

__all__ = ["Loaded", "load", "setup"]


@dataclasses.dataclass
class Loaded:
    """The model of a notebook and what goes with it: how it was loaded (``checkpoint`` resolved,
    ``deploy``, ``channels_last``), how it runs (``device``, ``precision``) and the notebook's
    results recorder (``results``, in memory unless :func:`setup` opened one for a report)."""
    model: Any
    preprocess: Any
    preprocess_train: Any
    tokenizer: Any
    device: torch.device
    precision: str
    checkpoint: Optional[str]
    model_name: str
    deploy: bool = False
    channels_last: bool = False
    results: Recorder = dataclasses.field(default_factory=Recorder)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def describe(self) -> str:
        """One line for the notebook: model, device, precision, resolution, form."""
        form = "inference" if is_inference_form(self.model) else "training"
        return (f"{self.model_name} on {self.device}, precision {self.precision}, "
                f"{self.image_size} px, {form} form")

    @functools.cached_property
    def identity(self) -> Dict[str, Any]:
        """:func:`unirepclip.features.model_identity` of the model, hashed once for every
        extraction (the feature cache's key)."""
        return model_identity(self.model)

    def compute_kwargs(self, batch_size: int) -> Dict[str, Any]:
        """The keywords of every function that runs the model in batches (ERF, extraction):
        ``batch_size``, ``device``, ``precision``, and progress bars where the work is long (off
        on the CPU, where the demo takes seconds)."""
        return {"batch_size": batch_size, "device": self.device, "precision": self.precision,
                "progress": self.device.type != "cpu"}

    def encode_kwargs(self, batch_size: int, *, num_workers: int = 0, cache_dir: str = "",
                      identity: bool = True) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """``(image keywords, text keywords)`` for
        :func:`unirepclip.features.extract_image_features`,
        :func:`~unirepclip.features.extract_text_features` and the evaluations that pass them on:
        :meth:`compute_kwargs`, one :class:`~unirepclip.features.FeatureCache` on ``cache_dir``
        (none for ``""``) and, with ``identity``, the model's :attr:`identity`; the images' also
        ``num_workers``. ``identity=False`` where each tower brings its own (the probes)."""
        shared = self.compute_kwargs(batch_size)
        shared["cache"] = FeatureCache(cache_dir) if cache_dir else None
        if identity:
            shared["model_ident"] = self.identity
        return {**shared, "num_workers": num_workers}, dict(shared)

    def training_form(self) -> Any:
        """The model in its training form (the branches re-parameterization folds): the model
        itself when it is in that form, else the same checkpoint loaded again with
        ``deploy=False`` on the same device (a fold cannot be undone)."""
        if not is_inference_form(self.model):
            return self.model
        return load(self.model_name, self.checkpoint, device=str(self.device),
                    precision=self.precision).model

    def random_tower(self, seed: int) -> Any:
        """The same architecture at a random initialization (the random-tower baseline), in the
        model's form, device and memory format. ``set_seed(seed)`` comes first, so it depends on
        the seed alone, not on what ran before (it reseeds the process's generators)."""
        set_seed(seed)
        model = create_model(self.model_name, device=self.device, deploy=self.deploy,
                             load_weights=False)  # a local-dir:/hf-hub: model's own too
        if self.channels_last:
            model.visual.to(memory_format=torch.channels_last)
        return model


def load(model_name: str, checkpoint: Optional[str] = "demo", *, device: str = "auto",
         precision: str = "fp32", deploy: bool = False, channels_last: bool = False,
         force_image_size: Optional[int] = None) -> Loaded:
    """Load the model a notebook's parameters name; weights stay fp32, ``precision`` is autocast."""
    check_precision(precision)  # before the model loads, not after
    dev = resolve_device(device)
    ckpt = resolve_checkpoint(checkpoint, str(model_name))
    model, pre_train, pre_val = create_model_and_transforms(
        model_name, pretrained=ckpt, device=dev, force_image_size=force_image_size,
        deploy=deploy)
    if channels_last:
        model.visual.to(memory_format=torch.channels_last)
    return Loaded(model, pre_val, pre_train, get_tokenizer(model_name), dev, precision, ckpt,
                  str(model_name), deploy=deploy, channels_last=channels_last)


@dataclasses.dataclass(frozen=True)
class SetupOptions:
    """What a notebook's first cell passes to :func:`setup`: its parameters of the same names."""

    model_name: str
    checkpoint: Optional[str] = "demo"
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    output_dir: Optional[str] = None
    results_path: Optional[str] = None
    num_threads: int = 0
    deploy: bool = False
    channels_last: bool = False
    blas_threads: bool = False


def setup(**parameters: Any) -> Loaded:
    """The common first cell of every notebook (its parameters by name, :class:`SetupOptions`):
    the figure style, the seed, the CPU threads (``num_threads`` > 0; ``blas_threads=True`` caps
    BLAS's too), the results recorder for the report folder (``lm.results``; a notebook run by
    hand, with the notebooks' default ``output_dir``, writes to a temporary folder instead:
    :func:`~unirepclip.workbook.results.session_output_dir`), then the model."""
    try:
        o = SetupOptions(**parameters)
    except TypeError as e:
        names = ", ".join(SetupOptions.__dataclass_fields__)
        raise TypeError(f"workbook.setup: {e} (it takes {names})") from None
    style.use_style()
    set_seed(o.seed)
    folder = session_output_dir(o.output_dir)
    if o.output_dir is not None and folder != Path(o.output_dir):
        print(f"output_dir is the notebooks' default ({o.output_dir!r}: a notebook run by hand): "
              f"this session's figures go to {folder}; `make reports` writes the report")
    recorder = Recorder(folder, o.results_path or None)
    if o.num_threads:
        torch.set_num_threads(o.num_threads)
        if o.blas_threads:
            from threadpoolctl import threadpool_limits
            threadpool_limits(o.num_threads)  # small L-BFGS fits stall on a shared machine
    lm = load(o.model_name, o.checkpoint, device=o.device, precision=o.precision,
              deploy=o.deploy, channels_last=o.channels_last)
    lm.results = recorder
    return lm
