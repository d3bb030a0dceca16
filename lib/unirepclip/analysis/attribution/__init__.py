"""Attribution of image-text similarity with captum, and checks of it against ground truth.

Where does the model look when it matches an image to a caption? The parts:

- :mod:`.methods`: :class:`SimilarityForward` (image -> cosine similarity with a text embedding,
  a scalar every captum method applies to) and the five methods as specs with their own
  arguments (:data:`METHOD_SPECS`, :func:`method_spec`, :func:`attribute`, :func:`attribute_all`);
- :mod:`.baselines`: the IG / occlusion reference inputs (zero, grey, blur);
- :mod:`.completeness`: IG's completeness error per baseline, and when it is too large;
- :mod:`.metrics`: metrics against object masks (mass in mask, pointing game, chance level);
- :mod:`.stages`: Grad-CAM's stage, measured (``"auto"``: the best);
- :mod:`.randomization`: the model-randomization sanity check of Adebayo et al., "Sanity Checks
  for Saliency Maps" (NeurIPS 2018): a map that survives the randomization of the weights shows
  the image, not the model;
- :mod:`.prompts`: caption embeddings and contrastive captions;
- :mod:`.records`: the flat ``results.json`` entries notebook 04 records.

The figures and Markdown tables of these results are in :mod:`unirepclip.viz.attribution`.
"""
from unirepclip.analysis.attribution.baselines import (BASELINES, blurred_baseline,
                                                        make_baseline, pixel_baseline)
from unirepclip.analysis.attribution.completeness import (COMPLETENESS_TOLERANCE,
                                                           compare_baselines,
                                                           completeness_error,
                                                           completeness_is_large,
                                                           completeness_summary)
from unirepclip.analysis.attribution.methods import (METHOD_SPECS, METHODS, GradCamSpec,
                                                      IntegratedGradientsSpec, MethodSpec,
                                                      OcclusionSpec, SaliencySpec,
                                                      SimilarityForward, SmoothGradSpec,
                                                      attribute, attribute_all,
                                                      integrated_gradients_completeness,
                                                      method_spec)
from unirepclip.analysis.attribution.metrics import (chance_level, mask_metrics, mass_in_mask,
                                                      pointing_game)
from unirepclip.analysis.attribution.prompts import contrastive_prompts, encode_texts
from unirepclip.analysis.attribution.randomization import (cascading_randomization,
                                                            cascading_randomization_all,
                                                            randomization_steps)
from unirepclip.analysis.attribution.records import (attribution_records,
                                                      completeness_records,
                                                      gradcam_stage_records)
from unirepclip.analysis.attribution.stages import (best_gradcam_stage, gradcam_not_applicable,
                                                     gradcam_stage_scores, resolve_gradcam_stage)

__all__ = [
    "SimilarityForward", "MethodSpec", "IntegratedGradientsSpec", "SmoothGradSpec",
    "SaliencySpec", "GradCamSpec", "OcclusionSpec", "METHOD_SPECS", "METHODS", "method_spec",
    "attribute", "attribute_all", "integrated_gradients_completeness",
    "BASELINES", "pixel_baseline", "blurred_baseline", "make_baseline",
    "COMPLETENESS_TOLERANCE", "completeness_error", "compare_baselines", "completeness_is_large",
    "completeness_summary",
    "mass_in_mask", "pointing_game", "chance_level", "mask_metrics",
    "gradcam_stage_scores", "gradcam_not_applicable", "best_gradcam_stage",
    "resolve_gradcam_stage",
    "randomization_steps", "cascading_randomization", "cascading_randomization_all",
    "encode_texts", "contrastive_prompts",
    "attribution_records", "completeness_records", "gradcam_stage_records",
]
