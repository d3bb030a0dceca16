"""unirepclip: a reproducible research workbook for CLIP-UniRepLKNet-L.

Importing the package registers the UniRepLKNet towers in timm's registry and the package's model
configs with open_clip.

Layers, from the bottom (a layer imports only the layers below it): ``utils`` < ``models`` <
``data`` < ``features`` < ``eval`` < ``analysis`` < ``viz`` < ``training`` < ``workbook`` < ``cli``.
"""
__version__ = "0.1.0"

from unirepclip.models import (  # noqa: F401
    CheckpointError,
    CheckpointMismatchError,
    create_model,
    create_model_and_transforms,
    get_model_config,
    get_tokenizer,
    inspect_checkpoint,
    list_models,
    register_model_configs,
)

register_model_configs()
