"""Image and text features: batched extraction, the on-disk cache, the torchrun extraction
(:mod:`unirepclip.features.distributed`). The names below load :mod:`.extract` (and torch) on
first use, so the torch-free :mod:`.params` imports in a blink."""
import importlib

_EXTRACT_API = ("FeatureCache", "FeatureSet", "extract_image_features", "extract_text_features",
                "image_feature_key", "model_identity", "resolve_image_transform",
                "text_feature_key")
__all__ = list(_EXTRACT_API)


def __getattr__(name):
    if name in _EXTRACT_API:
        return getattr(importlib.import_module("unirepclip.features.extract"), name)
    raise AttributeError(f"module 'unirepclip.features' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXTRACT_API))
