"""The notebook parameters the eval layer gives meaning to (see :mod:`unirepclip.vocab`): zero-shot
classification and the probes."""
from __future__ import annotations

from typing import Tuple

from unirepclip.vocab import COUNT, SIZE, SIZES, Param, Range

__all__ = ["PARAMETERS", "C_SWEEPS", "C_RULES", "PROBE_BACKENDS", "FEATURE_KINDS", "SEARCHES"]

#: How the probe's C is searched (:class:`unirepclip.eval.probes.LinearProbe`'s ``sweep``).
C_SWEEPS = ("clip", "grid")
#: Which swept C the probe keeps (its ``selection``): the most regularized whose validation
#: score is within one paired standard error of the best C's on the same items (McNemar's:
#: lost - won <= sqrt(lost + won)) and above chance, or CLIP's rule (the best score; published
#: figures use it).
C_RULES = ("one_se", "clip")
#: The L-BFGS implementations of the probe (its ``backend``).
PROBE_BACKENDS = ("torch", "sklearn", "auto")
#: Which tower output a probe reads (:func:`unirepclip.eval.linear_probe.feature_matrix`).
FEATURE_KINDS = ("pre_projection", "embedding")
#: How retrieval ranks its candidates (:func:`unirepclip.eval.retrieval.evaluate`'s ``search``).
SEARCHES = ("exact", "approximate")

PARAMETERS: Tuple[Param, ...] = (
    # zero-shot (eval.zeroshot)
    Param("n_images", "int", "evaluation images (0: all of a finite dataset)", COUNT),
    Param("n_templates", "int", "prompt templates per class (0: all of them)", COUNT),
    Param("n_mistakes", "int", "most confident mistakes shown per task", COUNT),
    Param("sweep_sizes", "list", "input sides (px) of the resolution sweep", SIZES),
    Param("n_sweep", "int", "images per resolution of the sweep", SIZE),
    # probes (eval.linear_probe, eval.probes)
    Param("pixel_size", "int", "side (px) of the raw-pixel baseline (0: native)", COUNT),
    Param("max_iter", "int", "L-BFGS iterations per fit", SIZE),
    Param("knn_k", "int", "neighbours of the kNN probe", SIZE),
    Param("shots", "list", "labelled images per class of the k-shot probes", SIZES),
    Param("n_train", "int", "training images per dataset (0: all)", COUNT),
    Param("n_val", "int", "validation images (the probe's C is chosen on them)", COUNT),
    Param("n_test", "int", "test images", COUNT),
    Param("n_kshot_seeds", "int", "random draws per k of the k-shot probes", SIZE),
    Param("kshot_spaces", "list", "feature spaces that get k-shot probes"),
    Param("c_sweep", "str", "how the probe's C is searched", Range(choices=C_SWEEPS)),
    Param("c_rule", "str", "which swept C the probe keeps", Range(choices=C_RULES)),
    Param("probe_backend", "str", "the L-BFGS implementation of the probe",
          Range(choices=PROBE_BACKENDS)),
    Param("synthetic_task", "str", "classes of the synthetic world",
          Range(choices=("shape", "colour"))),
    Param("center_features", "bool", "subtract the training split's mean feature first"),
    Param("normalize_features", "bool", "L2-normalize features before the linear probe"),
    Param("feature_kind", "str", "which tower output a probe reads", Range(choices=FEATURE_KINDS)),
    Param("dataset_name", "str", "the main dataset's name in results.json ('': the dataset's)"),
    # retrieval (eval.retrieval): exact unless asked; approximate results say so
    Param("retrieval_search", "str", "retrieval's ranking: every candidate scored, or a FAISS "
          "index's top k", Range(choices=SEARCHES)),
)
