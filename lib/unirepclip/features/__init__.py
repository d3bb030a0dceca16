"""Image and text features: batched extraction, the on-disk cache, the torchrun extraction
(:mod:`unirepclip.features.distributed`)."""
from unirepclip.features.extract import (  # noqa: F401
    FeatureCache,
    FeatureSet,
    extract_image_features,
    extract_text_features,
    image_feature_key,
    model_identity,
    resolve_image_transform,
    text_feature_key,
)
