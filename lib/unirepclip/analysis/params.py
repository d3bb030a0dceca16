"""The notebook parameters the analysis layer gives meaning to (see :mod:`unirepclip.vocab`): the
effective receptive field, attribution, cost and the explorer's default queries. A stage index is
bounded by the notebook's model: four stages for UniRepLKNet, read from its config."""
from __future__ import annotations

from typing import Optional, Tuple

from unirepclip.models.params import stage_count
from unirepclip.vocab import COUNT, SIZE, SIZES, Param, Range

__all__ = ["PARAMETERS", "BASELINES", "DECISION_RULES", "ERF_MIN_RESOLUTION", "last_stage"]

#: The smallest ERF input side in pixels (the explorer's :class:`~unirepclip.analysis.explore.
#: ErfQuery` floor): every stage of the demo still gives a feature map there, of 1 x 1 from stage 1
#: on.
ERF_MIN_RESOLUTION = 8


def last_stage(model_name: str) -> Optional[int]:
    """The highest stage index of ``model_name``'s image tower (None when unknown)."""
    n = stage_count(model_name)
    return None if n is None else n - 1


_STAGE = Range(low=0, per_model=last_stage)
#: How a model decides on the cue-conflict images (:mod:`unirepclip.analysis.shape_study`).
DECISION_RULES = ("zero_shot_16", "toolbox")
#: The reference images of IG and occlusion (:func:`unirepclip.analysis.attribution.make_baseline`).
BASELINES = ("zero", "grey", "blur")

PARAMETERS: Tuple[Param, ...] = (
    # effective receptive field (analysis.erf)
    Param("n_erf_images", "int", "images averaged per ERF", SIZE),
    Param("erf_batch_size", "int", "images per forward/backward pass of the ERF", SIZE),
    Param("resolutions", "list", "input sides (px) of the ERF, the trained one first", SIZES),
    Param("stages", "list", "tower stages whose centre unit is measured",
          Range(low=0, items=True, per_model=last_stage)),
    Param("n_reparam_images", "int", "images of the training- vs inference-form check", SIZE),
    Param("erf_stage", "int", "stage of the explorer's default ERF", _STAGE),
    Param("erf_resolution", "int", "input side (px) of the explorer's default ERF",
          Range(low=ERF_MIN_RESOLUTION)),
    # attribution (analysis.attribution)
    Param("n_attr_images", "int", "synthetic test images scored against their masks", SIZE),
    Param("n_grid_images", "int", "images drawn in the overview grid", COUNT),
    Param("n_check_images", "int", "images of the IG completeness check", COUNT),
    Param("n_random_images", "int", "images of the randomization cascade", COUNT),
    Param("n_photos", "int", "photographs explained (0 skips them)", COUNT),
    Param("attr_batch_size", "int", "images per captum call", SIZE),
    Param("internal_batch_size", "int", "images per forward pass inside a method", SIZE),
    Param("ig_steps", "int", "Integrated Gradients steps", SIZE),
    Param("randomization_ig_steps", "int", "IG steps inside the randomization cascade", SIZE),
    Param("nt_samples", "int", "SmoothGrad noise samples", SIZE),
    Param("occlusion_window", "int", "occlusion window side (px)", SIZE),
    Param("occlusion_stride", "int", "occlusion stride (px)", SIZE),
    Param("ig_baseline", "str", "IG's reference image", Range(choices=BASELINES)),
    Param("occlusion_baseline", "str", "what fills an occluded window",
          Range(choices=BASELINES)),
    Param("gradcam_stage", "Union[int,str]", "Grad-CAM's stage, or 'auto' (the best measured)",
          Range(low=0, also=("auto",), per_model=last_stage)),
    # cost (analysis.cost) and the first look (analysis.first_look)
    Param("mac_resolutions", "list", "input sides (px) at which MACs are reported", SIZES),
    Param("n_samples", "int", "images in the first look at predictions", COUNT),
    Param("n_timing_images", "int", "batch size of the speed comparison", SIZE),
    Param("timing_repeats", "int", "timed repeats (the median is reported)", SIZE),
    # the explorer's default queries (analysis.explore)
    Param("top_k", "int", "hits per search, neighbours on the map", SIZE),
    Param("query_index", "int", "the gallery image of the default queries", COUNT),
    # shape bias and kernel surgery (analysis.shape_study, notebook 07)
    Param("decision_rules", "list", "how a model decides on the cue-conflict images",
          Range(choices=DECISION_RULES, items=True)),
    Param("navon_designs", "list", "candidate Navon designs [image side px, global scale, "
          "element scale]; the readable one is chosen"),
    Param("navon_colours", "list", "colours the Navon figures are drawn in"),
    Param("surgery_stages", "list", "stages whose large kernels are cut",
          Range(low=0, items=True, per_model=last_stage)),
    Param("surgery_keeps", "list", "kept kernel sizes of the cuts (odd; below the full size)",
          SIZES),
    Param("surgery_image_size", "int", "input side (px) the cuts are scored at", SIZE),
    Param("n_surgery_images", "int", "synthetic test images scored after each cut", SIZE),
    Param("larger_image_size", "int", "a larger input side (px) where more cuts are real: the "
          "uncut accuracy there is measured (0 skips it)", COUNT),
    Param("n_boot", "int", "bootstrap resamples of a paired difference", Range(low=100)),
)
