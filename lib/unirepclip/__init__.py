"""unirepclip: a reproducible research workbook for CLIP-UniRepLKNet-L.

Importing the package registers the UniRepLKNet towers in timm's registry and the package's model
configs with open_clip.
"""
__version__ = "0.1.0"

from . import unireplknet  # noqa: F401  (registers unireplknet_* with timm)
from .checkpoint import (  # noqa: F401
    CheckpointError,
    CheckpointMismatchError,
    inspect_checkpoint,
)
from .factory import (  # noqa: F401
    create_model,
    create_model_and_transforms,
    get_model_config,
    get_tokenizer,
    list_models,
    register_model_configs,
)

register_model_configs()
