"""Image and text features: batched extraction, the on-disk cache, the torchrun extraction
(:mod:`unirepclip.features.distributed`). The names below load :mod:`.extract` (and torch) on
first use, so the torch-free :mod:`.params` imports in a blink."""
from unirepclip.lazy import lazy_exports

_EXTRACT_API = ("FeatureCache", "FeatureSet", "extract_image_features", "extract_text_features",
                "image_feature_key", "model_identity", "resolve_image_transform",
                "text_feature_key")
__all__ = list(_EXTRACT_API)
__getattr__, __dir__ = lazy_exports(
    __name__, {n: "unirepclip.features.extract" for n in _EXTRACT_API}, globals())
