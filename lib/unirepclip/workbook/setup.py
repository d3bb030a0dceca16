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
from typing import Any, Optional

import torch

from unirepclip.models.factory import create_model_and_transforms, get_tokenizer
from unirepclip.models.pretrained import resolve_checkpoint
from unirepclip.utils import check_precision, resolve_device, set_seed
from unirepclip.viz import style
from unirepclip.workbook.results import Recorder

__all__ = ["Loaded", "load", "setup"]


@dataclasses.dataclass
class Loaded:
    """The model of a notebook and what goes with it."""
    model: Any
    preprocess: Any
    preprocess_train: Any
    tokenizer: Any
    device: torch.device
    precision: str
    checkpoint: Optional[str]
    model_name: str
    results: Recorder = dataclasses.field(default_factory=Recorder)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def describe(self) -> str:
        """One line for the notebook: model, device, precision, resolution, form."""
        from unirepclip.models.inspection import is_inference_form
        form = "inference" if is_inference_form(self.model) else "training"
        return (f"{self.model_name} on {self.device}, precision {self.precision}, "
                f"{self.image_size} px, {form} form")


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
                  str(model_name))


def setup(*, model_name: str, checkpoint: Optional[str] = "demo", device: str = "auto",
          precision: str = "fp32", seed: int = 0, output_dir: Optional[str] = None,
          results_path: Optional[str] = None, num_threads: int = 0, deploy: bool = False,
          channels_last: bool = False, blas_threads: bool = False) -> Loaded:
    """The common first cell of every notebook: the figure style, the seed, the CPU threads
    (``num_threads`` > 0; ``blas_threads=True`` caps BLAS's too), the results recorder for the report
    folder (``lm.results``), then the model.
    """
    style.use_style()
    set_seed(seed)
    recorder = Recorder(output_dir, results_path or None)
    if num_threads:
        torch.set_num_threads(num_threads)
        if blas_threads:
            from threadpoolctl import threadpool_limits
            threadpool_limits(num_threads)  # small L-BFGS fits stall on a shared machine
    lm = load(model_name, checkpoint, device=device, precision=precision, deploy=deploy,
              channels_last=channels_last)
    lm.results = recorder
    return lm
